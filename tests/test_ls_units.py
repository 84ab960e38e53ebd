"""Label Studio pieces that need no server: resolution of several reviewers, brush RLE, the
labeling config, subset selection and ``mcie ls serve`` (which does start a real server)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import xml.etree.ElementTree as ET

import numpy as np
import pytest

from mcie.annotation import config as cfg
from mcie.annotation.export import select_keys
from mcie.annotation.tasks import mask_to_rle, rle_to_mask
from mcie.annotation.verdicts import Review, resolve
from mcie.cli import main


def _review(i: int, user: int, verdict: str | None, reason: str | None = None, **kw) -> Review:
    return Review(
        i, user, verdict, reason, {}, kw.get("instruction"), kw.get("wording", {}), kw.get("masks", {})
    )


def test_resolution_majority_strict_and_ties():
    acc, acc2, rej = _review(1, 1, "accept"), _review(2, 2, "accept"), _review(3, 3, "reject", "bad_mask")
    assert resolve([acc, acc2, rej], "majority").decision == "accept"
    d = resolve([acc, acc2, rej], "strict")
    assert (d.decision, d.reason, d.accepted) == ("disagreement", "annotator_disagreement", False)
    tie = resolve([acc, rej], "majority")
    assert (tie.decision, tie.reason) == ("disagreement", "annotator_disagreement")
    d = resolve([rej, _review(4, 4, "reject", "bad_mask"), _review(5, 5, "reject", "wrong_instruction")])
    assert (d.decision, d.reason) == ("reject", "bad_mask")
    # reasons tie (or none given) → the generic human_rejected
    d = resolve([_review(6, 6, "reject", "bad_mask"), _review(7, 7, "reject", "wrong_instruction")])
    assert d.reason == "human_rejected"
    # a reviewer's latest annotation counts, once
    assert resolve([_review(1, 1, "reject"), _review(9, 1, "accept")]).decision == "accept"
    assert resolve([_review(1, 1, None)]) is None
    # corrections from reviewers voting for; a later one wins per field
    m = np.eye(4, dtype=bool)
    d = resolve(
        [_review(1, 1, "accept", instruction="a"), _review(2, 2, "fixed", instruction="b", masks={0: m})]
    )
    assert (d.decision, d.instruction, list(d.masks)) == ("fixed", "b", [0])
    with pytest.raises(ValueError, match="resolution"):
        resolve([acc], "unanimous")


def test_credentials_only_from_env_and_short_tokens_refused():
    from mcie.annotation.server import credentials_from_env
    from mcie.exitcodes import UsageError

    env = {"LABEL_STUDIO_USERNAME": "a@b.c", "LABEL_STUDIO_PASSWORD": "pw"}
    with pytest.raises(UsageError, match="LABEL_STUDIO_USER_TOKEN"):
        credentials_from_env(env)
    with pytest.raises(UsageError, match="too short") as err:
        credentials_from_env({**env, "LABEL_STUDIO_USER_TOKEN": "abc123"})
    assert "abc123" not in str(err.value)
    assert (
        credentials_from_env({**env, "LABEL_STUDIO_USER_TOKEN": "x" * 16})["LABEL_STUDIO_USER_TOKEN"]
        == "x" * 16
    )


def test_brush_rle_round_trip_is_exact():
    rng = np.random.default_rng(0)
    for shape in ((64, 64), (37, 53), (256, 256)):
        mask = rng.random(shape) > 0.7
        mask[: shape[0] // 2, : shape[1] // 3] = True
        assert np.array_equal(rle_to_mask(mask_to_rle(mask), *shape), mask)
    with pytest.raises(ValueError, match="expected"):
        rle_to_mask(mask_to_rle(np.ones((8, 8), bool)), 8, 9)


def test_labeling_config_has_five_slots_and_the_review_reasons():
    root = ET.fromstring(cfg.labeling_config())
    names = {e.get("name") for e in root.iter() if e.get("name")}
    for k in range(cfg.SLOTS):
        assert {f"sub{k}", f"score{k}", f"mask{k}", f"box{k}", f"verdict{k}", f"wording{k}"} <= names
    reasons = next(e for e in root.iter("Choices") if e.get("name") == "reason")
    assert [c.get("value") for c in reasons] == ["human_rejected", "wrong_instruction", "bad_mask"]
    overall = next(e for e in root.iter("Choices") if e.get("name") == "verdict")
    assert [c.get("value") for c in overall] == ["accept", "reject", "fixed"] and overall.get(
        "required"
    ) == "true"
    assert cfg.labeling_config() == cfg.labeling_config()


def test_part_names_and_marks():
    """Parts are TITLE, TITLE-2, ...; a project is a part only when its description says so."""
    from types import SimpleNamespace

    from mcie.annotation.parts import is_part, part_description, part_title

    assert [part_title("review", n) for n in (1, 2, 10)] == ["review", "review-2", "review-10"]
    assert is_part(SimpleNamespace(description=part_description("review", 2)), "review", 2)
    assert not is_part(SimpleNamespace(description=part_description("review", 2)), "review", 3)
    assert not is_part(SimpleNamespace(description=part_description("rev", 2)), "review", 2)
    assert not is_part(SimpleNamespace(description="mcie human validation"), "review", 2)
    assert not is_part(SimpleNamespace(description=None), "review", 2)
    assert is_part(SimpleNamespace(description=None), "review", 1)  # the review's own project


def test_select_subsets(built, capsys, monkeypatch, tmp_path):
    import pyarrow.parquet as pq

    rows = {r["key"]: r for r in pq.read_table(os.path.join(built, "index.parquet")).to_pylist()}
    everything = select_keys(rows, "all", built)
    assert everything == sorted(k for k, r in rows.items() if r["shard"])
    acc = select_keys(rows, "accepted", built)
    assert acc and all(rows[k]["status"] == "accepted" for k in acc)
    border = select_keys(rows, "borderline", built)
    assert set(border) <= set(everything)
    for k in border:
        r = rows[k]
        one_missing = sum(c < 1.0 for c in r["sub_compliance"]) == 1
        assert one_missing or abs(r["bg_ssim"] - 0.98) <= 0.02
    r5 = select_keys(rows, "random:5", built, seed=1)
    assert len(r5) == 5 and r5 == select_keys(rows, "random:5", built, seed=1) and set(r5) <= set(everything)
    monkeypatch.setenv("LABEL_STUDIO_USER_TOKEN", "t" * 20)
    monkeypatch.setenv("LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT", str(tmp_path))
    assert main(["ls", "export", built, "--project", "subset", "--select", "some"]) == 1
    assert "choose all, accepted, rejected, borderline or random:N" in capsys.readouterr().err


def _busy_port_below_the_ephemeral_range() -> socket.socket:
    """A listening socket on a port P below the kernel's ephemeral range with P + 1 free there
    too: Label Studio, finding P busy, starts on P + 1, and the servers other tests start at
    the same time take ephemeral ports (``free_port``), so none of them can hold P + 1."""
    import random

    for p in random.Random().sample(range(20000, 30000), 500):
        busy, nxt = socket.socket(), socket.socket()
        try:
            busy.bind(("127.0.0.1", p))
            nxt.bind(("127.0.0.1", p + 1))
        except OSError:
            busy.close()
            continue
        finally:
            nxt.close()
        busy.listen()
        return busy
    raise RuntimeError("no free pair of ports in 20000-30000")


def test_serve_reads_the_real_port_back_and_stops_cleanly(ls_cache, tmp_path):
    """``mcie ls serve`` on a busy port: it reports the port the server really took, serves,
    and a SIGTERM stops server and command with exit 0. Credentials only via the environment."""
    from ls_server import migrated_data_dir

    data, creds = migrated_data_dir(ls_cache)
    import shutil

    shutil.copytree(data, tmp_path / "data")
    busy = _busy_port_below_the_ephemeral_range()
    port = busy.getsockname()[1]
    env = {k: v for k, v in os.environ.items() if not k.startswith("LABEL_STUDIO_")}
    mcie = os.path.join(os.path.dirname(sys.executable), "mcie")
    cmd = [mcie, "ls", "serve", "--data-dir", str(tmp_path / "data"), "--port", str(port)]
    # without the preset user in the environment: a usage error, nothing started
    assert subprocess.run(cmd, env=env, capture_output=True, timeout=60).returncode == 1
    proc = subprocess.Popen(
        cmd, env={**env, **creds}, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        url = None
        deadline = time.monotonic() + 240
        while url is None and time.monotonic() < deadline:
            line = proc.stdout.readline()
            if line.startswith("Label Studio is up: "):
                url = line.split(": ", 1)[1].strip()
            elif not line and proc.poll() is not None:
                break
        assert url is not None, proc.stderr.read()
        real_port = int(url.rsplit(":", 1)[1])
        assert real_port != port
        with urllib.request.urlopen(f"{url}/health", timeout=5) as r:
            assert r.status == 200
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(60) == 0
        with socket.socket() as s:
            assert s.connect_ex(("127.0.0.1", real_port)) != 0  # the server is gone too
        rest = proc.stdout.read() + proc.stderr.read()
        assert creds["LABEL_STUDIO_USER_TOKEN"] not in rest
        assert "refuses" not in rest  # the cached data dir's user has this very token
    finally:
        busy.close()
        if proc.poll() is None:
            proc.kill()


def test_snapshot_is_read_one_task_at_a_time_whatever_the_chunk():
    """A snapshot file is a JSON array read item by item from a binary file: any chunk size
    (a UTF-8 character or an item cut between reads), whitespace anywhere; a cut or malformed
    file is a ValueError, never a short list."""
    import io
    import json

    from mcie.annotation.snapshot import iter_json_array

    rng = np.random.default_rng(0)
    items = [{"id": i, "t": "é😀 " * int(rng.integers(0, 40)), "rle": list(range(int(rng.integers(0, 300))))}
             for i in range(120)]  # fmt: skip
    for indent in (None, 2):
        body = json.dumps(items, ensure_ascii=False, indent=indent).encode()
        for chunk in (1, 3, 64, 1 << 20):
            assert list(iter_json_array(io.BytesIO(body), chunk)) == items
    assert list(iter_json_array(io.BytesIO(b" [ ] \n"), 2)) == []
    body = json.dumps(items, ensure_ascii=False).encode()
    for bad in (body[:-1], body[: len(body) // 2], b'{"id": 1}', b"[1 2]", b"[1] [2]", b'["\xc3', b""):
        with pytest.raises(ValueError):
            list(iter_json_array(io.BytesIO(bad), 7))


def test_a_server_without_snapshots_is_read_through_the_task_list():
    """What an older or failing server answers (no snapshot API, a 5xx, an export that failed,
    a download that does not match its MD5) raises SnapshotUnavailable before any task is given,
    so import reads the task list instead. (A server of that kind cannot run here: httpx's
    MockTransport answers as one would.)"""
    import hashlib
    import json

    import httpx

    from mcie.annotation.snapshot import SnapshotUnavailable, read_annotated

    tasks = [{"id": 1, "annotations": []}]
    body = json.dumps(tasks).encode()

    def server(create: int, status: str = "completed", md5: str | None = None):
        def handle(req: httpx.Request) -> httpx.Response:
            if req.method == "POST":
                snap = {"id": 9, "status": status, "md5": md5 or hashlib.md5(body).hexdigest()}
                return httpx.Response(create, json=snap if create < 400 else {"detail": "no"})
            if req.url.path.endswith("/download"):
                return httpx.Response(200, content=body)
            return httpx.Response(200, json={"id": 9, "status": status})

        c = httpx.Client(base_url="http://127.0.0.1:9", transport=httpx.MockTransport(handle))
        c.request_s = 0.0
        return c

    assert list(read_annotated(server(201), 1, with_predictions=False)) == tasks
    refusals = [server(code) for code in (403, 404, 405, 500)]
    for h in (*refusals, server(201, "failed"), server(201, md5="0" * 32)):
        with pytest.raises(SnapshotUnavailable):
            next(read_annotated(h, 1, with_predictions=False))


def test_an_untouched_pre_annotation_is_not_a_correction_by_digest_or_by_predictions():
    """A mask counts as corrected only when its brush regions differ from the pre-annotation:
    compared with the task's predictions, or with the digests export recorded (same answer)."""
    from mcie.annotation.tasks import brush_region
    from mcie.annotation.verdicts import parse_annotation, predicted_digests

    m = np.zeros((16, 16), bool)
    m[2:6, 3:9] = True
    pre = brush_region(0, m, region_id="a")
    preds = [{"result": [pre]}]
    original = {"instruction": "x", "height": 16, "width": 16, "sub_edits": [{"instruction": "a"}]}
    verdict = {"from_name": cfg.OVERALL, "type": "choices", "value": {"choices": ["accept"]}}
    moved = brush_region(0, np.roll(m, 2, axis=1), region_id="b")
    for kept, corrected in (([pre], set()), ([moved], {0})):
        ann = {"id": 1, "result": [*kept, verdict]}
        by_preds = parse_annotation(ann, preds, original)
        by_digest = parse_annotation(ann, [17], original, predicted_digests(preds))  # ids only
        assert set(by_preds.masks) == set(by_digest.masks) == corrected
