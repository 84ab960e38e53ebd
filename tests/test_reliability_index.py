"""A hand-edited or damaged build is caught and named, never crashed on: ``audit`` checks the
index's columns and values against its schema and the shards' JSON, names shard and key when a
sample is not the size of its truth masks (it crashed with ``operands could not be
broadcast``), and ``--resume`` names the options that differ."""

from __future__ import annotations

import io
import json
import os
import shutil
import tarfile

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from mcie.audit import audit
from mcie.exitcodes import UsageError
from mcie.pipeline.units import check_resume, write_run_manifest


def test_resume_names_the_options_that_differ(tmp_path):
    out = str(tmp_path / "out")
    os.makedirs(out)
    opts = {"seed": 5, "samples": 40, "source": {"max_pixels": 100, "short_side": 64}, "workers_free": True}
    write_run_manifest(out, {"command": "build", "options": opts, "units": 2})
    check_resume(out, {"command": "build", "options": dict(opts)})  # the same: no error
    now = {**opts, "seed": 6, "source": {"max_pixels": 100, "short_side": 32}, "lossless": True}
    del now["workers_free"]
    with pytest.raises(UsageError) as err:
        check_resume(out, {"command": "build", "options": now})
    assert str(err.value).endswith(
        "(see its run.json): lossless (unset) -> true; seed 5 -> 6; source.short_side 64 -> 32; "
        "workers_free true -> (unset)"
    )
    with pytest.raises(UsageError, match="written by `mcie build`, not `mcie annotate`"):
        check_resume(out, {"command": "annotate", "options": opts})


@pytest.fixture
def copy(small_build, tmp_path) -> str:
    out = str(tmp_path / "copy")
    shutil.copytree(small_build, out)
    return out


def _rewrite_index(out: str, change) -> None:
    path = os.path.join(out, "index.parquet")
    pq.write_table(change(pq.read_table(path)), path)


def test_audit_names_missing_unknown_and_mistyped_columns(copy):
    def edit(t: pa.Table) -> pa.Table:
        t = t.drop_columns(["status"]).append_column("notes", pa.array(["x"] * t.num_rows))
        i = t.column_names.index("num_sub_edits")
        return t.set_column(i, "num_sub_edits", t.column("num_sub_edits").cast(pa.string()))

    _rewrite_index(copy, edit)
    report = audit(copy)  # before: KeyError: 'status'
    assert report["ok"] is False
    assert report["problems"] == [
        "index.parquet lacks the column(s) status of an mcie index",
        "index.parquet has unknown column(s) notes",
        "index.parquet column num_sub_edits is string, not int32",
    ]


def test_audit_checks_index_values_against_the_shards(copy):
    rows = pq.read_table(os.path.join(copy, "index.parquet")).to_pylist()
    in_shard = [r for r in rows if r["shard"]]
    a, b, c = in_shard[0], in_shard[1], in_shard[2]

    def edit(t: pa.Table) -> pa.Table:
        out = []
        for r in t.to_pylist():
            if r["key"] == a["key"]:
                r["compliance"], r["bg_psnr"] = float("nan"), float("inf")
            if r["key"] == b["key"]:
                r["num_sub_edits"] += 1
            if r["key"] == c["key"]:
                r["instruction"] = "Something else."
            out.append(r)
        return pa.Table.from_pylist(out, schema=t.schema)

    _rewrite_index(copy, edit)
    report = audit(copy)
    assert report["ok"] is False
    problems = report["problems"]
    where = {r["key"]: f"{r['shard']}:{r['key']}" for r in (a, b, c)}
    n = b["num_sub_edits"]
    assert f"index.parquet row {a['key']}: compliance is nan" in problems
    assert f"index.parquet row {a['key']}: bg_psnr is inf" in problems
    assert f"index.parquet row {b['key']}: num_sub_edits {n + 1} but {n} edit_types" in problems
    assert f"{where[b['key']]}: index num_sub_edits {n + 1} but the JSON has {n} sub-edits" in problems
    assert f"{where[c['key']]}: index instruction differs from the JSON's" in problems
    assert len(problems) == 6, problems


def _twice_as_big(data: bytes) -> bytes:
    with Image.open(io.BytesIO(data)) as im:
        fmt = im.format
        big = im.resize((im.width * 2, im.height * 2), Image.NEAREST)
    buf = io.BytesIO()
    big.save(buf, format=fmt, **({"quality": 95} if fmt == "JPEG" else {}))
    return buf.getvalue()


def test_audit_names_a_sample_larger_than_its_truth_masks(copy):
    """A sample rewritten at twice its size (images and masks alike, so it passes the sample
    check) no longer matches the truth's masks: a problem naming shard and key."""
    truth = {t["key"]: t for t in pq.read_table(os.path.join(copy, "truth.parquet")).to_pylist()}
    rows = pq.read_table(os.path.join(copy, "index.parquet")).to_pylist()
    row = next(
        r for r in rows if r["shard"] and r["status"] != "failed" and not truth[r["key"]]["num_failures"]
    )
    shard = os.path.join(copy, row["shard"])
    with tarfile.open(shard) as tar:
        members = [(m, tar.extractfile(m).read()) for m in tar.getmembers()]
    with tarfile.open(shard, "w", format=tarfile.GNU_FORMAT) as tar:
        for m, data in members:
            if m.name.startswith(row["key"] + ".") and not m.name.endswith(".json"):
                data = _twice_as_big(data)
                m.size = len(data)
            tar.addfile(m, io.BytesIO(data))
    report = audit(copy)  # before: ValueError: operands could not be broadcast together
    h, w = np.asarray(Image.open(io.BytesIO(truth[row["key"]]["masks_png"][0]))).shape[:2]
    assert report["ok"] is False
    assert (
        f"{row['shard']}:{row['key']}: mask0.png is {2 * w}x{2 * h}, its truth mask {w}x{h}"
        in report["problems"]
    )
    assert report["mask_count"] > 0  # the other samples are still measured
    assert json.dumps(report)  # a report, not a crash
