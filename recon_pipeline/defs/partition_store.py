"""An IO manager for hourly partitions: DataFrames stored per (asset, hour) in the catalog database.

Dagster's filesystem IO manager stores one pickle per partition and cannot load a range of
them; backfills of many hours in one run need exactly that. Frames are stored as Parquet in
`asset_partitions` (SQLite or PostgreSQL), and a range loads with one query. A frame for
several hours carries an `hour` column (the partition key) that says where each row goes;
every hour of the range is stored, empty ones too, so "no changes" is a fact, not a gap.
"""

import datetime as dt
import io

import dagster as dg
import pandas as pd
from sqlalchemy import delete, insert, select

from recon_pipeline.catalog import init_schema, make_engine
from recon_pipeline.catalog.schema import asset_partitions

HOUR_COLUMN = "hour"


def _to_parquet(frame: pd.DataFrame) -> bytes:
    buffer = io.BytesIO()
    frame.reset_index(drop=True).to_parquet(buffer, index=False)
    return buffer.getvalue()


class PartitionStore(dg.ConfigurableIOManager):
    """Hourly frames in the catalog database (RECON_CATALOG_URL), loadable by range."""

    url: str

    def _engine(self):
        engine = make_engine(self.url)
        init_schema(engine, with_products=False)  # only the records; the catalog resource owns the rest
        return engine

    def handle_output(self, context: dg.OutputContext, obj: pd.DataFrame) -> None:
        asset = context.asset_key.to_user_string()
        keys = context.asset_partition_keys
        if not keys:
            raise ValueError(f"{asset}: no partitions to store (is the hour in the future?)")
        if HOUR_COLUMN not in obj.columns:
            raise ValueError(f"{asset}: an hourly frame needs an {HOUR_COLUMN!r} column naming each row's partition")
        now = dt.datetime.now(dt.UTC)
        with self._engine().begin() as conn:
            conn.execute(delete(asset_partitions).where(asset_partitions.c.asset_key == asset, asset_partitions.c.partition_key.in_(keys)))
            for key in keys:
                part = obj[obj[HOUR_COLUMN] == key]
                conn.execute(insert(asset_partitions).values(asset_key=asset, partition_key=key, frame=_to_parquet(part), row_count=len(part), stored_at=now))
        context.add_output_metadata({"hours_stored": dg.MetadataValue.int(len(keys))})

    def load_input(self, context: dg.InputContext) -> pd.DataFrame:
        asset = context.asset_key.to_user_string()
        keys = context.asset_partition_keys
        with self._engine().connect() as conn:
            rows = conn.execute(
                select(asset_partitions.c.partition_key, asset_partitions.c.frame).where(asset_partitions.c.asset_key == asset, asset_partitions.c.partition_key.in_(keys))
            ).all()
        missing = sorted(set(keys) - {r.partition_key for r in rows})
        if missing:
            raise ValueError(
                f"{asset} has no stored partitions {missing[:5]}{'...' if len(missing) > 5 else ''}: materialize the whole hourly group "
                f"for those hours (job backfill_hours, or recon-pipeline backfill --from {missing[0]} --to {missing[-1]}), not one asset of it alone"
            )
        frames = [pd.read_parquet(io.BytesIO(r.frame)) for r in sorted(rows)]
        return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
