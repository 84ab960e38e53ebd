"""Parquet tables: intermediate record tables, the index and the truth table.

* A **record table** is a folder of ``part-{unit:06d}.parquet`` files of full records
  (:meth:`EditSample.to_row`) so each stage can run alone and be re-run.
* The **index** (``index.parquet``) has one row per candidate — accepted, rejected, failed or
  pending — sorted by key; every input appears, a broken one too.
* The **truth** (``truth.parquet``) is what the synthetic generator really did. No pipeline
  stage reads it; only ``mcie audit`` and CIE-Bench join it on ``key``.
"""

from __future__ import annotations

import contextlib
import io
import json
from collections.abc import Iterator
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from mcie import storage
from mcie.records import EditSample

RECORD_SCHEMA = pa.schema(
    [
        ("key", pa.string()),
        ("schema_version", pa.int32()),
        ("source_id", pa.string()),
        ("source_hash", pa.string()),
        ("src_png", pa.binary()),
        ("tgt_png", pa.binary()),
        ("instruction", pa.string()),
        (
            "sub_edits",
            pa.list_(
                pa.struct(
                    [
                        ("meta_json", pa.string()),
                        ("ground_mask_png", pa.binary()),
                        ("mask_png", pa.binary()),
                    ]
                )
            ),
        ),
        ("scores_json", pa.string()),
        ("status", pa.string()),
        ("reason", pa.string()),
        ("error", pa.string()),
        ("provenance_json", pa.string()),
        ("verdict_json", pa.string()),
    ]
)

INDEX_SCHEMA = pa.schema(
    [
        ("key", pa.string()),
        ("shard", pa.string()),  # relative path of the tar holding it; null for failed
        ("status", pa.string()),
        ("reason", pa.string()),
        ("error", pa.string()),
        ("instruction", pa.string()),
        ("num_sub_edits", pa.int32()),
        ("edit_types", pa.list_(pa.string())),
        ("sub_instructions", pa.list_(pa.string())),
        ("sub_executed", pa.list_(pa.bool_())),
        ("sub_compliance", pa.list_(pa.float32())),
        ("compliance", pa.float32()),
        ("bg_ssim", pa.float32()),
        ("bg_psnr", pa.float32()),
        ("bg_l1", pa.float32()),
        ("bg_changed", pa.float32()),
        ("source_id", pa.string()),
        ("source_hash", pa.string()),
        ("unit", pa.int32()),
        ("verdict_json", pa.string()),
        ("schema_version", pa.int32()),
    ]
)

TRUTH_SCHEMA = pa.schema(
    [
        ("key", pa.string()),
        ("source_id", pa.string()),
        ("num_failures", pa.int32()),
        ("failure_types", pa.list_(pa.string())),
        ("failures_json", pa.string()),
        ("executed", pa.list_(pa.bool_())),
        ("masks_png", pa.list_(pa.binary())),
    ]
)


def index_row(sample: EditSample, shard: str | None, unit: int) -> dict[str, Any]:
    """The index row of a sample (no pixels)."""
    s = sample.scores
    return {
        "key": sample.key,
        "shard": shard,
        "status": sample.status.value,
        "reason": sample.reason,
        "error": sample.error,
        "instruction": sample.instruction,
        "num_sub_edits": len(sample.sub_edits),
        "edit_types": [e.edit_type for e in sample.sub_edits],
        "sub_instructions": [e.instruction for e in sample.sub_edits],
        "sub_executed": [e.executed for e in sample.sub_edits],
        "sub_compliance": [e.scores.get("compliance") for e in sample.sub_edits],
        "compliance": s.get("compliance"),
        "bg_ssim": s.get("bg_ssim"),
        "bg_psnr": s.get("bg_psnr"),
        "bg_l1": s.get("bg_l1"),
        "bg_changed": s.get("bg_changed"),
        "source_id": sample.source_id,
        "source_hash": sample.source_hash,
        "unit": unit,
        "verdict_json": None if sample.verdict is None else json.dumps(sample.verdict, sort_keys=True),
        "schema_version": sample.schema_version,
    }


def write_rows(
    path: str, rows: list[dict[str, Any]], schema: pa.Schema, sort_key: str | None = "key"
) -> storage.FileDigest:
    """Write ``rows`` (sorted by ``sort_key``) to a Parquet file atomically; returns its digest."""
    if sort_key:
        rows = sorted(rows, key=lambda r: r[sort_key])
    table = pa.Table.from_pylist(rows, schema=schema)
    return write_table(path, table)


def write_table(path: str, table: pa.Table) -> storage.FileDigest:
    """Write ``table`` as zstd Parquet to ``path`` (local or a storage URL) atomically; returns
    the file's digest. Built in memory first: these tables hold no pixels, or one unit's."""
    buf = io.BytesIO()
    pq.write_table(table, buf, compression="zstd")
    return storage.atomic_write(path, buf.getvalue())


def read_table(path: str, **kwargs) -> pa.Table:
    """Read a Parquet file from ``path`` (local or a storage URL); ``kwargs`` go to
    :func:`pyarrow.parquet.read_table` (``columns``, ``schema``)."""
    if not storage.is_remote(path):
        return pq.read_table(path, **kwargs)
    with storage.open_read(path) as fh:
        return pq.read_table(fh, **kwargs)


@contextlib.contextmanager
def open_parquet(path: str) -> Iterator[pq.ParquetFile]:
    """A Parquet file at ``path`` (local or a storage URL) opened for reading by row group or
    in batches, so a reader holds one part of a large table (the truth with its masks) at a
    time."""
    if not storage.is_remote(path):
        with pq.ParquetFile(path) as pf:
            yield pf
        return
    with storage.open_read(path) as fh, pq.ParquetFile(fh) as pf:
        yield pf


@contextlib.contextmanager
def system_allocator() -> Iterator[None]:
    """Arrow buffers made inside the block come from the system allocator. pyarrow's default
    pool (mimalloc) keeps freed pages mapped, so a reader streaming a large table would keep a
    footprint that follows the largest row group it decoded (measured: +27 MB of resident
    memory reading a 90k-row index batch by batch); the system allocator returns large freed
    blocks to the OS. Buffers remember their pool, so leaving the block is safe."""
    previous = pa.default_memory_pool()
    pa.set_memory_pool(pa.system_memory_pool())
    try:
        yield
    finally:
        pa.set_memory_pool(previous)


def iter_rows(path: str, columns: list[str], batch_rows: int = 4096) -> Iterator[dict[str, Any]]:
    """The rows of the Parquet file at ``path`` as dicts of ``columns``, in file order, at most
    ``batch_rows`` of them in Python objects at a time."""
    with open_parquet(path) as pf:
        for batch in pf.iter_batches(batch_size=batch_rows, columns=columns):
            yield from batch.to_pylist()


def write_records(path: str, samples: list[EditSample]) -> None:
    """Write full records (one part of a record table)."""
    write_rows(path, [s.to_row() for s in samples], RECORD_SCHEMA)


def read_records(path: str) -> list[EditSample]:
    """Read one part of a record table back into records."""
    return [EditSample.from_row(r) for r in read_table(path, schema=RECORD_SCHEMA).to_pylist()]


def merge_parts(pattern: str, out_path: str, schema: pa.Schema, sort_key: str = "key") -> int:
    """Concatenate the Parquet parts matching ``pattern`` into ``out_path`` sorted by
    ``sort_key``; returns the row count. Parts are read one at a time (they are small:
    no pixels), and the result is written once."""
    parts = storage.glob(pattern)
    tables = [read_table(p, schema=schema) for p in parts]
    table = pa.concat_tables(tables) if tables else schema.empty_table()
    table = table.sort_by(sort_key)
    write_table(out_path, table)
    return table.num_rows


def concat_parts(pattern: str, out_path: str, schema: pa.Schema) -> int:
    """Append the Parquet parts matching ``pattern`` to ``out_path`` in part-name order, one part
    in memory at a time (for tables too large to sort whole, like the truth with its masks; each
    part is already sorted by key, so the order is deterministic). Returns the row count."""
    n = 0
    with storage.atomic_open(out_path) as fh, pq.ParquetWriter(fh, schema, compression="zstd") as writer:
        for part in storage.glob(pattern):
            table = read_table(part, schema=schema)
            writer.write_table(table)
            n += table.num_rows
    return n
