"""Round trip through a real Label Studio server: export → review through the API as annotators
would → import → final shards, plus idempotence, resumption and the error contract."""

from __future__ import annotations

import glob
import json
import os
import re
import shutil

import numpy as np
import pyarrow.parquet as pq
import pytest

from mcie.annotation import config as cfg
from mcie.annotation import export as export_mod
from mcie.annotation.client import Connection
from mcie.annotation.tasks import brush_region, mask_to_rle, rle_to_mask
from mcie.cli import main
from mcie.images import decode_mask
from mcie.shards import read_tar
from mcie.transforms.annotate import MaskAnnotator
from mcie.transforms.synthetic.judge import PixelJudge

PROJECT = "review-round-trip"


@pytest.fixture(scope="module")
def small_build(small_build, tmp_path_factory) -> str:
    """A copy of the session's small build (conftest.py): the review rewrites its index."""
    out = str(tmp_path_factory.mktemp("lsbuild") / "out")
    shutil.copytree(small_build, out)
    return out


@pytest.fixture
def ls_env(ls_server, monkeypatch):
    """Point the CLI at the session server through the environment (as a user would)."""
    server, creds = ls_server
    monkeypatch.setenv("LABEL_STUDIO_URL", server.url)
    monkeypatch.setenv("LABEL_STUDIO_USER_TOKEN", creds["LABEL_STUDIO_USER_TOKEN"])
    monkeypatch.setenv("LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT", server.config.document_root)
    return server, creds


def _index(out: str) -> dict[str, dict]:
    return {r["key"]: r for r in pq.read_table(os.path.join(out, "index.parquet")).to_pylist()}


def _choice(name: str, value: str) -> dict:
    return {"id": name, "type": "choices", "from_name": name, "to_name": "tgt", "value": {"choices": [value]}}


def _text(name: str, text: str) -> dict:
    return {"id": name, "type": "textarea", "from_name": name, "to_name": "tgt", "value": {"text": [text]}}


def _members(out: str) -> dict[str, dict[str, bytes]]:
    found = {}
    for tar in sorted(glob.glob(os.path.join(out, "*", "*.tar"))):
        found.update(dict(read_tar(tar)))
    return found


def _bytes(path: str) -> bytes:
    with open(path, "rb") as fh:
        return fh.read()


def _export(out: str, *extra: str) -> int:
    return main(
        ["ls", "export", out, "--project", PROJECT, "--select", "random:20", "--batch-size", "8", *extra]
    )


def test_round_trip(ls_env, small_build, tmp_path, capsys):
    server, creds = ls_env
    out = small_build
    before = _index(out)

    # -- export 20 samples, twice: the second run adds nothing ----------------------------------
    assert _export(out, "--json") == 0
    first = json.loads(capsys.readouterr().out)
    assert (first["selected"], first["exported"]) == (20, 20)
    assert _export(out, "--json") == 0
    second = json.loads(capsys.readouterr().out)
    assert (second["exported"], second["already_in_project"]) == (0, 20)

    conn = Connection(server.url, creds["LABEL_STUDIO_USER_TOKEN"])
    ls = conn.client()
    project = next(p for p in ls.projects.list(title=PROJECT) if p.title == PROJECT)
    tasks = sorted(ls.tasks.list(project=project.id, fields="all"), key=lambda t: t.data["key"])
    keys = [t.data["key"] for t in tasks]
    assert len(keys) == len(set(keys)) == 20
    # pre-annotations: one prediction per task, its version selected for the annotators' pre-fill
    preds = [
        t.predictions[0] if isinstance(t.predictions[0], dict) else t.predictions[0].model_dump()
        for t in tasks
    ]
    assert all(len(t.predictions) == 1 for t in tasks)
    assert (
        {p["model_version"] for p in preds}
        == {project.model_version}
        == {f"{PixelJudge.name}+{MaskAnnotator.name}"}
    )
    original = _members(out)
    for t, p in zip(tasks, preds, strict=True):
        brushes = {r["from_name"]: r for r in p["result"] if r["type"] == "brushlabels"}
        assert len(brushes) == t.data["n_subs"] == len(before[t.data["key"]]["sub_instructions"])
        for i in range(t.data["n_subs"]):
            r = brushes[cfg.mask_control(i)]
            got = rle_to_mask(r["value"]["rle"], r["original_height"], r["original_width"])
            assert np.array_equal(got, decode_mask(original[t.data["key"]][f"mask{i}.png"]))
    after = _index(out)
    for k, row in after.items():
        if k in keys:
            assert (row["status"], row["reason"]) == ("pending", "sent_for_review")
            assert json.loads(row["verdict_json"])["review"]["prior_status"] == before[k]["status"]
        else:
            assert (row["status"], row["reason"]) == (before[k]["status"], before[k]["reason"])
    # the images are served to the annotators' browsers by the local-files storage
    import httpx

    r = httpx.get(server.url + tasks[0].data["tgt"], headers={"Authorization": f"Token {conn.token}"})
    assert r.status_code == 200 and r.content[:2] == b"\xff\xd8"

    # -- review through the API as annotators would -------------------------------------------
    me = ls.users.whoami()
    other = ls.users.create(username="reviewer2", email="reviewer2@mcie.test", password="pw-reviewer2-x")

    def annotate(task, extra: list[dict], verdict: str, user=me, keep_prediction: bool = True):
        pred = task.predictions[0]
        pred = pred if isinstance(pred, dict) else pred.model_dump()
        result = [dict(x) for x in pred["result"]] if keep_prediction else []
        ls.annotations.create(
            id=task.id, result=result + extra + [_choice("verdict", verdict)], completed_by=user.id
        )

    accept, reject_wording, reject_mask, repaint, reword, disagree, agree = tasks[:7]
    annotate(accept, [], "accept")
    annotate(reject_wording, [_choice("reason", "wrong_instruction")], "reject")
    annotate(reject_mask, [_choice("reason", "bad_mask")], "reject", keep_prediction=False)
    # repaint slot 0: the reviewer's region replaces the pre-annotated one
    w, h = repaint.data["width"], repaint.data["height"]
    painted = np.zeros((h, w), bool)
    painted[5:30, 7:41] = True
    painted[40:50, 3:9] = True
    pred = repaint.predictions[0]
    pred = pred if isinstance(pred, dict) else pred.model_dump()
    kept = [dict(x) for x in pred["result"] if x["from_name"] != cfg.mask_control(0)]
    brush = brush_region(0, painted, region_id="repaint0")
    ls.annotations.create(
        id=repaint.id, result=[*kept, brush, _choice("verdict", "fixed")], completed_by=me.id
    )
    new_instruction = "Corrected: " + reword.data["instruction"]
    new_sub1 = "corrected wording of the second sub-instruction"
    annotate(
        reword,
        [_text(cfg.INSTRUCTION_FIX, new_instruction), _text(cfg.wording_control(1), new_sub1)],
        "fixed",
    )
    annotate(disagree, [], "accept")
    annotate(disagree, [_choice("reason", "bad_mask")], "reject", user=other)
    annotate(agree, [], "accept")
    annotate(agree, [], "accept", user=other)
    broken = tasks[7]  # a brush region of another image size cannot be read: reported, left pending
    bad = dict(
        brush, original_width=w + 1, value=dict(brush["value"], rle=mask_to_rle(np.ones((h, w + 1), bool)))
    )
    ls.annotations.create(id=broken.id, result=[bad, _choice("verdict", "fixed")], completed_by=me.id)

    # -- import twice: same index, same final shards --------------------------------------------
    assert main(["ls", "import", out, "--project", PROJECT, "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["by_decision"] == {"accept": 2, "disagreement": 1, "fixed": 2, "pending": 12, "reject": 2}
    assert summary["disagreements"] == [disagree.data["key"]]
    assert [x.split(":")[0] for x in summary["invalid"]] == [broken.data["key"]]
    index1 = pq.read_table(os.path.join(out, "index.parquet"))
    assert main(["ls", "shard", out, "--out", str(tmp_path / "final1"), "--shard-size", "3"]) == 0
    assert main(["ls", "import", out, "--project", PROJECT]) == 0
    assert pq.read_table(os.path.join(out, "index.parquet")).equals(index1)
    # read through an export snapshot (annotated tasks only, predictions as ids: export recorded
    # their digests): the same verdicts, the same index, and the snapshot stays on the Export page
    capsys.readouterr()
    assert main(["ls", "import", out, "--project", PROJECT, "--read", "snapshot", "--json"]) == 0
    said = capsys.readouterr()
    snap = json.loads(said.out)
    assert snap["read"] == {"snapshot": 1} and summary["read"] == {"list": 1}
    # the wait for the server's snapshot is said, in the log's plain lines
    assert f"ls import {PROJECT}: Label Studio is writing an export snapshot\n" in said.err
    assert re.search(rf"ls import {PROJECT}: snapshot made and downloaded in \d+\.\d s\n", said.err)
    for field in ("tasks", "by_decision", "disagreements", "invalid", "unknown_keys", "duplicate_tasks"):
        assert snap[field] == summary[field], field
    assert pq.read_table(os.path.join(out, "index.parquet")).equals(index1)
    recorded = [json.loads(r["verdict_json"])["review"].get("predicted") for r in _index(out).values()
                if r["status"] == "pending"]  # fmt: skip
    assert recorded and all(isinstance(d, dict) and d for d in recorded)
    listed = httpx.get(
        f"{server.url}/api/projects/{project.id}/exports/",
        headers={"Authorization": f"Token {creds['LABEL_STUDIO_USER_TOKEN']}"},
    ).json()
    assert [x["title"].startswith("mcie ls import ") for x in listed] == [True]
    assert main(["ls", "shard", out, "--out", str(tmp_path / "final2"), "--shard-size", "3"]) == 0
    capsys.readouterr()
    tars1 = sorted(glob.glob(str(tmp_path / "final1" / "shards" / "*.tar")))
    tars2 = sorted(glob.glob(str(tmp_path / "final2" / "shards" / "*.tar")))
    assert tars1 and [_bytes(a) for a in tars1] == [_bytes(b) for b in tars2]

    # -- the index holds exactly those outcomes -------------------------------------------------
    idx = _index(out)
    expect = {
        accept.data["key"]: ("accepted", "", "accept"),
        reject_wording.data["key"]: ("rejected", "wrong_instruction", "reject"),
        reject_mask.data["key"]: ("rejected", "bad_mask", "reject"),
        repaint.data["key"]: ("accepted", "", "fixed"),
        reword.data["key"]: ("accepted", "", "fixed"),
        disagree.data["key"]: ("rejected", "annotator_disagreement", "disagreement"),
        agree.data["key"]: ("accepted", "", "accept"),
    }
    for k in keys:
        row = idx[k]
        if k in expect:
            review = json.loads(row["verdict_json"])["review"]
            assert (row["status"], row["reason"], review["decision"]) == expect[k]
        else:
            assert (row["status"], row["reason"]) == ("pending", "sent_for_review")
    assert idx[reword.data["key"]]["instruction"] == new_instruction
    assert idx[reword.data["key"]]["sub_instructions"][1] == new_sub1
    reviewers = json.loads(idx[disagree.data["key"]]["verdict_json"])["review"]["reviewers"]
    assert sorted((r["user"], r["verdict"]) for r in reviewers) == [(me.id, "accept"), (other.id, "reject")]

    # -- the final shards hold exactly the accepted samples, with corrections -------------------
    final = _members(str(tmp_path / "final1"))
    accepted = {k for k, v in expect.items() if v[0] == "accepted"}
    assert set(final) == accepted
    for k in accepted:
        fm, om = final[k], original[k]
        meta = json.loads(fm["json"])
        assert (meta["status"], meta["reason"]) == ("accepted", "")
        assert meta["verdict"]["decision"] == expect[k][2]
        assert fm["src.jpg"] == om["src.jpg"] and fm["tgt.jpg"] == om["tgt.jpg"]  # no re-encoding
        for i in range(len(meta["sub_edits"])):
            if k == repaint.data["key"] and i == 0:
                assert np.array_equal(decode_mask(fm["mask0.png"]), painted)  # pixel by pixel
                assert meta["sub_edits"][0]["box"] == [3, 5, 41, 50]
            else:
                assert fm[f"mask{i}.png"] == om[f"mask{i}.png"]
    meta = json.loads(final[reword.data["key"]]["json"])
    assert meta["instruction"] == new_instruction and meta["sub_edits"][1]["instruction"] == new_sub1
    assert main(["audit", str(tmp_path / "final1")]) == 0
    assert main(["audit", out]) == 0  # the reviewed build: index and shards still agree
    capsys.readouterr()
    import wids

    ds = wids.ShardListDataset(str(tmp_path / "final1" / "shards.json"), cache_dir=str(tmp_path / "wids"))
    assert sorted(ds[i]["__key__"] for i in range(len(ds))) == sorted(accepted)
    final_index = pq.read_table(str(tmp_path / "final1" / "index.parquet")).to_pylist()
    assert [r["key"] for r in final_index] == sorted(accepted)
    assert all(r["status"] == "accepted" and r["shard"].startswith("shards/") for r in final_index)
    assert all(json.loads(r["verdict_json"])["decision"] == expect[r["key"]][2] for r in final_index)

    # -- strict resolution: the same disagreement; a unanimous accept stays accepted ------------
    assert main(["ls", "import", out, "--project", PROJECT, "--resolution", "strict", "--json"]) == 0
    strict = json.loads(capsys.readouterr().out)
    assert strict["by_decision"] == summary["by_decision"]

    # the token never reached the output or the server's log
    token = creds["LABEL_STUDIO_USER_TOKEN"]
    captured = capsys.readouterr()
    assert token not in captured.out + captured.err
    with open(server.log_path, errors="replace") as fh:
        assert token not in fh.read()


def test_errors_exit_3_and_token_stays_secret(ls_env, small_build, tmp_path, capsys, monkeypatch):
    server, creds = ls_env
    token = creds["LABEL_STUDIO_USER_TOKEN"]
    # the server's command line (visible to every user in ps) does not hold the secrets
    with open(f"/proc/{server._proc.pid}/cmdline", "rb") as fh:
        cmdline = fh.read().decode()
    assert token not in cmdline and creds["LABEL_STUDIO_PASSWORD"] not in cmdline
    assert main(["ls", "import", small_build, "--project", "no-such-project"]) == 3
    assert "no project 'no-such-project'" in capsys.readouterr().err
    monkeypatch.setenv("LABEL_STUDIO_USER_TOKEN", token[::-1] + "x")
    assert main(["ls", "import", small_build, "--project", PROJECT]) == 3
    assert "refused our token" in capsys.readouterr().err
    monkeypatch.setenv("LABEL_STUDIO_USER_TOKEN", token)
    from ls_server import free_port

    down = f"http://127.0.0.1:{free_port()}"
    assert main(["ls", "export", small_build, "--project", PROJECT, "--url", down]) == 3
    assert "unreachable" in capsys.readouterr().err
    # a remote server could not read our image files: refused, clearly, before anything is sent
    assert main(["ls", "export", small_build, "--project", PROJECT, "--url", "http://ls.example.org"]) == 1
    assert "not on this machine" in capsys.readouterr().err
    # images written where the server does not look: refused before any task is created
    elsewhere = tmp_path / "elsewhere"
    assert (
        main(["ls", "export", small_build, "--project", "other-root", "--document-root", str(elsewhere)]) == 3
    )
    err = capsys.readouterr().err
    assert "LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT" in err and token not in err
    # a project of the same name made for something else is not reused
    ls = Connection(server.url, token).client()
    ls.projects.create(title="foreign", label_config='<View><Text name="t" value="$text"/></View>')
    assert main(["ls", "export", small_build, "--project", "foreign"]) == 1
    assert "not mcie's" in capsys.readouterr().err
    # the token file works the same as the environment variable
    tf = tmp_path / "token"
    tf.write_text(token + "\n")
    monkeypatch.delenv("LABEL_STUDIO_USER_TOKEN")
    assert main(["ls", "import", small_build, "--project", "no-such-project", "--token-file", str(tf)]) == 3
    captured = capsys.readouterr()
    assert token not in captured.out + captured.err


def test_server_stopped_mid_export_then_rerun_completes(ls_cache, tmp_path, capsys, monkeypatch):
    """Its own server: stopped after the first batch → exit 3; restarted, the rerun finishes
    the export without duplicates."""
    from ls_server import start_copy

    out = str(tmp_path / "out")
    assert main(["build", "--out", out, "--samples", "14", "--seed", "9", "--shard-size", "7",
                 "--image-size", "32", "--workers", "1", "--no-progress"]) == 0  # fmt: skip
    server, creds = start_copy(ls_cache, str(tmp_path / "lsdata"))
    try:
        monkeypatch.setenv("LABEL_STUDIO_USER_TOKEN", creds["LABEL_STUDIO_USER_TOKEN"])
        monkeypatch.setenv("LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT", server.config.document_root)

        def stop_after_first(batches: int) -> None:
            if batches == 1:
                server.stop()

        monkeypatch.setattr(export_mod, "_after_batch", stop_after_first)
        args = ["ls", "export", out, "--project", "interrupted", "--batch-size", "4"]
        assert main([*args, "--url", server.url]) == 3
        assert "unreachable" in capsys.readouterr().err
        pending = [r for r in _index(out).values() if r["status"] == "pending"]
        assert len(pending) == 4  # the first batch landed and is marked
        monkeypatch.setattr(export_mod, "_after_batch", None)
        server.start()
        assert main([*args, "--url", server.url, "--json"]) == 0
        summary = json.loads(capsys.readouterr().out)
        assert (summary["already_in_project"], summary["exported"]) == (4, 10)
        ls = Connection(server.url, creds["LABEL_STUDIO_USER_TOKEN"]).client()
        project = next(p for p in ls.projects.list(title="interrupted") if p.title == "interrupted")
        keys = [t.data["key"] for t in ls.tasks.list(project=project.id)]
        assert len(keys) == len(set(keys)) == 14
        assert sorted(keys) == sorted(k for k, r in _index(out).items() if r["status"] == "pending")
    finally:
        server.stop()


def test_cap_splits_the_review_into_parts(ls_env, tmp_path, capsys):
    """A review larger than --max-tasks-per-project fills TITLE, TITLE-2, TITLE-3 in order: each
    sample in exactly one part, a re-run sends nothing twice, a project of a part's title not
    made as that part is refused, and import reads every part."""
    server, creds = ls_env
    out = str(tmp_path / "out")
    assert main(["build", "--out", out, "--samples", "13", "--seed", "4", "--shard-size", "5",
                 "--image-size", "32", "--workers", "1", "--no-progress"]) == 0  # fmt: skip
    capsys.readouterr()
    with_images = sorted(k for k, r in _index(out).items() if r["shard"] and r["status"] != "failed")
    n = len(with_images)
    assert n > 10  # three parts of at most 5
    title = "capped-review"
    cap = ["--project", title, "--max-tasks-per-project", "5", "--batch-size", "3", "--json"]
    # a first export of 7 samples: part 1 full, part 2 holds 2
    assert main(["ls", "export", out, "--select", "random:7", *cap]) == 0
    first = json.loads(capsys.readouterr().out)
    assert [(p["title"], p["tasks"]) for p in first["projects"]] == [(title, 5), (f"{title}-2", 2)]
    assert first["exported"] == 7
    ls = Connection(server.url, creds["LABEL_STUDIO_USER_TOKEN"]).client()
    # a project titled as part 3 but made by hand is not taken for a part: refused, nothing sent
    foreign = ls.projects.create(title=f"{title}-3", label_config=cfg.labeling_config())
    assert main(["ls", "export", out, "--select", "all", *cap]) == 1
    assert "not made as a part" in capsys.readouterr().err
    ls.projects.delete(id=foreign.id)
    assert main(["ls", "export", out, "--select", "all", *cap]) == 0
    second = json.loads(capsys.readouterr().out)
    assert second["already_in_project"] == 7 + 3  # the refused run filled part 2 before part 3
    assert second["exported"] == n - 10
    titles = [title, f"{title}-2", f"{title}-3"]
    assert [(p["title"], p["tasks"]) for p in second["projects"]] == list(
        zip(titles, [5, 5, n - 10], strict=True)
    )
    by_part = {}
    for t in titles:
        p = next(p for p in ls.projects.list(title=t) if p.title == t)
        by_part[t] = (p, sorted(ls.tasks.list(project=p.id, fields="all"), key=lambda x: x.id))
    keys = [x.data["key"] for _, tasks in by_part.values() for x in tasks]
    assert sorted(keys) == with_images  # every sample in exactly one part
    assert f"part 2 of {title!r}" in by_part[titles[1]][0].description
    # each part serves its own images
    import httpx

    task = by_part[titles[2]][1][0]
    r = httpx.get(
        server.url + task.data["tgt"], headers={"Authorization": f"Token {creds['LABEL_STUDIO_USER_TOKEN']}"}
    )
    assert r.status_code == 200 and r.content[:2] == b"\xff\xd8"
    # a re-run sends nothing
    assert main(["ls", "export", out, "--select", "all", *cap]) == 0
    assert json.loads(capsys.readouterr().out)["exported"] == 0
    assert sum(len(tasks) for _, tasks in by_part.values()) == n
    # one verdict in each part; import reads them all
    me = ls.users.whoami()
    verdicts = {titles[0]: "accept", titles[1]: "reject", titles[2]: "accept"}
    for t, (_, tasks) in by_part.items():
        ls.annotations.create(id=tasks[0].id, result=[_choice("verdict", verdicts[t])], completed_by=me.id)
    assert main(["ls", "import", out, "--project", title, "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["projects"] == titles
    assert summary["tasks"] == n
    assert summary["by_decision"] == {"accept": 2, "reject": 1, "pending": n - 3}
    idx = _index(out)
    for t, (_, tasks) in by_part.items():
        review = json.loads(idx[tasks[0].data["key"]]["verdict_json"])["review"]
        assert (review["project"], review["decision"], review["task_id"]) == (t, verdicts[t], tasks[0].id)
        for x in tasks[1:]:
            rv = json.loads(idx[x.data["key"]]["verdict_json"])["review"]
            assert (idx[x.data["key"]]["status"], rv["project"], rv["task_id"]) == ("pending", t, x.id)
    # tasks added by hand (a copy of a pending sample's task with its prediction, and a task of
    # no sample): the part holds more tasks than export recorded, so import lists them and reads
    # them too
    p3, tasks3 = by_part[titles[2]]
    pred = tasks3[1].predictions[0]
    pred = pred if isinstance(pred, dict) else pred.model_dump()
    pred = {k: pred[k] for k in ("result", "score", "model_version")}
    made = ls.projects.import_tasks(
        p3.id, request=[{"data": dict(tasks3[1].data), "predictions": [pred]}], return_task_ids=True
    )
    ls.tasks.create(project=p3.id, data=dict(tasks3[1].data, key="f" * 20))
    # the reviewer keeps the pre-annotated masks: an accept, not a correction
    untouched = [dict(r) for r in pred["result"]]
    ls.annotations.create(
        id=made.task_ids[0], result=[*untouched, _choice("verdict", "accept")], completed_by=me.id
    )
    assert main(["ls", "import", out, "--project", title, "--json"]) == 0
    again = json.loads(capsys.readouterr().out)
    assert again["tasks"] == n + 2
    assert again["duplicate_tasks"] == [tasks3[1].data["key"]] and again["unknown_keys"] == ["f" * 20]
    assert again["by_decision"] == {"accept": 3, "reject": 1, "pending": n - 4}
    review = json.loads(_index(out)[tasks3[1].data["key"]]["verdict_json"])["review"]
    assert (review["decision"], review["task_id"]) == ("accept", tasks3[1].id)
    # through snapshots (part 3 holds tasks export did not send: its predictions come in full)
    index_list = pq.read_table(os.path.join(out, "index.parquet"))
    assert main(["ls", "import", out, "--project", title, "--read", "snapshot", "--json"]) == 0
    snap = json.loads(capsys.readouterr().out)
    assert snap["read"] == {"snapshot": 3}
    for field in ("tasks", "by_decision", "duplicate_tasks", "unknown_keys", "invalid"):
        assert snap[field] == again[field], field
    assert pq.read_table(os.path.join(out, "index.parquet")).equals(index_list)
    # a pending sample whose task was deleted in Label Studio is sent again by a re-export, and
    # the index records its new task (import reads a part by the recorded ids)
    gone = tasks3[2]
    ls.tasks.delete(id=gone.id)
    assert main(["ls", "export", out, "--select", "all", *cap]) == 0
    assert json.loads(capsys.readouterr().out)["exported"] == 1
    (new,) = [t for t in ls.tasks.list(project=p3.id) if t.data["key"] == gone.data["key"]]
    review = json.loads(_index(out)[gone.data["key"]]["verdict_json"])["review"]
    assert new.id != gone.id and (review["project"], review["task_id"]) == (titles[2], new.id)
