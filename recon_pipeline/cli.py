"""`recon-pipeline`: the project's command line.

    recon-pipeline init                      create the catalog schema (idempotent)
    recon-pipeline emulator [--port 12111]   run the bundled Stripe emulator on 127.0.0.1
    recon-pipeline demo                      seed drift, run reconcile_catalog, print the drift
    recon-pipeline dev                       the Dagster UI on 127.0.0.1:3000 with the emulator
    recon-pipeline serve                     production: dagster-webserver + dagster-daemon on deploy/dagster.yaml
    recon-pipeline dead-letters list|replay  what exhausted its retries; replay it now
    recon-pipeline edit ID [--name ...]      change a catalog product (and queue it for Stripe)
    recon-pipeline drill                     outage drill: naive push vs outbox + backfill
    recon-pipeline worker                    push the outbox and apply the inbox continuously
    recon-pipeline webhooks [--port 8787]    receive Stripe webhooks into the inbox
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import httpx

from recon_pipeline.settings import (
    DATA_DIR,
    EMULATOR_HOST,
    EMULATOR_PORT,
    PROJECT_ROOT,
    Settings,
    SettingsError,
    emulator_url,
)

EMULATOR_STATE = DATA_DIR / "stripe-emulator.db"


def ensure_dagster_home() -> Path:
    """DAGSTER_HOME, defaulting to the project's .dagster_home with the project's dagster.yaml."""
    home = Path(os.environ.get("DAGSTER_HOME") or PROJECT_ROOT / ".dagster_home").resolve()
    home.mkdir(parents=True, exist_ok=True)
    project_config = PROJECT_ROOT / "dagster.yaml"
    if project_config.exists() and not (home / "dagster.yaml").exists():
        shutil.copy(project_config, home / "dagster.yaml")
    os.environ["DAGSTER_HOME"] = str(home)
    return home


def emulator_is_up(url: str) -> bool:
    try:
        return httpx.get(f"{url}/_emulator/faults", timeout=1.0).status_code == 200
    except httpx.HTTPError:
        return False


@contextlib.contextmanager
def running_emulator(port: int = EMULATOR_PORT, state_path: Path = EMULATOR_STATE):
    """The emulator at 127.0.0.1:port: the one already running there, or one started here."""
    url = emulator_url(port)
    if emulator_is_up(url):
        yield url
        return
    from recon_pipeline.emulator import EmulatorServer

    state_path.parent.mkdir(parents=True, exist_ok=True)
    with EmulatorServer(host=EMULATOR_HOST, port=port, state_path=str(state_path)) as server:
        yield server.url


def cmd_init(args: argparse.Namespace) -> int:
    from recon_pipeline.catalog import init_schema, make_engine

    settings = Settings.from_env()
    init_schema(make_engine(settings.catalog_url))
    print(f"catalog schema ready at {_redact_url(settings.catalog_url)}")
    return 0


def cmd_emulator(args: argparse.Namespace) -> int:
    from recon_pipeline.emulator import Faults, serve

    faults = Faults(
        rate_limit=args.rate_limit,
        endpoint_rate_limit=args.endpoint_rate_limit,
        failure_rate=args.failure_rate,
        latency_ms=args.latency_ms,
        slow_rate=args.slow_rate,
        slow_ms=args.slow_ms,
        drop_rate=args.drop_rate,
        outage=args.outage,
        retry_after=args.retry_after,
    )
    if args.state:
        Path(args.state).parent.mkdir(parents=True, exist_ok=True)
    print(f"Stripe emulator on http://{args.host}:{args.port} (state: {args.state or 'in memory'})", flush=True)
    serve(host=args.host, port=args.port, state_path=args.state, faults=faults)
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from recon_pipeline.catalog import make_engine
    from recon_pipeline.demo import plan_demo, seed_demo

    for name in ("RECON_CATALOG_URL", "STRIPE_API_KEY", "STRIPE_API_BASE"):
        if os.environ.get(name):
            raise SettingsError(
                f"{name} is set, but the demo seeds (and overwrites) the embedded SQLite catalog and the "
                f"bundled emulator only; unset {name} to run the demo."
            )
    ensure_dagster_home()
    settings = Settings.from_env()
    data = plan_demo(n_products=args.products, seed=args.seed)
    with running_emulator(args.port) as url:
        os.environ["STRIPE_API_BASE"] = url
        print(f"Seeding {len(data.catalog):,} catalog products and {len(data.stripe):,} Stripe products ({url}) ...")
        seed_demo(make_engine(settings.catalog_url), url, data)
        from recon_pipeline.demo_report import print_after, print_repair, print_report, run_job

        status = print_report(run_job("reconcile_catalog", quiet=True), data)
        # The demo archives its orphans; the pipeline's default orphan policy only reports them.
        repair = {"ops": {"catalog_repair": {"config": {"orphan_policy": "archive"}}}}
        status |= print_repair(run_job("repair_catalog", repair, quiet=True))
        status |= print_after(run_job("reconcile_catalog", quiet=True))
    print("\nDrift seeded, found, repaired and verified: zero left." if status == 0 else "\nThe demo did not end at zero drift (see above).")
    print("Open the UI with `make dev` to see the runs, the drift metadata, the actions and the checks.")
    return status


def cmd_dev(args: argparse.Namespace) -> int:
    ensure_dagster_home()
    env = dict(os.environ)
    emulator: subprocess.Popen | None = None
    if not os.environ.get("STRIPE_API_KEY"):
        url = emulator_url(args.emulator_port)
        env["STRIPE_API_BASE"] = url
        if not emulator_is_up(url):
            EMULATOR_STATE.parent.mkdir(parents=True, exist_ok=True)
            emulator = subprocess.Popen(
                [sys.executable, "-m", "recon_pipeline.cli", "emulator", "--port", str(args.emulator_port), "--state", str(EMULATOR_STATE)]
            )
            for _ in range(100):
                if emulator_is_up(url):
                    break
                time.sleep(0.1)
    try:
        return subprocess.call(
            [sys.executable, "-m", "dagster", "dev", "-w", str(PROJECT_ROOT / "workspace.yaml"), "-h", args.host, "-p", str(args.port)],
            env=env,
            cwd=PROJECT_ROOT,
        )
    except KeyboardInterrupt:
        return 0
    finally:
        if emulator is not None:
            emulator.terminate()
            emulator.wait(timeout=10)


def cmd_serve(args: argparse.Namespace) -> int:
    """dagster-webserver and dagster-daemon on the production instance (not `dagster dev`)."""
    import signal

    if not os.environ.get("DAGSTER_POSTGRES_URL"):
        raise SettingsError("DAGSTER_POSTGRES_URL is not set; set it to postgresql://USER:PASSWORD@HOST:5432/DATABASE for Dagster's storage.")
    home = Path(os.environ.get("DAGSTER_HOME") or PROJECT_ROOT / ".dagster_serve").resolve()
    home.mkdir(parents=True, exist_ok=True)
    if not (home / "dagster.yaml").exists():
        shutil.copy(PROJECT_ROOT / "deploy" / "dagster.yaml", home / "dagster.yaml")
    env = {**os.environ, "DAGSTER_HOME": str(home)}
    bin_dir = Path(sys.executable).parent
    workspace = str(PROJECT_ROOT / "workspace.yaml")
    children: list[subprocess.Popen] = []
    if not os.environ.get("STRIPE_API_KEY"):
        url = emulator_url(args.emulator_port)
        env["STRIPE_API_BASE"] = os.environ.get("STRIPE_API_BASE") or url
        if not emulator_is_up(env["STRIPE_API_BASE"]):
            EMULATOR_STATE.parent.mkdir(parents=True, exist_ok=True)
            children.append(subprocess.Popen([sys.executable, "-m", "recon_pipeline.cli", "emulator", "--port", str(args.emulator_port), "--state", str(EMULATOR_STATE)], env=env))
    children.append(subprocess.Popen([str(bin_dir / "dagster-webserver"), "-w", workspace, "-h", args.host, "-p", str(args.port)], env=env, cwd=PROJECT_ROOT))
    children.append(subprocess.Popen([str(bin_dir / "dagster-daemon"), "run", "-w", workspace], env=env, cwd=PROJECT_ROOT))
    print(f"serving: webserver http://{args.host}:{args.port}, daemon, DAGSTER_HOME={home}", flush=True)
    stopping = False

    def stop(*_):
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    status = 0
    while not stopping:
        for child in children:
            if child.poll() is not None:
                print(f"recon-pipeline serve: {child.args[0]} exited with {child.returncode}; stopping", file=sys.stderr)
                stopping, status = True, 1
        time.sleep(0.5)
    for child in reversed(children):
        child.terminate()
    for child in children:
        try:
            child.wait(timeout=30)
        except subprocess.TimeoutExpired:
            child.kill()
    return status


def _gateway(settings: Settings):
    from recon_pipeline.stripe_api import StripeGateway

    return StripeGateway(
        api_key=settings.stripe_api_key,
        api_base=settings.stripe_api_base,
        global_rate=settings.global_rate,
        endpoint_rate=settings.endpoint_rate,
        timeout=settings.stripe_timeout_s,
    )


def cmd_dead_letters(args: argparse.Namespace) -> int:
    from recon_pipeline.catalog import init_schema, make_engine
    from recon_pipeline.repair.dead_letters import list_dead_letters, replay_dead_letters

    settings = Settings.from_env()
    engine = make_engine(settings.catalog_url)
    init_schema(engine)
    if args.action == "list":
        letters = list_dead_letters(engine, include_resolved=args.all)
        for letter in letters:
            state = f"resolved {letter['resolved_at']:%Y-%m-%d %H:%M}" if letter["resolved_at"] else "open"
            print(f"#{letter['id']:<5} {letter['product_id']:<24} {letter['action']:<16} attempts={letter['attempts']:<3} {state}: {letter['reason']}")
        print(f"{len(letters)} dead letters" + ("" if args.all else " open"))
        return 0
    results = replay_dead_letters(engine, _gateway(settings), ids=args.ids or None)
    for result in results:
        print(f"#{result['id']:<5} {result['product_id']:<24} {'resolved' if result['resolved'] else 'still failing'}: {result['detail']}")
    still = sum(not r["resolved"] for r in results)
    print(f"replayed {len(results)}, resolved {len(results) - still}, still failing {still}")
    return 1 if still else 0


def cmd_edit(args: argparse.Namespace) -> int:
    from recon_pipeline.catalog import InvalidProduct, init_schema, make_engine
    from recon_pipeline.catalog.changes import change_price, update_product

    engine = make_engine(Settings.from_env().catalog_url)
    init_schema(engine)
    fields = {k: v for k, v in (("name", args.name), ("description", args.description)) if v is not None}
    if args.active is not None:
        fields["active"] = args.active == "true"
    try:
        if fields:
            update_product(engine, args.product_id, **fields)
        if args.price:
            amount, currency, *interval = args.price
            if not amount.isdigit():
                raise InvalidProduct(f"--price amount {amount!r} must be a whole number of the currency's smallest unit, e.g. 1500")
            change_price(engine, args.product_id, int(amount), currency, interval[0] if interval else None)
    except InvalidProduct as error:
        print(f"recon-pipeline: {error}", file=sys.stderr)
        return 2
    print(f"{args.product_id}: changed and queued in the outbox")
    return 0


def cmd_drill(args: argparse.Namespace) -> int:
    """The outage drill is a bench script (it carries the naive baseline, which the pipeline never uses)."""
    import runpy

    script = PROJECT_ROOT / "bench" / "drill_outage.py"
    if not script.exists():
        raise SettingsError(f"the drill runs from a clone of the project: {script} is not here")
    sys.argv = [str(script), *args.drill_args]
    try:
        runpy.run_path(str(script), run_name="__main__")
    except SystemExit as exit_:
        return int(exit_.code or 0)
    return 0


def cmd_worker(args: argparse.Namespace) -> int:
    import signal
    import threading

    from recon_pipeline.catalog import init_schema, make_engine
    from recon_pipeline.sync.inbox import ConflictPolicy, InboxApplier
    from recon_pipeline.sync.outbox import worker_id
    from recon_pipeline.sync.worker import run_worker

    settings = Settings.from_env()
    engine = make_engine(settings.catalog_url)
    init_schema(engine)
    gateway = _gateway(settings)
    applier = InboxApplier(engine, ConflictPolicy(settings.conflict_policy), gateway)
    name = worker_id()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    print(f"worker {name}: outbox -> {settings.stripe_api_base}, inbox -> catalog (policy {settings.conflict_policy})", flush=True)
    run_worker(
        engine,
        gateway,
        applier,
        name=name,
        concurrency=args.concurrency,
        batch_size=args.batch_size,
        interval_s=args.interval,
        once=args.once,
        stop=stop,
        say=lambda line: print(line, flush=True),
    )
    return 0


def cmd_webhooks(args: argparse.Namespace) -> int:
    import uvicorn

    from recon_pipeline.catalog import init_schema, make_engine
    from recon_pipeline.sync.webhooks import create_webhook_app

    settings = Settings.from_env()
    if not settings.webhook_secret:
        raise SettingsError("STRIPE_WEBHOOK_SECRET is not set; set it to the endpoint's signing secret (whsec_...).")
    engine = make_engine(settings.catalog_url)
    init_schema(engine)
    print(f"webhook receiver on http://{args.host}:{args.port}/webhooks/stripe", flush=True)
    uvicorn.run(create_webhook_app(engine, settings.webhook_secret), host=args.host, port=args.port, log_level="warning", access_log=False)
    return 0


def _redact_url(url: str) -> str:
    # Never print a catalog password.
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="recon-pipeline", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)

    commands.add_parser("init", help="create the catalog schema (idempotent)").set_defaults(func=cmd_init)

    emulator = commands.add_parser("emulator", help="run the bundled Stripe emulator")
    emulator.add_argument("--host", default=EMULATOR_HOST)
    emulator.add_argument("--port", type=int, default=EMULATOR_PORT)
    emulator.add_argument("--state", help="SQLite file that keeps the emulator's state across restarts")
    emulator.add_argument("--rate-limit", type=float, help="global requests/s before answering 429")
    emulator.add_argument("--endpoint-rate-limit", type=float, help="requests/s per endpoint before answering 429")
    emulator.add_argument("--failure-rate", type=float, default=0.0, help="fraction of requests answered 500")
    emulator.add_argument("--latency-ms", type=int, default=0, help="latency added to every API request")
    emulator.add_argument("--slow-rate", type=float, default=0.0, help="fraction of requests that take --slow-ms longer")
    emulator.add_argument("--slow-ms", type=int, default=5000)
    emulator.add_argument("--drop-rate", type=float, default=0.0, help="fraction of requests whose connection is cut (before or after the work)")
    emulator.add_argument("--outage", action="store_true", help="answer every API request 503")
    emulator.add_argument("--retry-after", type=float, help="send Retry-After (seconds) with 429s")
    emulator.set_defaults(func=cmd_emulator)

    demo = commands.add_parser("demo", help="seed drift into a demo catalog and the emulator, reconcile, print it")
    demo.add_argument("--products", type=int, default=1000)
    demo.add_argument("--seed", type=int, default=7)
    demo.add_argument("--port", type=int, default=EMULATOR_PORT, help="the emulator's port")
    demo.set_defaults(func=cmd_demo)

    dev = commands.add_parser("dev", help="the Dagster UI with the emulator running")
    dev.add_argument("--host", default="127.0.0.1")
    dev.add_argument("--port", type=int, default=3000)
    dev.add_argument("--emulator-port", type=int, default=EMULATOR_PORT)
    dev.set_defaults(func=cmd_dev)
    serve = commands.add_parser("serve", help="production: dagster-webserver + dagster-daemon on deploy/dagster.yaml (PostgreSQL)")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=3000)
    serve.add_argument("--emulator-port", type=int, default=EMULATOR_PORT)
    serve.set_defaults(func=cmd_serve)

    letters = commands.add_parser("dead-letters", help="list or replay what exhausted its retries")
    letters.add_argument("action", choices=["list", "replay"])
    letters.add_argument("ids", nargs="*", type=int, help="replay only these dead letter ids")
    letters.add_argument("--all", action="store_true", help="list resolved ones too")
    letters.set_defaults(func=cmd_dead_letters)

    edit = commands.add_parser("edit", help="change a catalog product; the change and its outbox row commit together")
    edit.add_argument("product_id")
    edit.add_argument("--name")
    edit.add_argument("--description")
    edit.add_argument("--active", choices=["true", "false"])
    edit.add_argument("--price", nargs="+", metavar=("AMOUNT CURRENCY", "INTERVAL"), help="e.g. --price 1500 usd month")
    edit.set_defaults(func=cmd_edit)

    drill = commands.add_parser("drill", help="outage drill: naive push vs outbox + backfill (bench/drill_outage.py)")
    drill.set_defaults(func=cmd_drill)  # its options (e.g. --outage-s 120) go to the script

    worker = commands.add_parser("worker", help="push the outbox and apply the inbox continuously")
    worker.add_argument("--interval", type=float, default=0.2, help="seconds between polls when idle")
    worker.add_argument("--concurrency", type=int, default=8, help="products pushed in parallel")
    worker.add_argument("--batch-size", type=int, default=100, help="products claimed at a time (smaller spreads work over more workers)")
    worker.add_argument("--once", action="store_true", help="one pass, then exit")
    worker.set_defaults(func=cmd_worker)

    webhooks = commands.add_parser("webhooks", help="receive Stripe webhooks into the inbox")
    webhooks.add_argument("--host", default="127.0.0.1")
    webhooks.add_argument("--port", type=int, default=8787)
    webhooks.set_defaults(func=cmd_webhooks)
    return parser


def _quiet_dagster_previews() -> None:
    # Freshness checks, pools and friends are beta/preview APIs in Dagster 1.13; their
    # warnings say nothing a user of this command can act on.
    import warnings

    from dagster._utils.warnings import BetaWarning, PreviewWarning

    for category in (BetaWarning, PreviewWarning):
        warnings.filterwarnings("ignore", category=category)


def main(argv: list[str] | None = None) -> int:
    _quiet_dagster_previews()
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if args.command == "drill":
        args.drill_args = extra
    elif extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    try:
        return args.func(args)
    except SettingsError as error:
        print(f"recon-pipeline: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
