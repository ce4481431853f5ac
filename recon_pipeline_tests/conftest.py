"""Shared fixtures: real parts only (the emulator over HTTP, SQLite and PostgreSQL, a Dagster instance).

Tests that need a Dagster instance, a server process or minutes of faults are marked
`slow` here (by the fixtures they use, or by folder), so `make test-fast` can leave them out.
"""

from __future__ import annotations

import os
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from recon_pipeline.catalog import Catalog
from recon_pipeline.testing import POSTGRES_ADMIN_URL, database_url, temporary_database

# The test server's admin URL (a database the tests may create databases from).
ADMIN_URL = os.environ.get("RECON_TEST_POSTGRES_URL") or POSTGRES_ADMIN_URL
SLOW_FIXTURES = {"dagster_home"}
SLOW_FOLDERS = {"faults"}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if SLOW_FIXTURES & set(getattr(item, "fixturenames", ())) or SLOW_FOLDERS & set(Path(str(item.fspath)).parts):
            item.add_marker(pytest.mark.slow)


@pytest.fixture
def emulator():
    """The bundled Stripe emulator, a real HTTP server on 127.0.0.1, fresh for each test.

    Every body it answers is validated against the vendored spec of today's API: a test
    that made it answer anything Stripe would not fails here.
    """
    from recon_pipeline.emulator import EmulatorServer

    with EmulatorServer(host="127.0.0.1", port=0, validate_responses=True) as server:
        yield server
    assert not server.problems, "the emulator answered outside the spec:\n" + "\n".join(server.problems[:20])


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'catalog.db'}"


@pytest.fixture
def postgres_database() -> Iterator[str]:
    """A PostgreSQL database created for this test and dropped after it; yields its name."""
    with temporary_database(ADMIN_URL) as name:
        yield name


@pytest.fixture
def postgres_url(postgres_database: str) -> str:
    return database_url(postgres_database, ADMIN_URL)


@pytest.fixture
def dagster_postgres_url(postgres_url: str) -> str:
    """The same database as dagster-postgres takes it (a plain postgresql:// URL, psycopg2 implied)."""
    return postgres_url.replace("postgresql+psycopg2://", "postgresql://")


MARIADB_ADMIN_URL = "mysql+pymysql://root@127.0.0.1:3306/test"


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres), "mariadb"])
def empty_database(request, tmp_path: Path) -> Iterator[str]:
    """The URL of an empty database of this test's own: a SQLite file, a PostgreSQL or a MariaDB database."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'empty.db'}"
        return
    if request.param == "postgresql":
        with temporary_database(ADMIN_URL) as name:
            yield database_url(name, ADMIN_URL)
        return
    from sqlalchemy import create_engine, text

    name = f"recon_test_{uuid.uuid4().hex[:12]}"
    admin = create_engine(MARIADB_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f"CREATE DATABASE {name}"))
    try:
        yield MARIADB_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    finally:
        with admin.connect() as conn:
            conn.execute(text(f"DROP DATABASE IF EXISTS {name}"))
        admin.dispose()


@dataclass
class Database:
    """A database of the test's own, and its own client."""

    kind: str
    url: str
    client: list[str]
    true: str  # how its SQL spells a true boolean
    now: str

    def run(self, sql: str) -> str:
        done = subprocess.run(self.client, input=sql, capture_output=True, text=True, timeout=60)
        assert done.returncode == 0 and "ERROR" not in done.stderr, done.stderr
        return done.stdout

    def count(self, table: str = "outbox") -> int:
        engine = create_engine(self.url)
        try:
            with engine.connect() as conn:
                return conn.execute(text(f"SELECT count(*) FROM {table}")).scalar_one()
        finally:
            engine.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres), "mariadb"])
def database(request, tmp_path: Path) -> Iterator[Database]:
    """A database of this test's own (SQLite, PostgreSQL, MariaDB) with its own client, for tests that write as any writer would."""
    if request.param == "sqlite":
        path = tmp_path / "catalog.db"
        yield Database("sqlite", f"sqlite:///{path}", ["sqlite3", "-bail", str(path)], "1", "CURRENT_TIMESTAMP")
        return
    name = f"recon_capture_{uuid.uuid4().hex[:10]}"
    admin_url = ADMIN_URL if request.param == "postgresql" else MARIADB_ADMIN_URL
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f"CREATE DATABASE {name}"))
    try:
        url = admin_url.rsplit("/", 1)[0] + f"/{name}"
        if request.param == "postgresql":
            yield Database("postgresql", url, ["psql", "-q", "-X", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1", "-U", "postgres", "-d", name], "true", "now()")
        else:
            yield Database("mariadb", url, ["mariadb", "-h", "127.0.0.1", "-u", "root", name], "1", "now()")
    finally:
        with admin.connect() as conn:
            conn.execute(text(f"DROP DATABASE IF EXISTS {name}" + (" WITH (FORCE)" if request.param == "postgresql" else "")))
        admin.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def catalog(request) -> Iterator[Catalog]:
    """Our own catalog, on SQLite and on PostgreSQL, its schema at the newest migration."""
    opened = Catalog.open(request.getfixturevalue("sqlite_url" if request.param == "sqlite" else "postgres_url"))
    yield opened
    opened.engine.dispose()


@pytest.fixture
def receiver(sqlite_url: str):
    """The webhook receiver over HTTP on 127.0.0.1 (secret WEBHOOK_SECRET), its inbox a fresh SQLite
    catalog; yields (engine, server)."""
    from recon_pipeline.emulator import ServerThread
    from recon_pipeline.sync.webhooks import create_webhook_app
    from recon_pipeline.testing import WEBHOOK_SECRET

    engine = Catalog.open(sqlite_url).engine
    with ServerThread(create_webhook_app(engine, WEBHOOK_SECRET)) as server:
        yield engine, server


@pytest.fixture
def dagster_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty DAGSTER_HOME for this test (Dagster's default SQLite storage)."""
    home = tmp_path / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    return home
