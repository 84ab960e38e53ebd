"""``mcie build --out`` a bucket on real object-storage servers on 127.0.0.1 (a GCS emulator
and moto's S3 server), end to end: same bytes as a local build, kill -9 then ``--resume``, a
shard truncated on the server rebuilt, and audit, preview and train reading the bucket."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid

import pyarrow.parquet as pq
import pytest
from conftest import SMALL, build

from mcie import storage
from mcie.cli import main

#: 8 units of 10, so a kill lands while most are still to do
KILL_RUN = ["--samples", "80", "--seed", "5", "--shard-size", "10", "--image-size", "64", "--no-progress"]


@pytest.fixture(scope="module")
def kill_run_local(tmp_path_factory) -> str:
    """The KILL_RUN build made locally in one go, once for both servers' kill tests."""
    out = str(tmp_path_factory.mktemp("kill-run") / "local")
    assert main(["build", "--out", out, *KILL_RUN, "--workers", "1"]) == 0
    return out


@pytest.fixture(params=["gs", "s3"])
def bucket(request, object_stores):
    """A fresh prefix in the bucket of one server."""
    return f"{object_stores[request.param]}/e2e-{uuid.uuid4().hex[:8]}"


def local_files(folder: str) -> dict[str, bytes]:
    out = {}
    for root, _, names in os.walk(folder):
        for n in names:
            path = os.path.join(root, n)
            with open(path, "rb") as fh:
                out[os.path.relpath(path, folder)] = fh.read()
    return out


def remote_files(url: str) -> dict[str, bytes]:
    return {storage.relpath(p, url): storage.read_bytes(p) for p in storage.glob(storage.escape(url) + "/**")}


def put_on_server(url: str, data: bytes) -> None:
    """Overwrite one object with the server's own client, not through mcie.storage."""
    kind, _, rest = url.partition("://")
    bucket, _, key = rest.partition("/")
    if kind == "gs":
        from google.cloud import storage as gcs

        gcs.Client().bucket(bucket).blob(key).upload_from_string(data)
    else:
        import boto3

        boto3.client("s3").put_object(Bucket=bucket, Key=key, Body=data)


def test_build_to_a_bucket_gives_the_bytes_of_a_local_build(bucket, built, capsys, tmp_path):
    url = f"{bucket}/w2"
    assert build(url, "--workers", "2") == 0
    assert "units skipped (resumed): 0" in capsys.readouterr().out
    got, want = remote_files(url), local_files(built)
    assert sorted(got) == sorted(want) and len(want) > 10
    assert [k for k in want if got[k] != want[k]] == []
    # audit and preview read the bucket
    assert main(["audit", url, "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["ok"] and report["candidates"] == 60 and report["mask_miou"] > 0.9
    png = str(tmp_path / "sheet.png")
    assert main(["preview", url, "--png", png, "--n", "4"]) == 0
    from PIL import Image

    from mcie.report.sheet import GAP

    with Image.open(png) as im:
        assert im.width == GAP + 4 * (2 * 256 + 3 * GAP)  # four (source | target) cells
    assert main(["preview", url]) == 0  # default: next to the shards, in the bucket
    assert storage.read_bytes(f"{url}/preview.png")[:8] == b"\x89PNG\r\n\x1a\n"
    # the HTML report reads the bucket and writes into it
    assert main(["report", url, "--json"]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["candidates"] == 60 and summary["problems"] == [] and summary["gallery_thumbnails"] > 0
    assert storage.read_bytes(f"{url}/report.html").startswith(b"<!DOCTYPE html>")
    assert main(["audit", f"{bucket}/nothing-here"]) == 1


def test_kill_then_resume_rebuilds_what_is_missing_or_truncated(bucket, kill_run_local):
    url = f"{bucket}/killed"
    cmd = [sys.executable, "-m", "mcie.cli", "build", "--out", url, *KILL_RUN, "--workers", "2"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    deadline = time.monotonic() + 300
    while not storage.list_folder(f"{url}/stats", "*.json"):
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)  # the driver and both workers, mid-build
    proc.wait()
    done = storage.list_folder(f"{url}/stats", "*.json")
    assert 1 <= len(done) < 8
    assert not storage.exists(f"{url}/index.parquet")
    # damage a finished unit on the server: its shard cut to half
    first = storage.basename(done[0]).removesuffix(".json")
    shard = f"{url}/shards/{first}.tar"
    whole = storage.read_bytes(shard)
    put_on_server(shard, whole[: len(whole) // 2])

    resumed = subprocess.run([*cmd, "--resume"], capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr
    assert f"unit {first[5:]} is damaged (shards/{first}.tar has {len(whole) // 2} bytes" in resumed.stderr
    assert f"units skipped (resumed): {len(done) - 1}" in resumed.stdout
    assert storage.read_bytes(shard) == whole

    local = kill_run_local
    got, want = remote_files(url), local_files(local)
    assert sorted(got) == sorted(want)  # no temporary file left, nothing missing
    assert [k for k in want if got[k] != want[k]] == []
    keys = pq.read_table(os.path.join(local, "index.parquet")).column("key").to_pylist()
    assert len(keys) == len(set(keys)) == 80  # nothing lost, nothing twice


def test_resume_redoes_an_altered_unit_of_the_same_size(bucket, capsys):
    url = f"{bucket}/altered"
    args = ["build", "--out", url, *SMALL, "--workers", "1"]
    assert main(args) == 0
    part = f"{url}/parts/index-000001.parquet"
    data = bytearray(storage.read_bytes(part))
    data[len(data) // 2] ^= 0xFF  # same size, one byte changed
    put_on_server(part, bytes(data))
    before = remote_files(url)
    capsys.readouterr()
    assert main([*args, "--resume"]) == 0
    assert "units skipped (resumed): 2" in capsys.readouterr().out
    after = remote_files(url)
    assert after[part.removeprefix(url + "/")] != bytes(data)
    assert {k for k in after if after[k] != before[k]} == {"parts/index-000001.parquet"}


def test_stages_one_at_a_time_through_a_bucket_give_the_bytes_of_a_build(object_stores, built):
    """``mcie generate | annotate | score | shard`` with every table in the bucket (moto's S3
    only: the same storage calls as the build tests above, which cover both servers)."""
    from conftest import SMALL

    bucket = f"{object_stores['s3']}/stages-{uuid.uuid4().hex[:8]}"

    assert main(["generate", "--out", f"{bucket}/t0", *SMALL]) == 0
    assert main(["annotate", "--in", f"{bucket}/t0", "--out", f"{bucket}/t1", "--no-progress"]) == 0
    assert main(["score", "--in", f"{bucket}/t1", "--out", f"{bucket}/t2", "--no-progress"]) == 0
    assert main(["shard", "--in", f"{bucket}/t2", "--out", f"{bucket}/out", "--no-progress"]) == 0
    got, want = remote_files(f"{bucket}/out"), local_files(built)
    # what test_build compares too (run.json names the input table; stats differ by command)
    outputs = ("index.parquet", "truth.parquet", "shards.json", "rejected.json", "README.md")
    same = [k for k in want if k in outputs or k.endswith(".tar")]
    assert len(same) > 10 and [k for k in same if got.get(k) != want[k]] == []
    assert storage.exists(f"{bucket}/out/truth.parquet")  # carried forward, unread


def test_bench_build_from_a_bucket_matches_one_from_a_folder(object_stores, built, tmp_path):
    """``mcie bench build --from gs://…``: the held-out sets of a build in a bucket."""
    bucket = f"{object_stores['gs']}/bench-{uuid.uuid4().hex[:8]}"
    url = f"{bucket}/build"
    for name, data in local_files(built).items():
        if name == "index.parquet" or name.startswith("shards/"):
            put_on_server(f"{url}/{name}", data)
    local, remote = str(tmp_path / "local"), str(tmp_path / "remote")
    assert main(["bench", "build", "--from", built, "--out", local, "--holdout", "0.5"]) == 0
    assert main(["bench", "build", "--from", url, "--out", remote, "--holdout", "0.5"]) == 0
    a, b = pq.read_table(f"{local}/bench.parquet"), pq.read_table(f"{remote}/bench.parquet")
    assert a.num_rows > 5 and a.equals(b)
    with open(f"{remote}/bench.json") as fh:
        assert json.load(fh)["from"] == url
    assert main(["bench", "build", "--from", f"{bucket}/nothing", "--out", str(tmp_path / "x")]) == 1


@pytest.mark.parametrize("kind", ["gs", "s3"])
def test_train_reads_shards_from_the_bucket(object_stores, shards, tmp_path, kind):
    """``mcie train --shards 'gs://…/*.tar'`` (and ``s3://``): five steps on shards copied to
    the bucket."""
    import glob

    url = f"{object_stores[kind]}/train-{uuid.uuid4().hex[:8]}"
    for path in sorted(glob.glob(shards)):
        storage.copy(path, f"{url}/shards/{os.path.basename(path)}")
    run = str(tmp_path / "run")
    args = ["train", "--shards", f"{url}/shards/*.tar", "--out", run, "--preset", "tiny",
            "--batch-size", "2", "--max-steps", "5", "--checkpoint-every", "5", "--no-progress"]  # fmt: skip
    assert main(args) == 0
    assert os.path.isdir(os.path.join(run, "checkpoint-5"))
    with open(os.path.join(run, "checkpoint-5", "trainer_state.json")) as fh:
        assert json.load(fh)["step"] == 5


def test_label_studio_review_of_a_build_in_a_bucket(object_stores, ls_server, monkeypatch, tmp_path, capsys):
    """``mcie ls export | import | shard`` with the build in a bucket: the index is rewritten
    there and a repainted mask lands in its ``review/`` folder (the images reviewers see are
    still files under Label Studio's local-files document root)."""
    import numpy as np

    from mcie.annotation import config as cfg
    from mcie.annotation.client import Connection
    from mcie.annotation.tasks import brush_region
    from mcie.images import decode_mask
    from mcie.shards import read_tar

    server, creds = ls_server
    monkeypatch.setenv("LABEL_STUDIO_URL", server.url)
    monkeypatch.setenv("LABEL_STUDIO_USER_TOKEN", creds["LABEL_STUDIO_USER_TOKEN"])
    monkeypatch.setenv("LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT", server.config.document_root)
    url, project = f"{object_stores['s3']}/ls-{uuid.uuid4().hex[:8]}", f"bucket-{uuid.uuid4().hex[:6]}"
    args = ["--samples", "12", "--seed", "4", "--shard-size", "6", "--image-size", "64", "--no-progress"]
    assert main(["build", "--out", url, *args]) == 0
    assert main(["ls", "export", url, "--project", project, "--select", "random:3", "--json"]) == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["exported"] == 3

    ls = Connection(server.url, creds["LABEL_STUDIO_USER_TOKEN"]).client()
    pid = next(p.id for p in ls.projects.list(title=project) if p.title == project)
    tasks = sorted(ls.tasks.list(project=pid, fields="all"), key=lambda t: t.data["key"])
    accept, repaint = tasks[0], tasks[1]
    pred = accept.predictions[0]
    pred = pred if isinstance(pred, dict) else pred.model_dump()
    ls.annotations.create(id=accept.id, result=[*pred["result"], _verdict("accept")])
    w, h = repaint.data["width"], repaint.data["height"]
    painted = np.zeros((h, w), bool)
    painted[4:20, 6:30] = True
    brush = brush_region(0, painted, region_id="repaint0")
    pred = repaint.predictions[0]
    pred = pred if isinstance(pred, dict) else pred.model_dump()
    kept = [dict(x) for x in pred["result"] if x["from_name"] != cfg.mask_control(0)]
    ls.annotations.create(id=repaint.id, result=[*kept, brush, _verdict("fixed")])

    assert main(["ls", "import", url, "--project", project, "--json"]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["by_decision"] == {"accept": 1, "fixed": 1, "pending": 1}
    index = {r["key"]: r for r in pq.read_table(storage.open_read(f"{url}/index.parquet")).to_pylist()}
    assert index[accept.data["key"]]["status"] == "accepted"
    mask_url = f"{url}/review/{repaint.data['key']}.mask0.png"
    assert np.array_equal(decode_mask(storage.read_bytes(mask_url)), painted)

    final = str(tmp_path / "final")
    assert main(["ls", "shard", url, "--out", final]) == 0
    got = {}
    for path in sorted(os.listdir(os.path.join(final, "shards"))):
        got.update(dict(read_tar(os.path.join(final, "shards", path))))
    assert sorted(got) == sorted([accept.data["key"], repaint.data["key"]])
    assert np.array_equal(decode_mask(got[repaint.data["key"]]["mask0.png"]), painted)


def _verdict(value: str) -> dict:
    choices = {"choices": [value]}
    return {"id": "verdict", "type": "choices", "from_name": "verdict", "to_name": "tgt", "value": choices}
