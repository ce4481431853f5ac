"""A canonical side as one Parquet file, written chunk by chunk, so that no step holds it whole.

The snapshot step writes each side as it arrives (a Stripe page, a chunk of catalog rows)
through a `TableWriter`; what it hands on is a `ParquetTable`, a file and its row count.
catalog_drift gives the files to DuckDB, which scans only the columns it compares and spills
to disk under its memory limit. Anyone can still read a side whole (`ParquetTable.frame()`,
or any Parquet reader on the file the IO manager keeps).
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import io
import tempfile
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

ROW_GROUP_ROWS = 16_384  # rows buffered before a row group is written (pages are 100 rows; 4 MB of prices)
DUCKDB_MEMORY = "256MB"  # DuckDB's working memory for a query over the sides; above it, it spills to disk


def give_back_memory() -> None:
    """Hand freed memory back to the system before a step that needs its own (catalog_drift after
    the snapshot): Python's collector, Arrow's pool, then glibc's free lists (malloc_trim)."""
    gc.collect()
    pa.default_memory_pool().release_unused()
    with contextlib.suppress(OSError, AttributeError):  # not glibc: nothing to trim
        ctypes.CDLL("libc.so.6").malloc_trim(0)


@contextmanager
def duckdb_session() -> Iterator[duckdb.DuckDBPyConnection]:
    """A DuckDB connection held to DUCKDB_MEMORY, spilling to a temporary directory of its own."""
    with tempfile.TemporaryDirectory(prefix="recon-duckdb-") as spill:
        con = duckdb.connect(config={"memory_limit": DUCKDB_MEMORY, "temp_directory": spill, "preserve_insertion_order": False})
        try:
            yield con
        finally:
            con.close()


def sql_text(value: str) -> str:
    """A value as a SQL string literal."""
    return "'" + value.replace("'", "''") + "'"


@dataclass
class ParquetTable:
    """One canonical side on disk: a Parquet file and its row count (the path follows the file
    when the IO manager moves it into place)."""

    path: str
    rows: int

    def __len__(self) -> int:
        return self.rows

    def __reduce__(self) -> tuple[Any, ...]:
        # Kept by any other IO manager (a pickle), the side is its frame: the file is the step's own.
        return (_frame_of_parquet, (Path(self.path).read_bytes(),))

    @property
    def scan(self) -> str:
        """SQL (DuckDB) for the file's rows."""
        return f"read_parquet({sql_text(self.path)})"

    def query(self, sql: str) -> list[tuple[Any, ...]]:
        """The rows of a DuckDB query in which `side` is this file."""
        with duckdb_session() as con:
            con.sql(f"CREATE VIEW side AS SELECT * FROM {self.scan}")
            return con.sql(sql).fetchall()

    def values(self, column: str) -> list[Any]:
        """One column's values, as Python objects."""
        return pq.read_table(self.path, columns=[column]).column(column).to_pylist()

    def frame(self) -> pd.DataFrame:
        """The whole side as a canonical frame (text columns Arrow-backed, as the readers build them)."""
        with pd.option_context("mode.string_storage", "pyarrow"):
            return pd.read_parquet(self.path)


def _frame_of_parquet(data: bytes) -> pd.DataFrame:
    with pd.option_context("mode.string_storage", "pyarrow"):
        return pd.read_parquet(io.BytesIO(data))


class TableWriter:
    """Arrow record batches or pandas frames, from any thread, into one Parquet file.

    Rows are buffered to ROW_GROUP_ROWS and written as one row group (a row group per
    100-row page would make the file mostly metadata); a full buffer is written outside the
    buffer's lock, so the threads adding pages never wait for the file. Every batch is cast
    to the first's schema, or to `schema` when given (also the schema of a file of no rows).
    """

    def __init__(self, path: str | Path, schema: pa.Schema | None = None):
        self.path, self.schema = str(path), schema
        self._lock = threading.Lock()  # the buffer
        self._file_lock = threading.Lock()  # the file
        self._writer: pq.ParquetWriter | None = None
        self._buffer: list[pa.RecordBatch] = []
        self._buffered = 0
        self.rows = 0

    def write(self, data: pa.RecordBatch | pa.Table | pd.DataFrame) -> None:
        if isinstance(data, pd.DataFrame):
            data = pa.Table.from_pandas(data, preserve_index=False)
        batches = data.to_batches() if isinstance(data, pa.Table) else [data]
        with self._lock:
            if self.schema is None:
                self.schema = data.schema.remove_metadata()  # a table of no rows has no batches, but its columns
            for batch in batches:
                self._buffer.append(batch if batch.schema.equals(self.schema) else batch.cast(self.schema))
                self._buffered += batch.num_rows
                self.rows += batch.num_rows
            full = self._take() if self._buffered >= ROW_GROUP_ROWS else []
        self._write_group(full)

    def _take(self) -> list[pa.RecordBatch]:
        """The buffer's batches, the buffer emptied (under `_lock`)."""
        taken, self._buffer, self._buffered = self._buffer, [], 0
        return taken

    def _write_group(self, batches: list[pa.RecordBatch]) -> None:
        if not batches:
            return
        assert self.schema is not None
        with self._file_lock:
            if self._writer is None:
                self._writer = pq.ParquetWriter(self.path, self.schema)
            self._writer.write_table(pa.Table.from_batches(batches, schema=self.schema))

    def write_all(self, frames: Iterable[pd.DataFrame]) -> ParquetTable:
        """Each frame in turn (an empty one only when it is the first, for the file's columns), then close."""
        for frame in frames:
            if len(frame) or self.schema is None:
                self.write(frame)
        return self.close()

    def close(self) -> ParquetTable:
        """Write what is buffered and close the file: the side, whole."""
        with self._lock:
            self._write_group(self._take())
            if self._writer is None:
                if self.schema is None:
                    raise ValueError(f"{self.path}: nothing was written and no schema given, so the file's columns are unknown")
                pq.write_table(self.schema.empty_table(), self.path)
            else:
                self._writer.close()
            return ParquetTable(self.path, self.rows)
