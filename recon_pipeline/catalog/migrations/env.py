"""Alembic's environment for the catalog database: run by `recon_pipeline.catalog.migrate`.

The caller hands over the connection (config.attributes["connection"]); there is no
alembic.ini and no URL here, so the settings stay the one place configuration comes from.
"""

from alembic import context

from recon_pipeline.catalog.migrate import VERSION_TABLE
from recon_pipeline.catalog.schema import metadata

connection = context.config.attributes["connection"]
context.configure(
    connection=connection,
    target_metadata=metadata,
    version_table=VERSION_TABLE,
    # SQLite alters tables by copying them ("batch" mode); elsewhere ALTER TABLE as usual.
    render_as_batch=connection.dialect.name == "sqlite",
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()
