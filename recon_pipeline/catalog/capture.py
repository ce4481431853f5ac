"""Capture: every change of a product or price row, whoever writes it, queued where it is written.

`recon-pipeline init --capture` installs database triggers on the catalog's tables (ours, or
the user's own through the column mapping) on PostgreSQL, MariaDB/MySQL and SQLite. Each
insert, update and delete of a row becomes an outbox row in the writer's own transaction
(a rolled-back transaction leaves none), with the operation, the table, the database user
and the time, and an audit row saying the same. The outbox worker then pushes the product's
current state, as for any other outbox row, so a price inserted and its product updated in
one transaction reach Stripe in a valid order.

The pipeline's own writes are not captured again: while it writes (`quiet`) it holds a mark
that only its own connection sees and the triggers read. Its edits are queued by
`changes.py` already, and Stripe's values written back must not go back to Stripe. The mark
takes no lock another writer could wait on: on PostgreSQL a setting local to the transaction
(`recon.capture_off`), on MariaDB/MySQL a session variable (`@recon_capture_off`), on SQLite
(one writer at a time) a `capture_mark` row deleted before the transaction commits.

Not captured, since no row trigger fires for them: `TRUNCATE`, and on MariaDB/MySQL the rows a
foreign key's `ON DELETE/UPDATE CASCADE` changes. The hourly reconciliation finds those.

An update that changes none of the captured columns (a mapped column, or any of our own
tables' but `updated_at`) is not a change. A row deleted, or moved to another product (a price: or to another lookup key), is
a `delete` of what it was: the worker archives in Stripe what the catalog deleted.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass

from sqlalchemy import Connection, Engine, delete, insert, text

from recon_pipeline.catalog.schema import capture_mark
from recon_pipeline.catalog.schema import prices as price_table
from recon_pipeline.catalog.schema import products as product_table
from recon_pipeline.catalog.source import CatalogSource
from recon_pipeline.names import SettingsError

PREFIX = "recon_capture"
DIALECTS = ("postgresql", "mysql", "sqlite")  # MariaDB is `mysql` to SQLAlchemy
# The outbox changes capture writes: a product row's, and a price row's (`<operation>_price`).
DELETE, DELETE_PRICE = "delete", "delete_price"


class CaptureError(SettingsError):
    """Capture cannot be installed on this catalog; the message says why and what to do."""


@dataclass(frozen=True)
class Target:
    """One table to capture: where the product id is, and which columns make a change."""

    kind: str  # "product" | "price"
    table: str  # as configured: `name` or `schema.name`
    product: str  # the column holding the product id
    lookup_key: str | None  # a price table's lookup key column
    columns: tuple[str, ...]  # an update changing none of these is no change
    account: str | None = None  # a product table's column of the Stripe account it is sold in

    @property
    def name(self) -> str:
        return f"{PREFIX}_{self.table.replace('.', '_')}"


def targets(source: CatalogSource) -> list[Target]:
    """The tables capture triggers on for this catalog source; a query source has none."""
    if source.is_own_schema:
        return [
            Target("product", "products", "id", None, tuple(c.name for c in product_table.columns if c.name != "updated_at"), "account"),
            Target("price", "prices", "product_id", "lookup_key", tuple(c.name for c in price_table.columns if c.name != "updated_at")),
        ]
    if source.products.query:
        raise CaptureError(
            "capture needs tables to put triggers on, and RECON_CATALOG_QUERY is a query: with a query only the hourly "
            "reconciliation runs. Map your tables instead (RECON_CATALOG_TABLE and RECON_CATALOG_COLUMNS) to capture their changes."
        )
    found = [_mapped("product", source.products.table, source.products.columns, "id", None)]
    if source.prices.table:
        found.append(_mapped("price", source.prices.table, source.prices.columns, "product_id", "lookup_key"))
    return found


def _mapped(kind: str, table: str | None, columns: Mapping[str, str], product: str, lookup_key: str | None) -> Target:
    assert table is not None
    watched = tuple(dict.fromkeys(column for field, column in columns.items() if field != "updated_at"))
    account = columns.get("account") if kind == "product" else None
    return Target(kind, table, columns[product], columns[lookup_key] if lookup_key else None, watched, account)


def uncaptured_prices(source: CatalogSource) -> str | None:
    """What capture leaves to the hourly path on this source, in words (None: nothing)."""
    if not source.is_own_schema and source.prices.query:
        return "prices come from RECON_PRICES_QUERY (a query): their changes are found by the hourly reconciliation only"
    return None


# -- the SQL, per database --------------------------------------------------------------------


def _quote(dialect: str, name: str) -> str:
    mark = "`" if dialect == "mysql" else '"'
    return ".".join(f"{mark}{part}{mark}" for part in name.split("."))


def _literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


@dataclass(frozen=True)
class _Sql:
    """The expressions one database spells its own way."""

    dialect: str

    @property
    def now(self) -> str:
        # SQLite: the text SQLAlchemy writes a UTC datetime as (six fractional digits).
        return {"postgresql": "now()", "mysql": "UTC_TIMESTAMP(6)", "sqlite": "strftime('%Y-%m-%d %H:%M:%f', 'now') || '000'"}[self.dialect]

    @property
    def user(self) -> str:
        return {"postgresql": "session_user", "mysql": "USER()", "sqlite": "'sqlite'"}[self.dialect]  # SQLite has no users

    def text_of(self, expression: str) -> str:
        return {"postgresql": f"({expression})::text", "mysql": f"CAST({expression} AS CHAR)", "sqlite": f"CAST({expression} AS TEXT)"}[self.dialect]

    def concat(self, *parts: str) -> str:
        return f"CONCAT({', '.join(parts)})" if self.dialect == "mysql" else "(" + " || ".join(parts) + ")"

    def json_object(self, pairs: list[tuple[str, str]]) -> str:
        function = {"postgresql": "json_build_object", "mysql": "JSON_OBJECT", "sqlite": "json_object"}[self.dialect]
        return f"{function}({', '.join(f'{_literal(k)}, {v}' for k, v in pairs)})"

    def differs(self, columns: Iterable[str]) -> str:
        """Some of the columns' values changed between OLD and NEW (NULLs compared as values;
        text byte for byte, whatever the column's collation: 'widget' -> 'Widget' is a change)."""
        q = [_quote(self.dialect, c) for c in columns]
        if self.dialect == "postgresql":  # as text: json has no equality operator
            return " OR ".join(f"(OLD.{c})::text IS DISTINCT FROM (NEW.{c})::text" for c in q)
        if self.dialect == "mysql":
            return " OR ".join(f"NOT (BINARY OLD.{c} <=> BINARY NEW.{c})" for c in q)
        return " OR ".join(f"OLD.{c} IS NOT NEW.{c}" for c in q)

    @property
    def quiet(self) -> str:
        """True while the pipeline's own connection writes (see `quiet`)."""
        return {
            "postgresql": "coalesce(current_setting('recon.capture_off', true), '') = 'on'",
            "mysql": "COALESCE(@recon_capture_off, 0) = 1",
            "sqlite": "EXISTS (SELECT 1 FROM capture_mark)",
        }[self.dialect]

    @property
    def no_from(self) -> str:
        """What a SELECT without a table needs before its WHERE."""
        return " FROM DUAL" if self.dialect == "mysql" else ""


def _enqueue(sql: _Sql, target: Target, row: str, operation: str, where: str | None = None) -> str:
    """The outbox row and the audit row of one captured change of `row` (OLD or NEW); `operation` an SQL expression."""
    product = sql.text_of(f"{row}.{_quote(sql.dialect, target.product)}")
    change = operation if target.kind == "product" else sql.concat(operation, "'_price'")
    details = [("source", "'capture'"), ("operation", operation), ("table", _literal(target.table)), ("db_user", sql.user)]
    what = _literal(f" of {target.table}")
    if target.account:
        details.append(("account", sql.text_of(f"{row}.{_quote(sql.dialect, target.account)}")))
    if target.lookup_key:
        key = sql.text_of(f"{row}.{_quote(sql.dialect, target.lookup_key)}")
        details.append(("lookup_key", key))
        what = sql.concat(_literal(f" of {target.table} "), key)
    reason = sql.concat(operation, what, "' by '", sql.user)
    # A row without its product (or lookup key) names nothing to push: the hourly run quarantines it.
    identity = [f"{row}.{_quote(sql.dialect, c)} IS NOT NULL" for c in (target.product, target.lookup_key) if c]
    condition = f"{sql.no_from} WHERE " + " AND ".join([*identity, *([f"({where})"] if where else [])])
    queued = ", ".join(_quote(sql.dialect, c) for c in ("product_id", "change", "fields", "created_at", "status", "attempts", "next_attempt_at"))
    audited = ", ".join(_quote(sql.dialect, c) for c in ("at", "actor", "product_id", "decision", "reason"))
    return (
        f"INSERT INTO outbox ({queued}) SELECT {product}, {change}, {sql.json_object(details)}, {sql.now}, 'pending', 0, {sql.now}{condition};\n"
        f"INSERT INTO audit ({audited}) SELECT {sql.now}, 'catalog', {product}, 'captured', {reason}{condition};"
    )


def install_statements(dialect: str, source: CatalogSource, schema: str | None = None) -> list[str]:
    """The statements that install capture on this catalog (each one whole: a trigger body is one statement).

    `schema`: on PostgreSQL, the schema our tables (outbox, audit) are in (default `public`)."""
    _supported(dialect)
    for target in targets(source):
        if "." in target.table and dialect != "postgresql":
            raise CaptureError(
                f"capture on {dialect} needs the table in the catalog's own database: {target.table!r} is in another "
                f"({target.table.split('.')[0]!r}); point RECON_CATALOG_URL at that database (our tables are created beside yours), "
                "or leave capture off (the hourly reconciliation still runs)."
            )
    statements = remove_statements(dialect, source)
    sql = _Sql(dialect)
    for target in targets(source):
        table = _quote(dialect, target.table)
        # The row left its product (or, a price, its lookup key): a delete of what it was.
        moved = sql.differs(c for c in (target.product, target.lookup_key) if c)
        if dialect == "postgresql":
            # Our tables by the schema they are in, whatever the writer's search_path.
            statements.append(
                f"CREATE OR REPLACE FUNCTION {target.name}() RETURNS trigger LANGUAGE plpgsql SET search_path = {_quote(dialect, schema or 'public')} AS $recon$\n"
                "BEGIN\n"
                f"  IF {sql.quiet} THEN RETURN NULL; END IF;\n"
                f"  IF TG_OP = 'UPDATE' AND NOT ({sql.differs(target.columns)}) THEN RETURN NULL; END IF;\n"
                f"  IF TG_OP = 'DELETE' OR (TG_OP = 'UPDATE' AND ({moved})) THEN\n"
                f"{_enqueue(sql, target, 'OLD', _literal(DELETE))}\n"
                "  END IF;\n"
                "  IF TG_OP <> 'DELETE' THEN\n"
                f"{_enqueue(sql, target, 'NEW', 'lower(TG_OP)')}\n"
                "  END IF;\n"
                "  RETURN NULL;\n"
                "END\n$recon$"
            )
            statements.append(f"CREATE TRIGGER {target.name} AFTER INSERT OR UPDATE OR DELETE ON {table} FOR EACH ROW EXECUTE FUNCTION {target.name}()")
            continue
        quiet = f"NOT {sql.quiet}"
        if dialect == "mysql":
            statements += [
                f"CREATE TRIGGER {target.name}_insert AFTER INSERT ON {table} FOR EACH ROW\nBEGIN\n  IF {quiet} THEN\n{_enqueue(sql, target, 'NEW', _literal('insert'))}\n  END IF;\nEND",
                f"CREATE TRIGGER {target.name}_update AFTER UPDATE ON {table} FOR EACH ROW\nBEGIN\n  IF {quiet} AND ({sql.differs(target.columns)}) THEN\n"
                f"    IF {moved} THEN\n{_enqueue(sql, target, 'OLD', _literal(DELETE))}\n    END IF;\n"
                f"{_enqueue(sql, target, 'NEW', _literal('update'))}\n  END IF;\nEND",
                f"CREATE TRIGGER {target.name}_delete AFTER DELETE ON {table} FOR EACH ROW\nBEGIN\n  IF {quiet} THEN\n{_enqueue(sql, target, 'OLD', _literal(DELETE))}\n  END IF;\nEND",
            ]
            continue
        statements += [
            f"CREATE TRIGGER {target.name}_insert AFTER INSERT ON {table} FOR EACH ROW WHEN {quiet}\nBEGIN\n{_enqueue(sql, target, 'NEW', _literal('insert'))}\nEND",
            f"CREATE TRIGGER {target.name}_update AFTER UPDATE ON {table} FOR EACH ROW WHEN {quiet} AND ({sql.differs(target.columns)})\nBEGIN\n"
            f"{_enqueue(sql, target, 'OLD', _literal(DELETE), moved)}\n{_enqueue(sql, target, 'NEW', _literal('update'))}\nEND",
            f"CREATE TRIGGER {target.name}_delete AFTER DELETE ON {table} FOR EACH ROW WHEN {quiet}\nBEGIN\n{_enqueue(sql, target, 'OLD', _literal(DELETE))}\nEND",
        ]
    return statements


def remove_statements(dialect: str, source: CatalogSource) -> list[str]:
    """The statements that remove capture (nothing else is touched; safe when it is not installed)."""
    _supported(dialect)
    statements: list[str] = []
    for target in targets(source):
        if dialect == "postgresql":
            statements += [f"DROP TRIGGER IF EXISTS {target.name} ON {_quote(dialect, target.table)}", f"DROP FUNCTION IF EXISTS {target.name}()"]
        else:
            statements += [f"DROP TRIGGER IF EXISTS {target.name}_{operation}" for operation in ("insert", "update", "delete")]
    return statements


def script(dialect: str, statements: list[str]) -> str:
    """The statements as the database's own client runs them (`psql`, `mariadb`, `sqlite3`)."""
    if dialect == "mysql":  # a trigger body holds `;`: the client needs another delimiter
        return "DELIMITER $$\n" + "".join(f"{s} $$\n" for s in statements) + "DELIMITER ;\n"
    return "".join(f"{s};\n" for s in statements)


def _supported(dialect: str) -> None:
    if dialect not in DIALECTS:
        raise CaptureError(f"capture supports PostgreSQL, MariaDB/MySQL and SQLite, not {dialect!r}; without it only the hourly reconciliation runs.")


def our_schema(engine: Engine) -> str | None:
    """PostgreSQL: the schema our tables are created in (the connection's current schema)."""
    if engine.dialect.name != "postgresql":
        return None
    with engine.connect() as conn:
        return conn.execute(text("SELECT current_schema()")).scalar()


def install(engine: Engine, source: CatalogSource) -> list[Target]:
    """Install (or re-install) capture on the catalog's tables, in one transaction where the database allows."""
    statements = install_statements(engine.dialect.name, source, our_schema(engine))
    with engine.begin() as conn:
        for statement in statements:
            conn.exec_driver_sql(statement)
    return targets(source)


def remove(engine: Engine, source: CatalogSource) -> None:
    statements = remove_statements(engine.dialect.name, source)
    with engine.begin() as conn:
        for statement in statements:
            conn.exec_driver_sql(statement)


def installed(engine: Engine) -> list[str]:
    """The capture triggers the catalog database holds now, by name."""
    like = {"prefix": f"{PREFIX}%"}
    query = {
        "postgresql": "SELECT DISTINCT tgname FROM pg_trigger WHERE tgname LIKE :prefix",
        "mysql": "SELECT trigger_name FROM information_schema.triggers WHERE trigger_schema = DATABASE() AND trigger_name LIKE :prefix",
        "sqlite": "SELECT name FROM sqlite_master WHERE type = 'trigger' AND name LIKE :prefix",
    }.get(engine.dialect.name)
    if query is None:
        return []
    with engine.connect() as conn:
        return sorted(conn.execute(text(query), like).scalars())


@contextlib.contextmanager
def quiet(conn: Connection, writer: str = "pipeline") -> Iterator[Connection]:
    """Writes in this block are the pipeline's own (or Stripe's, written back): capture stays silent.

    The mark is seen by this connection only, and put back as it was when the block ends:
    - PostgreSQL: a setting local to the transaction (gone with it, whatever happens);
    - MariaDB/MySQL: a session variable (the connection goes back to the pool: always reset);
    - SQLite: a `capture_mark` row, deleted before the transaction commits (one writer at a
      time: no other connection can see it or wait on it)."""
    dialect = conn.engine.dialect.name
    if dialect == "postgresql":
        was = conn.execute(text("SELECT current_setting('recon.capture_off', true)")).scalar() or ""
        conn.execute(text("SELECT set_config('recon.capture_off', 'on', true)"))
        yield conn  # on an error the transaction is rolled back, and the setting with it
        conn.execute(text("SELECT set_config('recon.capture_off', :was, true)"), {"was": was})
        return
    if dialect == "mysql":
        was = conn.execute(text("SELECT @recon_capture_off")).scalar()
        conn.execute(text("SET @recon_capture_off = 1"))
        try:
            yield conn
        finally:
            conn.execute(text("SET @recon_capture_off = :was"), {"was": was})
        return
    key = conn.execute(insert(capture_mark).values(writer=writer)).inserted_primary_key
    assert key is not None
    try:
        yield conn
    finally:
        conn.execute(delete(capture_mark).where(capture_mark.c.id == key[0]))
