"""Servers: the bundled Stripe emulator, the Dagster UI for development, production serving."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from recon_pipeline.cli.catalog_cmds import open_catalog
from recon_pipeline.cli.processes import Supervisor, connect_accounts, instance_home, port_in_use
from recon_pipeline.settings import EMULATOR_PORT, PROJECT_ROOT, Settings, SettingsError, emulator_notice, environment_for_children

DEFAULTS = argparse.ArgumentDefaultsHelpFormatter


def cmd_emulator(args: argparse.Namespace, settings: Settings) -> int:
    from recon_pipeline.emulator.cli import run

    return run(args)


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
        connect_accounts(env["STRIPE_API_BASE"], settings)
        print(f"dev: {emulator_notice(env['STRIPE_API_BASE'])}", flush=True)
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
    if settings.uses_emulator:
        if "STRIPE_API_BASE" not in settings.set_in_env:
            env["STRIPE_API_BASE"] = supervisor.start_emulator(args.emulator_port, env)
            connect_accounts(env["STRIPE_API_BASE"], settings)
        print(f"serving: {emulator_notice(env.get('STRIPE_API_BASE', settings.stripe_api_base))}", flush=True)
    _webserver_and_daemon(supervisor, args, env, home)
    print(f"serving: webserver http://{args.host}:{args.port}, daemon, DAGSTER_HOME={home}", flush=True)
    return supervisor.wait()


def register(commands: argparse._SubParsersAction) -> None:
    from recon_pipeline.emulator.cli import add_arguments

    emulator = add_arguments(commands.add_parser("emulator", help="run the bundled Stripe emulator (alone: python -m recon_pipeline.emulator)", formatter_class=DEFAULTS))
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

