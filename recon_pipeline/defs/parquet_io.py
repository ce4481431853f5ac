"""Frames between steps as Parquet files, not pickles: readable by any tool, typed, compact.

The default IO manager of every non-hourly asset (`io_manager`). Each output is one file,
`<base_dir>/<asset path>[/<partition>].parquet`, under the Dagster instance's storage
directory unless `base_dir` says otherwise (with several machines, a shared path). An
output of None (an asset whose result is its writes and metadata) stores nothing.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import dagster as dg
import pandas as pd
import pyarrow.parquet as pq
from upath import UPath

from recon_pipeline.reconcile.tables import ParquetTable

LOAD_AS, AS_FILE = "load_as", "file"


def as_file() -> dg.AssetIn:
    """An input handed over as its Parquet file (a ParquetTable), not as a frame (by another IO manager: a frame)."""
    return dg.AssetIn(metadata={LOAD_AS: AS_FILE}, dagster_type=dg.Any)


class ParquetFiles(dg.UPathIOManager):
    extension = ".parquet"

    def dump_to_path(self, context: dg.OutputContext, obj: pd.DataFrame | ParquetTable, path: UPath) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(path.name + ".partial")
        if isinstance(obj, ParquetTable):
            shutil.move(obj.path, str(partial))  # a rename on the same file system
        else:
            obj.to_parquet(partial, index=False)
        partial.rename(path)  # a reader never sees half a file
        if isinstance(obj, ParquetTable):
            obj.path = str(path)  # the step's handle follows its file

    def load_from_path(self, context: dg.InputContext, path: UPath) -> pd.DataFrame | ParquetTable:
        if (context.definition_metadata or {}).get(LOAD_AS) == AS_FILE:
            return ParquetTable(str(path), pq.ParquetFile(path).metadata.num_rows)
        # Text columns come back Arrow-backed, as the canonical frames hold them (pandas' default
        # would make a Python string of every value: four times the memory, and slower).
        with pd.option_context("mode.string_storage", "pyarrow"):
            return pd.read_parquet(path)

    def handle_output(self, context: dg.OutputContext, obj: object) -> None:
        if obj is None:
            return
        if not isinstance(obj, pd.DataFrame | ParquetTable):
            raise TypeError(f"{context.asset_key.to_user_string()}: the Parquet IO manager stores DataFrames, not {type(obj).__name__}")
        super().handle_output(context, obj)


class ParquetIOManager(dg.ConfigurableIOManagerFactory):
    """Asset outputs (DataFrames) as Parquet files under `base_dir` (empty: the instance's storage directory)."""

    base_dir: str = ""

    def create_io_manager(self, context: dg.InitResourceContext) -> ParquetFiles:
        base = self.base_dir or (context.instance.storage_directory() if context.instance else str(Path.cwd() / "storage"))
        return ParquetFiles(base_path=UPath(base))
