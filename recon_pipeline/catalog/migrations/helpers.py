"""What the migrations share (frozen once a revision uses it: change it only by adding)."""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

TEXT_ID = sa.String(length=64)


def create_if_missing(name: str, *columns: sa.Column, indexes: dict[str, list[str]] | None = None) -> None:
    """Create a table and its indexes unless it exists (a database made by release 0.1.0's create_all)."""
    if name in sa.inspect(op.get_bind()).get_table_names():
        return
    op.create_table(name, *columns)
    for index, on in (indexes or {}).items():
        op.create_index(index, name, on)
