"""Reaching the catalog database, with errors a person can act on.

SQLAlchemy's own errors for a wrong RECON_CATALOG_URL are tracebacks about plugins, drivers
and sockets. `reachable(url, ...)` turns each into a CatalogUnavailable that names the
setting, the URL (never its password) and what to do: a `postgres://` scheme, a driver that
is not installed, a database that does not exist, a server that does not answer, a SQLite
file that is not there for a command that only reads.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, NoSuchModuleError, OperationalError, ProgrammingError

from recon_pipeline.names import SettingsError

SCHEMES = "sqlite:///path/catalog.db, postgresql+psycopg2://USER@HOST:5432/DATABASE or mysql+pymysql://USER@HOST:3306/DATABASE"


class CatalogUnavailable(SettingsError):
    """The catalog database cannot be reached as configured; the message says why and what to do."""


def shown(url: str) -> str:
    """A database URL fit to print: never a password."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return "<unparseable URL>"


def sqlite_file(url: str) -> Path | None:
    """The file of a SQLite URL (None for anything else, or an in-memory database)."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or not parsed.database or parsed.database == ":memory:":
        return None
    return Path(parsed.database)


def require_existing(url: str) -> None:
    """For commands that only read: a SQLite catalog must already exist (a typo'd path must not create one)."""
    path = sqlite_file(url)
    if path is not None and not path.exists():
        raise CatalogUnavailable(
            f"RECON_CATALOG_URL={shown(url)!r}: there is no catalog at {path}; check the path, "
            "or create it with `recon-pipeline init` (this command only reads, so it creates nothing)."
        )


def _explain(url: str, error: Exception) -> str:
    where = f"RECON_CATALOG_URL={shown(url)!r}"
    text = str(getattr(error, "orig", None) or error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    try:
        parsed = make_url(url)
    except ArgumentError:
        return f"RECON_CATALOG_URL is not a database URL SQLAlchemy can read; use {SCHEMES}."
    scheme = parsed.drivername
    if isinstance(error, NoSuchModuleError):
        if scheme.split("+")[0] == "postgres":
            return f"{where} starts with 'postgres://', which SQLAlchemy does not accept; write postgresql+psycopg2://... instead."
        return f"{where}: SQLAlchemy does not know the database kind {scheme!r}; use {SCHEMES}."
    if isinstance(error, ModuleNotFoundError):
        return f"{where}: its driver ({error.name}) is not installed; for MySQL and MariaDB write mysql+pymysql://..., for PostgreSQL postgresql+psycopg2://..."
    lowered = text.lower()
    host = f"{parsed.host or 'localhost'}:{parsed.port or ''}".rstrip(":")
    if ("does not exist" in lowered and "database" in lowered) or "unknown database" in lowered:
        return f"{where}: the database {parsed.database!r} does not exist on {host}; create it (e.g. {_create_database(parsed)})."
    if "connection refused" in lowered or "can't connect" in lowered or "could not connect" in lowered or "timeout" in lowered:
        return f"{where}: nothing answers at {host} ({text}); is the server running, and is the host and port right?"
    if "password" in lowered or "access denied" in lowered or "authentication" in lowered:
        return f"{where}: the server refused the user or password ({text}); check the credentials in RECON_CATALOG_URL."
    if "unable to open database file" in lowered:
        return f"{where}: SQLite cannot open that file ({text}); check the folder exists and is writable."
    return f"{where}: the catalog database cannot be used ({type(error).__name__}: {text})."


@contextlib.contextmanager
def reachable(url: str) -> Iterator[None]:
    """Run the block; a connection failure comes out as CatalogUnavailable saying what to do."""
    try:
        yield
    except (NoSuchModuleError, ModuleNotFoundError, OperationalError, ArgumentError) as error:
        raise CatalogUnavailable(_explain(url, error)) from None
    except ProgrammingError as error:  # e.g. MySQL's "Unknown database"
        if "database" not in str(error).lower():
            raise
        raise CatalogUnavailable(_explain(url, error)) from None


def _create_database(parsed: URL) -> str:
    """The command that creates the URL's database, in that database's own client."""
    if parsed.get_backend_name() in ("mysql", "mariadb"):
        port = f" -P {parsed.port}" if parsed.port else ""
        password = " -p" if parsed.password else ""  # asks for it: never shown here
        return f"mariadb -h {parsed.host or 'localhost'}{port} -u {parsed.username}{password} -e 'CREATE DATABASE `{parsed.database}`'"
    port = f" -p {parsed.port}" if parsed.port else ""
    return f"createdb -h {parsed.host or 'localhost'}{port} -U {parsed.username} {parsed.database}"
