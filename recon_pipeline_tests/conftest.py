"""Shared fixtures: real parts only (the emulator over HTTP, SQLite and PostgreSQL, a Dagster instance)."""

from __future__ import annotations

import os
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import pytest
from sqlalchemy import create_engine, text

POSTGRES_ADMIN_URL = os.environ.get("RECON_TEST_POSTGRES_URL", "postgresql+psycopg2://postgres@127.0.0.1:5432/postgres")


@pytest.fixture
def emulator():
    """The bundled Stripe emulator, a real HTTP server on 127.0.0.1, fresh for each test."""
    from recon_pipeline.emulator import EmulatorServer

    with EmulatorServer(host="127.0.0.1", port=0) as server:
        yield server


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'catalog.db'}"


@contextmanager
def temporary_database(prefix: str = "recon_test") -> Iterator[str]:
    """A PostgreSQL database created for the caller and dropped after; yields its name."""
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    admin = create_engine(POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield name
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def database_url(name: str) -> str:
    """The SQLAlchemy URL of database `name` on the test server."""
    return POSTGRES_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"


@pytest.fixture
def postgres_database() -> Iterator[str]:
    """A PostgreSQL database created for this test and dropped after it; yields its name."""
    with temporary_database() as name:
        yield name


@pytest.fixture
def postgres_url(postgres_database: str) -> str:
    return database_url(postgres_database)


@pytest.fixture
def dagster_postgres_url(postgres_url: str) -> str:
    """The same database as dagster-postgres takes it (a plain postgresql:// URL, psycopg2 implied)."""
    return postgres_url.replace("postgresql+psycopg2://", "postgresql://")


@pytest.fixture
def dagster_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty DAGSTER_HOME for this test (Dagster's default SQLite storage)."""
    home = tmp_path / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    return home
