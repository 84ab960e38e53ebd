"""Reading and rewriting a build's ``index.parquet`` for human review.

The index keeps its schema (:data:`mcie.tables.INDEX_SCHEMA`); review state lives in the
``verdict_json`` column under ``"review"``: the project, the task id, the prior (pipeline)
status and reason, and after import the human decision. Samples sent for review are
``pending`` / ``sent_for_review``; the prior status is kept so selection and re-runs see what
the pipeline decided.
"""

from __future__ import annotations

import json
from typing import Any

from mcie import storage
from mcie.exitcodes import UsageError
from mcie.keys import check_key
from mcie.layout import INDEX_FILE
from mcie.tables import INDEX_SCHEMA, read_table, write_rows


def index_path(out: str) -> str:
    return storage.join(out, INDEX_FILE)


def read_index(out: str) -> dict[str, dict[str, Any]]:
    """The index rows of build output ``out`` (a folder, ``gs://`` or ``s3://``) by key. Every
    key is checked against our keys' shape (:mod:`mcie.keys`) before anything names a file or a
    glob from it."""
    path = index_path(out)
    if not storage.exists(path):
        raise UsageError(f"{out!r} has no index.parquet: not an output directory of mcie build")
    return {check_key(r["key"], path): r for r in read_table(path, schema=INDEX_SCHEMA).to_pylist()}


def write_index(out: str, rows: dict[str, dict[str, Any]]) -> None:
    """Rewrite ``index.parquet`` atomically, sorted by key."""
    write_rows(index_path(out), list(rows.values()), INDEX_SCHEMA)


def review_of(row: dict[str, Any]) -> dict[str, Any] | None:
    """The ``review`` entry of a row's verdict, or None."""
    if not row.get("verdict_json"):
        return None
    v = json.loads(row["verdict_json"])
    return v.get("review") if isinstance(v, dict) else None


def prior_status(row: dict[str, Any]) -> tuple[str, str]:
    """(status, reason) the pipeline gave the sample, before any human review."""
    rv = review_of(row)
    if rv and "prior_status" in rv:
        return rv["prior_status"], rv["prior_reason"]
    return row["status"], row["reason"]


def set_review(row: dict[str, Any], review: dict[str, Any]) -> None:
    """Store ``review`` in the row's verdict JSON (sorted keys: byte-stable)."""
    v = json.loads(row["verdict_json"]) if row.get("verdict_json") else {}
    v = v if isinstance(v, dict) else {}
    v["review"] = review
    row["verdict_json"] = json.dumps(v, sort_keys=True)
