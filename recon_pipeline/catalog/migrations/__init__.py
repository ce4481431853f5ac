"""Alembic revisions of the catalog database (see ../migrate.py)."""
