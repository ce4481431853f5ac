"""Servers: the bundled Stripe emulator, the Dagster UI for development, production serving."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from recon_pipeline.cli.catalog_cmds import open_catalog
from recon_pipeline.cli.processes import Supervisor, instance_home, port_in_use
from recon_pipeline.settings import EMULATOR_HOST, EMULATOR_PORT, PROJECT_ROOT, Settings, SettingsError, environment_for_children

DEFAULTS = argparse.ArgumentDefaultsHelpFormatter


def cmd_emulator(args: argparse.Namespace, settings: Settings) -> int:
    from recon_pipeline.emulator import Faults, serve
    from recon_pipeline.emulator.faults import FAULT_FIELDS

    # Each fault flag is named after its Faults field (--drop-rate -> drop_rate).
    faults = Faults(**{name: getattr(args, name) for name in FAULT_FIELDS if hasattr(args, name)})
    if args.state:
        Path(args.state).parent.mkdir(parents=True, exist_ok=True)
    print(f"Stripe emulator on http://{args.host}:{args.port} (state: {args.state or 'in memory'})", flush=True)
    serve(host=args.host, port=args.port, state_path=args.state, faults=faults)
    return 0


def _ready_to_serve(settings: Settings, host: str, port: int, command: str) -> None:
    """Before any server starts: the port is free and the catalog database is there (else say what to do)."""
    if port_in_use(host, port):
        raise SettingsError(f"port {port} on {host} is in use (another `recon-pipeline {command}` or dagster-webserver?); pick another: recon-pipeline {command} --port {port + 1}")
    open_catalog(settings).check_source()


def _webserver_and_daemon(supervisor: Supervisor, args: argparse.Namespace, env: dict[str, str], home: Path) -> None:
    """dagster-webserver and dagster-daemon on the project's workspace: what `dagster dev` runs
    (which Dagster 1.13 supersedes), each a child the supervisor stops on Ctrl-C. The instance's
    storage is created here first: on a new DAGSTER_HOME the two would race to create it."""
    import dagster as dg

    with dg.DagsterInstance.from_config(str(home)):
        pass
    bin_dir = Path(sys.executable).parent
    workspace = str(PROJECT_ROOT / "workspace.yaml")
    supervisor.start([str(bin_dir / "dagster-webserver"), "-w", workspace, "-h", args.host, "-p", str(args.port)], env)
    supervisor.start([str(bin_dir / "dagster-daemon"), "run", "-w", workspace], env)


def cmd_dev(args: argparse.Namespace, settings: Settings) -> int:
    """The Dagster UI and daemon on the project's workspace, with the emulator unless a Stripe key is set."""
    _ready_to_serve(settings, args.host, args.port, "dev")
    home = instance_home(settings)
    env = environment_for_children(DAGSTER_HOME=str(home))
    supervisor = Supervisor()
    if settings.uses_emulator:
        env["STRIPE_API_BASE"] = supervisor.start_emulator(args.emulator_port, env)
    _webserver_and_daemon(supervisor, args, env, home)
    print(f"dev: the UI on http://{args.host}:{args.port}, the daemon, DAGSTER_HOME={home}; Ctrl-C stops them all", flush=True)
    return supervisor.wait()


def cmd_serve(args: argparse.Namespace, settings: Settings) -> int:
    """dagster-webserver and dagster-daemon on the production instance (PostgreSQL storage)."""
    if not settings.dagster_postgres_url:
        raise SettingsError("DAGSTER_POSTGRES_URL is not set; set it to postgresql://USER:PASSWORD@HOST:5432/DATABASE for Dagster's storage.")
    _ready_to_serve(settings, args.host, args.port, "serve")
    home = instance_home(settings)
    env = environment_for_children(DAGSTER_HOME=str(home))
    supervisor = Supervisor()
    if settings.uses_emulator and "STRIPE_API_BASE" not in settings.set_in_env:
        env["STRIPE_API_BASE"] = supervisor.start_emulator(args.emulator_port, env)
    _webserver_and_daemon(supervisor, args, env, home)
    print(f"serving: webserver http://{args.host}:{args.port}, daemon, DAGSTER_HOME={home}", flush=True)
    return supervisor.wait()


def register(commands: argparse._SubParsersAction) -> None:
    emulator = commands.add_parser("emulator", help="run the bundled Stripe emulator", formatter_class=DEFAULTS)
    emulator.add_argument("--host", default=EMULATOR_HOST, help="address to bind")
    emulator.add_argument("--port", type=int, default=EMULATOR_PORT, help="port to listen on")
    emulator.add_argument("--state", help="SQLite file that keeps the emulator's state across restarts (default: in memory)")
    emulator.add_argument("--rate-limit", type=float, help="global requests/s before answering 429 (default: none)")
    emulator.add_argument("--endpoint-rate-limit", type=float, help="requests/s per endpoint before answering 429 (default: none)")
    emulator.add_argument("--failure-rate", type=float, default=0.0, help="fraction of requests answered 500")
    emulator.add_argument("--latency-ms", type=int, default=0, help="latency added to every API request")
    emulator.add_argument("--slow-rate", type=float, default=0.0, help="fraction of requests that take --slow-ms longer")
    emulator.add_argument("--slow-ms", type=int, default=5000, help="how much longer a slow request takes")
    emulator.add_argument("--drop-rate", type=float, default=0.0, help="fraction of requests whose connection is cut (before or after the work)")
    emulator.add_argument("--outage", action="store_true", help="answer every API request 503")
    emulator.add_argument("--retry-after", type=float, help="send Retry-After (seconds) with 429s")
    emulator.set_defaults(func=cmd_emulator)

    dev = commands.add_parser("dev", help="the Dagster UI with the emulator running", formatter_class=DEFAULTS)
    dev.add_argument("--host", default="127.0.0.1", help="address of the UI")
    dev.add_argument("--port", type=int, default=3000, help="port of the UI")
    dev.add_argument("--emulator-port", type=int, default=EMULATOR_PORT, help="port of the emulator (without STRIPE_API_KEY)")
    dev.set_defaults(func=cmd_dev)

    serve = commands.add_parser("serve", help="production: dagster-webserver + dagster-daemon on deploy/dagster.yaml (PostgreSQL)", formatter_class=DEFAULTS)
    serve.add_argument("--host", default="127.0.0.1", help="address of the webserver")
    serve.add_argument("--port", type=int, default=3000, help="port of the webserver")
    serve.add_argument("--emulator-port", type=int, default=EMULATOR_PORT, help="port of the emulator (without STRIPE_API_KEY)")
    serve.set_defaults(func=cmd_serve)

