"""The catalog's schema, owned by Alembic: every change is a revision under `migrations/versions/`.

Two branches: `records` (the durable records every install has: outbox, inbox, ledger,
audit, dead letters, ...) and `catalog` (the catalog's own `products`), which only an
install whose catalog is ours gets; a user's own table or query never has a `products`
table made beside it.

`upgrade(engine)` brings a database to the newest revisions: an empty one gets every table,
one made by release 0.1.0 (before migrations) is recognised by the baselines and kept as
it is. `recon-pipeline init` runs it, and so does every process that opens the catalog, so
an install upgraded in place keeps working; once at the newest revisions this costs one
query.

Several processes may open the catalog at once (Dagster runs steps in parallel), so the
upgrade itself runs under a lock: an advisory lock on PostgreSQL, a named lock on MySQL
and MariaDB, a file lock beside a SQLite file. The revision is recorded in
`recon_schema_version` (not Alembic's default table name: a user's own database may
already have one of those for their application).
"""

from __future__ import annotations

import contextlib
import fcntl
from collections.abc import Iterator
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, text

MIGRATIONS = Path(__file__).resolve().parent / "migrations"
VERSION_TABLE = "recon_schema_version"
LOCK_KEY = 727_275  # any constant: the advisory lock that serializes upgrades on PostgreSQL
LOCK_NAME = "recon_pipeline_schema_upgrade"


def _config() -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    return config


RECORDS, CATALOG = "records", "catalog"


def heads(branches: tuple[str, ...] = (RECORDS, CATALOG)) -> set[str]:
    """The newest revision of each branch."""
    script = ScriptDirectory.from_config(_config())
    found = {branch: script.get_revision(f"{branch}@head") for branch in branches}
    missing = [branch for branch, revision in found.items() if revision is None]
    assert not missing, f"no revisions of {missing} under {MIGRATIONS}"
    return {revision.revision for revision in found.values() if revision is not None}


def current(engine: Engine) -> set[str]:
    """The revisions the database is at (empty: never migrated)."""
    with engine.connect() as conn:
        return set(MigrationContext.configure(conn, opts={"version_table": VERSION_TABLE}).get_current_heads())


@contextlib.contextmanager
def _upgrade_lock(engine: Engine) -> Iterator[None]:
    dialect = engine.dialect.name
    if dialect == "sqlite":
        database = engine.url.database
        if not database or database == ":memory:":
            yield
            return
        with open(Path(database).with_name(Path(database).name + ".migrate-lock"), "a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)
        return
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        if dialect == "postgresql":
            conn.execute(text("SELECT pg_advisory_lock(:key)"), {"key": LOCK_KEY})
            release = text("SELECT pg_advisory_unlock(:key)")
        else:  # MySQL, MariaDB
            conn.execute(text("SELECT GET_LOCK(:name, 300)"), {"name": LOCK_NAME})
            release = text("SELECT RELEASE_LOCK(:name)")
        try:
            yield
        finally:
            conn.execute(release, {"key": LOCK_KEY, "name": LOCK_NAME})


def behind(engine: Engine, with_products: bool = True) -> bool:
    """Whether the database is missing revisions this release has."""
    return not heads((RECORDS, CATALOG) if with_products else (RECORDS,)) <= current(engine)


def upgrade(engine: Engine, with_products: bool = True) -> set[str]:
    """Bring the database to the newest revisions (safe to run any number of times, from many processes).

    `with_products`: the catalog is ours (its `products` table too), not the user's own.
    """
    branches = (RECORDS, CATALOG) if with_products else (RECORDS,)
    wanted = heads(branches)
    if wanted <= current(engine):
        return wanted
    with _upgrade_lock(engine):
        if not wanted <= current(engine):  # another process may have upgraded while we waited
            config = _config()
            with engine.begin() as conn:
                config.attributes["connection"] = conn
                for branch in branches:
                    command.upgrade(config, f"{branch}@head")
    return wanted
