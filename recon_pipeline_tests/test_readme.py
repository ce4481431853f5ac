"""The README is tested: each command block marked `<!-- tested: NAME -->` runs as written.

Each test works in a fresh copy of the repository (tracked files only, the .venv linked in,
PYTHONPATH on the copy), with the venv on PATH as `. .venv/bin/activate` would put it and no
configuration in the environment: what a new user who followed the README has. Lines run
one by one in bash, `export`s carrying over; placeholders (an outage's dates, `sk_live_...`,
database names) are filled with test values; long-running commands (`make dev`,
`make serve`) are started, checked and stopped with Ctrl-C. Each line's documented outcome
is checked, so a command that fails, or a README that says something else, fails here.
"""

from __future__ import annotations

import ast
import datetime as dt
import os
import re
import shutil
import signal
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
import stripe
from sqlalchemy import create_engine, text

from recon_pipeline.catalog import Catalog, CatalogProduct, upsert_products
from recon_pipeline.catalog.schema import dead_letter
from recon_pipeline.emulator.server import free_port
from recon_pipeline.testing import wait_until
from recon_pipeline_tests.conftest import MARIADB_ADMIN_URL

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
BLOCK = re.compile(r"<!-- tested: ([\w-]+) -->\n```sh\n(.*?)```", re.S)
EMULATOR = "http://127.0.0.1:12111"


def readme_blocks() -> dict[str, list[str]]:
    """Each tested block's command lines (comment-only lines and blank ones left out)."""
    found = {name: [line for line in body.splitlines() if line.strip() and not line.lstrip().startswith("#")] for name, body in BLOCK.findall((ROOT / "README.md").read_text())}
    assert found, "the README has no tested blocks"
    return found


def test_every_tested_block_has_a_test():
    tested = {name.replace("-", "_") for name in readme_blocks()} | {"python_api", "emulator_fixture"}
    tests = {name.removeprefix("test_readme_") for name in globals() if name.startswith("test_readme_")}
    assert tested == tests, f"blocks without a test: {sorted(tested - tests)}; tests without a block: {sorted(tests - tested)}"


class Shell:
    """Lines run one by one in bash in `cwd`, `export`s carried from line to line."""

    def __init__(self, cwd: Path, env: dict[str, str]):
        self.cwd = cwd
        self.env = env

    def run(self, line: str, timeout: float = 300) -> subprocess.CompletedProcess:
        dump = self.cwd / ".env-after"
        done = subprocess.run(
            ["bash", "-c", f'{line}\nstatus=$?\nenv -0 > "{dump}"\nexit $status'], cwd=self.cwd, env=self.env, capture_output=True, text=True, timeout=timeout
        )
        if dump.exists():
            self.env = dict(item.split("=", 1) for item in dump.read_text().split("\0") if "=" in item)
            dump.unlink()
        assert "Traceback" not in done.stderr, f"{line}\n{done.stderr[-3000:]}"
        return done

    def start(self, line: str, log: Path) -> subprocess.Popen:
        """A long-running line (make dev, make serve), in a session of its own as a terminal would."""
        return subprocess.Popen(["bash", "-c", line], cwd=self.cwd, env=self.env, stdout=log.open("w"), stderr=subprocess.STDOUT, start_new_session=True)


def interrupt(process: subprocess.Popen, log: Path) -> None:
    """Ctrl-C, as a terminal sends it (to the whole process group): it stops cleanly."""
    os.killpg(process.pid, signal.SIGINT)
    code = process.wait(timeout=90)
    output = log.read_text()
    assert "Traceback" not in output, output[-3000:]
    # make reports the interrupt itself ("make: *** ... Interrupt"), and exits by the signal.
    assert code in (0, 130, -signal.SIGINT, 2), f"exit {code} after Ctrl-C:\n{output[-3000:]}"


@pytest.fixture
def checkout(tmp_path: Path) -> Path:
    """A fresh copy of the repository's tracked files (times kept), the .venv linked in."""
    copy = tmp_path / "recon-pipeline"
    tracked = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, text=True, check=True).stdout.split("\0")
    for name in filter(None, tracked):
        source = ROOT / name
        if source.is_file():
            (copy / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, copy / name)
    (copy / ".venv").symlink_to(ROOT / ".venv")
    stamp = ROOT / ".venv" / ".installed"
    if stamp.exists():  # make's setup target: already installed (the copy is not to reinstall the venv)
        os.utime(copy / "pyproject.toml", (stamp.stat().st_mtime - 60,) * 2)
    return copy


@pytest.fixture
def shell(checkout: Path) -> Shell:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RECON_", "STRIPE_", "DAGSTER_", "ALERT_", "PYTEST", "COV_"))}
    env.update(PATH=f"{checkout / '.venv' / 'bin'}:{env['PATH']}", PYTHONPATH=str(checkout), VIRTUAL_ENV=str(checkout / ".venv"))
    return Shell(checkout, env)


def lines_of(name: str, replace: Callable[[str], str | None] = lambda line: line) -> Iterator[str]:
    """The block's lines, each through `replace` (None drops a placeholder line)."""
    for line in readme_blocks()[name]:
        changed = replace(line)
        if changed is not None:
            yield changed


def seed_catalog(checkout: Path, count: int, changed_at: dt.datetime | None = None) -> None:
    """Products in the copy's embedded catalog (last changed at `changed_at`, default now)."""
    products = [CatalogProduct(id=f"sku_{i:03d}", name=f"Product {i}") for i in range(count)]
    upsert_products(Catalog.open(f"sqlite:///{checkout / 'data' / 'catalog.db'}").engine, products, now=changed_at)


def product(product_id: str) -> dict:
    return httpx.get(f"{EMULATOR}/v1/products/{product_id}", auth=("sk_test_readme", ""), timeout=5).json()


# -- one test per block, named after it ---------------------------------------------------


def test_readme_quick_start(shell: Shell):
    [demo] = lines_of("quick-start", lambda line: None if line.startswith("make test") else line)  # no suite inside the suite
    done = shell.run(demo)
    assert done.returncode == 0, done.stdout[-3000:]
    assert "The drift found is exactly the drift seeded." in done.stdout and "zero left" in done.stdout
    assert "after repair: drift 0 rows (1 reported by policy: price_orphan_in_stripe)" in done.stdout  # the unmanaged price: reported, never written
    assert "Warning" not in done.stderr, done.stderr  # no SupersessionWarning or BetaWarning for a new user to wonder about


def test_readme_try_it_live(shell: Shell, checkout: Path):
    assert shell.run("make demo").returncode == 0
    log = checkout / "dev.log"
    dev = shell.start("make dev", log)
    try:
        wait_until(lambda: port_answers("http://127.0.0.1:3000/server_info") and port_answers(f"{EMULATOR}/_emulator/faults"), timeout=120, interval=1, what="make dev to serve")
        edit, curl, audit = lines_of("try-it-live")
        assert shell.run(edit).returncode == 0
        wait_until(lambda: product("sku_00001")["name"] == "Renamed in the catalog", timeout=90, interval=1, what="the catalog edit in Stripe (outbox_sensor)")
        catalog_name = Catalog.open(f"sqlite:///{checkout / 'data' / 'catalog.db'}").rows(["sku_00002"])["name"][0]
        assert shell.run(curl).returncode == 0 and product("sku_00002")["name"] == "Renamed in Stripe"
        wait_until(lambda: product("sku_00002")["name"] == catalog_name, timeout=180, interval=1, what="local_wins putting the catalog's name back (poll run, apply, push)")
        trail = shell.run(audit)
        assert trail.returncode == 0 and "name: " in trail.stdout and "'Renamed in Stripe'" in trail.stdout and "conflict_local_wins" in trail.stdout
    finally:
        interrupt(dev, log)


def port_answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def test_readme_first_sync(shell: Shell, checkout: Path):
    seed_catalog(checkout, 30)  # a catalog; the bundled emulator starts as a new, empty account
    reconcile, dry_run, override, again = lines_of("first-sync")
    first = shell.run(reconcile)
    assert first.returncode == 1 and "missing_in_stripe 30" in first.stdout and "drift_rate_below_threshold" in first.stdout and "FAILED (ERROR)" in first.stdout
    planned = shell.run(dry_run)
    assert planned.returncode == 1 and "30   (dry_run)" in planned.stdout and "refusing to auto-repair" in planned.stdout
    assert "The plan (30 actions, nothing written):" in planned.stdout and planned.stdout.count("create_product") == 10
    assert "... and 20 more (--limit 30 shows them all)" in planned.stdout and "repair_verified               not evaluated: nothing was written" in planned.stdout
    written = shell.run(override)
    assert written.returncode == 0 and "products created            30   (applied)" in written.stdout
    last = shell.run(again)
    assert last.returncode == 0 and "drift 0 rows" in last.stdout and "FAILED" not in last.stdout


def test_readme_dead_letters(shell: Shell, checkout: Path):
    seed_catalog(checkout, 3)
    catalog = Catalog.open(f"sqlite:///{checkout / 'data' / 'catalog.db'}")
    with catalog.engine.begin() as conn:  # a push that exhausted its retries during an outage
        letter = {"source": "outbox", "product_id": "sku_001", "action": "push", "payload": {}, "reason": "503 api_error: Stripe is down", "attempts": 8}
        conn.execute(dead_letter.insert().values(**letter, failed_at=dt.datetime.now(dt.UTC)))
    listed, replayed = (shell.run(line) for line in lines_of("dead-letters"))
    assert listed.returncode == 0 and "#1" in listed.stdout and "sku_001" in listed.stdout and "503 api_error: Stripe is down" in listed.stdout
    assert replayed.returncode == 0 and "resolved" in replayed.stdout and "replayed 1, resolved 1, still failing 0" in replayed.stdout


def test_readme_quarantine(shell: Shell, checkout: Path):
    from recon_pipeline.catalog.quarantine import PRICE, record
    from recon_pipeline.reconcile.frames import local_price_chunks

    seed_catalog(checkout, 1)
    catalog = Catalog.open(f"sqlite:///{checkout / 'data' / 'catalog.db'}")
    with catalog.engine.begin() as conn:  # what an import around our validation could leave
        conn.execute(
            text("INSERT INTO prices (lookup_key, product_id, active, currency, unit_amount, billing_scheme, updated_at) VALUES ('sku_000_m', 'sku_000', 1, 'usd', -5, 'per_unit', '2026-12-05')")
        )

    def read_prices() -> None:  # as local_prices does, in every reconcile_catalog run
        bad: list[dict] = []
        for _ in local_price_chunks(catalog, {"sku_000"}, {"sku_000"}, bad):
            pass
        record(catalog.engine, bad, PRICE)

    read_prices()
    (line,) = lines_of("quarantine")
    listed = shell.run(line)
    assert listed.returncode == 0 and "sku_000 / sku_000_m" in listed.stdout and "unit_amount=-5" in listed.stdout
    assert "1 catalog rows quarantined (0 products, 1 prices)" in listed.stdout and "To do: fix each row in the catalog" in listed.stdout
    with catalog.engine.begin() as conn:
        conn.execute(text("UPDATE prices SET unit_amount = 500 WHERE lookup_key = 'sku_000_m'"))
    read_prices()
    assert "0 catalog rows quarantined" in shell.run(line).stdout
    every = shell.run(f"{line.split('#')[0].strip()} --all")
    assert every.returncode == 0 and "released " in every.stdout and "sku_000 / sku_000_m" in every.stdout and "1 released in the last 30 days" in every.stdout


def test_readme_backfill_runbook(shell: Shell, checkout: Path):
    now = dt.datetime.now(dt.UTC).replace(minute=0, second=0, microsecond=0)
    first, last = f"{now - dt.timedelta(hours=3):%Y-%m-%d-%H:%M}", f"{now - dt.timedelta(hours=1):%Y-%m-%d-%H:%M}"
    # During the "outage", five products were added to the catalog; Stripe never heard of them.
    seed_catalog(checkout, 5, changed_at=now - dt.timedelta(hours=2) + dt.timedelta(minutes=10))
    outage = lines_of("backfill-runbook", lambda line: line.replace("2026-11-24-10:00", first).replace("2026-11-24-13:00", last))
    listed, replayed, backfill, reconcile = (shell.run(line) for line in outage)
    assert listed.returncode == 0 and "0 dead letters open" in listed.stdout
    assert replayed.returncode == 0 and "replayed 0" in replayed.stdout
    assert backfill.returncode == 0 and "backfill_hours: 3 hours" in backfill.stdout
    assert "hourly_repair: applied 5, dead letters 0, remaining_drift 0" in backfill.stdout
    assert reconcile.returncode == 0 and "drift 0 rows" in reconcile.stdout


@pytest.fixture
def shop() -> Iterator[str]:
    """A MariaDB database of the test's own, with a shop_items table of the user's schema."""
    name = f"shop_{uuid.uuid4().hex[:10]}"
    admin = create_engine(MARIADB_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f"CREATE DATABASE {name}"))
    engine = create_engine(MARIADB_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}")
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE shop_items (sku VARCHAR(32) PRIMARY KEY, title VARCHAR(200), price_cents INT, curr CHAR(3), is_live TINYINT, deleted TINYINT)"))
        conn.execute(text("INSERT INTO shop_items VALUES ('A-1', 'Pro', 1500, 'usd', 1, 0), ('A-2', 'Team', 4900, 'usd', 1, 0), ('A-3', 'Gone', 900, 'usd', 0, 1)"))
        # Their prices in a table of their own: Pro monthly and yearly, Team monthly.
        conn.execute(text("CREATE TABLE shop_prices (code VARCHAR(64) PRIMARY KEY, sku VARCHAR(32), cents INT, curr CHAR(3), every VARCHAR(8))"))
        conn.execute(text("INSERT INTO shop_prices VALUES ('pro_monthly', 'A-1', 1500, 'usd', 'month'), ('pro_yearly', 'A-1', 15000, 'usd', 'year'), ('team_monthly', 'A-2', 4900, 'usd', 'month')"))
    engine.dispose()
    try:
        yield name
    finally:
        with admin.connect() as conn:
            conn.execute(text(f"DROP DATABASE IF EXISTS {name}"))
        admin.dispose()


def shop_database(name: str) -> Callable[[str], str]:
    return lambda line: line.replace("3306/shop", f"3306/{name}")


def test_readme_own_catalog_table(shell: Shell, shop: str):
    *exports, init, reconcile = lines_of("own-catalog-table", shop_database(shop))
    for line in exports:
        assert shell.run(line).returncode == 0
    ready = shell.run(init)
    assert ready.returncode == 0 and "products are read from your table 'shop_items'" in ready.stdout
    found = shell.run(reconcile)
    assert found.returncode == 1 and "missing_in_stripe 3" in found.stdout  # all three rows, archived A-3 too: the table says so
    assert "price_missing_in_stripe 3" in found.stdout  # every row of shop_prices


def test_readme_own_catalog_capture(shell: Shell, shop: str):
    from recon_pipeline.emulator import EmulatorServer

    fill = shop_database(shop)
    *exports, init, write, worker, audit, print_sql = lines_of("own-catalog-capture", lambda line: fill(line).replace("-u root shop ", f"-u root {shop} "))
    for line in exports:
        assert shell.run(line).returncode == 0
    with EmulatorServer(host="127.0.0.1", port=int(EMULATOR.rsplit(":", 1)[1])):  # the one the commands find running
        ready = shell.run(init)
        assert ready.returncode == 0 and "capture installed on shop_items, shop_prices" in ready.stdout
        assert shell.run(write).returncode == 0
        assert shell.run(worker).returncode == 0
        assert product("A-1")["name"] == "Pro Plus"
        prices = httpx.get(f"{EMULATOR}/v1/prices", params={"product": "A-1"}, auth=("sk_test_readme", ""), timeout=5).json()["data"]
        assert sorted(p["lookup_key"] for p in prices) == ["pro_monthly", "pro_yearly"]
    trail = shell.run(audit)
    assert trail.returncode == 0 and "update of shop_items by root@" in trail.stdout
    assert shell.run(print_sql).returncode == 0 and "CREATE TRIGGER recon_capture_shop_items_update" in (shell.cwd / "capture.sql").read_text()


def test_readme_authoring(shell: Shell):
    from recon_pipeline.emulator import EmulatorServer

    add, load, worker, reconcile, export = lines_of("authoring")
    with EmulatorServer(host="127.0.0.1", port=int(EMULATOR.rsplit(":", 1)[1])):  # the one the commands find running
        assert "seats: added with 1 prices" in shell.run(add).stdout
        assert "products created 3, changed 0; prices added 5" in shell.run(load).stdout
        assert shell.run(worker).returncode == 0
        seats = httpx.get(f"{EMULATOR}/v1/prices", params={"lookup_keys[]": "seats:default", "expand[]": "data.currency_options"}, auth=("sk_test_readme", ""), timeout=5).json()
        assert [t["unit_amount"] for t in seats["data"][0]["currency_options"]["eur"]["tiers"]] == [1100, 800]
        done = shell.run(reconcile)
        assert done.returncode == 0 and "drift 0 rows" in done.stdout, done.stdout
    assert shell.run(export).returncode == 0 and "team_seats" in (shell.cwd / "catalog-now.csv").read_text()


def test_readme_python_api(shell: Shell):
    """The README's Python example, run as written in a fresh checkout."""
    code = re.search(r"<!-- tested-python: python-api -->\n```python\n(.*?)```", (ROOT / "README.md").read_text(), re.S)
    assert code is not None
    (shell.cwd / "app.py").write_text(code.group(1))
    assert shell.run("python app.py").returncode == 0
    catalog = Catalog.open(f"sqlite:///{shell.cwd / 'data' / 'catalog.db'}")
    assert catalog.rows(["sku_42"])["name"].tolist() == ["Widget Pro"]
    assert dict(zip(*(catalog.price_rows(["sku_42"])[c].tolist() for c in ("lookup_key", "active")), strict=True)) == {"sku_42:monthly": True, "sku_42:yearly": False}
    with catalog.engine.connect() as conn:
        assert [row.change for row in conn.execute(text("SELECT change FROM outbox ORDER BY id"))] == ["create", "update", "add_price", "change_price"]


def test_readme_emulator_fixture(tmp_path: Path):
    """The README's pytest fixture for the emulator, run by pytest as another project would."""
    code = re.search(r"<!-- tested-python: emulator-fixture -->\n```python\n(.*?)```", (ROOT / "README.md").read_text(), re.S)
    assert code is not None
    (tmp_path / "test_with_the_emulator.py").write_text(code.group(1))
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:xdist", "test_with_the_emulator.py"], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and "1 passed" in done.stdout, done.stdout + done.stderr


def test_the_emulator_runs_alone_without_the_rest_of_the_package(tmp_path: Path):
    imported = subprocess.run(
        [sys.executable, "-c", "import sys, recon_pipeline.emulator.cli; print(sorted({m.split('.')[0] if not m.startswith('recon_pipeline') else '.'.join(m.split('.')[:2]) for m in sys.modules}))"],
        capture_output=True, text=True, timeout=60,
    ).stdout
    assert "recon_pipeline.emulator" in imported and not {"dagster", "pandas", "sqlalchemy", "recon_pipeline.catalog", "recon_pipeline.settings"} & set(ast.literal_eval(imported))
    port = free_port("127.0.0.1")
    server = subprocess.Popen([sys.executable, "-m", "recon_pipeline.emulator", "--port", str(port)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        url = f"http://127.0.0.1:{port}"
        wait_until(lambda: port_answers(f"{url}/_emulator/stats"), timeout=30, interval=0.2, what="python -m recon_pipeline.emulator to answer")
        client = stripe.StripeClient("sk_test_alone", base_addresses={"api": url}, max_network_retries=0)
        assert client.v1.products.create(params={"id": "alone", "name": "Alone"}).id == "alone"
    finally:
        server.terminate()
        server.wait(timeout=30)


def test_readme_own_catalog_query(shell: Shell, shop: str):
    *exports, reconcile = lines_of("own-catalog-query", shop_database(shop))
    for line in exports:
        assert shell.run(line).returncode == 0
    found = shell.run(reconcile)
    assert found.returncode == 1 and "missing_in_stripe 2" in found.stdout  # the query leaves the deleted row out
    assert "price_missing_in_stripe 2" in found.stdout  # the price in each row: A-1:default, A-2:default


@pytest.mark.postgres
def test_readme_make_serve(shell: Shell, checkout: Path):
    suffix = uuid.uuid4().hex[:8]
    names = {"recon_dagster": f"recon_dagster_{suffix}", "recon_catalog": f"recon_catalog_{suffix}"}

    def fill(line: str) -> str | None:
        if "sk_live_..." in line:
            return None  # the placeholder of a real key: unset, the bundled emulator is started too
        for documented, ours in names.items():
            line = line.replace(documented, ours)
        return line

    *setup, serve = lines_of("make-serve", fill)
    try:
        for line in setup:
            assert shell.run(line).returncode == 0, line
        log = checkout / "serve.log"
        server = shell.start(serve, log)
        try:
            wait_until(lambda: port_answers("http://127.0.0.1:3000/server_info"), timeout=120, interval=1, what="make serve to serve")
            assert "serving: webserver http://127.0.0.1:3000, daemon" in log.read_text()
        finally:
            interrupt(server, log)
    finally:
        for name in names.values():
            subprocess.run(["dropdb", "-h", "127.0.0.1", "-U", "postgres", "--if-exists", "--force", name], capture_output=True)
