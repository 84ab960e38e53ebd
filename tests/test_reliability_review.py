"""Reviewers' verdicts are never lost, against a real Label Studio server: `mcie ls` commands on
one build run one at a time (the build's run lock), a refused export has created nothing, and a
title that names two projects is refused instead of guessed."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pyarrow.parquet as pq
import pytest

from mcie.annotation.client import Connection
from mcie.cli import main
from mcie.runlock import RunLock

PROJECT = "verdicts-kept"


@pytest.fixture(scope="module")
def review_build(tmp_path_factory) -> str:
    out = str(tmp_path_factory.mktemp("review") / "out")
    args = ["build", "--out", out, "--samples", "24", "--seed", "4", "--shard-size", "12"]
    assert main([*args, "--image-size", "64", "--workers", "1", "--no-progress"]) == 0
    return out


@pytest.fixture
def ls_env(ls_server, monkeypatch):
    server, creds = ls_server
    monkeypatch.setenv("LABEL_STUDIO_URL", server.url)
    monkeypatch.setenv("LABEL_STUDIO_USER_TOKEN", creds["LABEL_STUDIO_USER_TOKEN"])
    monkeypatch.setenv("LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT", server.config.document_root)
    return Connection(server.url, creds["LABEL_STUDIO_USER_TOKEN"]).client()


def _read(path: str) -> bytes:
    with open(path, "rb") as fh:
        return fh.read()


def _titled(ls, title: str) -> list:
    return [p for p in ls.projects.list(title=title) if p.title == title]


def _decisions(out: str) -> dict[str, str]:
    found = {}
    for r in pq.read_table(os.path.join(out, "index.parquet")).to_pylist():
        review = json.loads(r["verdict_json"] or "{}").get("review") or {}
        if review.get("decision"):
            found[r["key"]] = review["decision"]
    return found


def _accept_all(ls, project_id: int) -> list[str]:
    """Accept every task of the project as a reviewer would (the pre-annotation kept)."""
    keys = []
    for t in ls.tasks.list(project=project_id, fields="all"):
        pred = t.predictions[0] if isinstance(t.predictions[0], dict) else t.predictions[0].model_dump()
        verdict = {"id": "verdict", "type": "choices", "from_name": "verdict", "to_name": "tgt",
                   "value": {"choices": ["accept"]}}  # fmt: skip
        ls.annotations.create(id=t.id, result=[*pred["result"], verdict])
        keys.append(t.data["key"])
    return sorted(keys)


def test_a_locked_build_refuses_every_ls_command_before_it_changes_anything(
    ls_env, review_build, tmp_path, capsys
):
    ls = ls_env
    final = str(tmp_path / "final")
    out = str(tmp_path / "build")
    shutil.copytree(review_build, out)
    assert main(["ls", "export", out, "--project", "held-build", "--select", "random:2"]) == 0
    index = os.path.join(out, "index.parquet")
    before = _read(index)
    with RunLock(out, "test holding the build"):
        assert main(["ls", "export", out, "--project", "locked-out", "--select", "random:4"]) == 1
        assert "another mcie" in capsys.readouterr().err
        assert _titled(ls, "locked-out") == []  # nothing created on the server
        assert main(["ls", "import", out, "--project", "held-build"]) == 1
        assert "another mcie" in capsys.readouterr().err
        assert main(["ls", "shard", out, "--out", final]) == 1
        assert "another mcie" in capsys.readouterr().err
    assert _read(index) == before
    assert not os.path.exists(final)


def test_a_title_naming_two_projects_is_refused_and_project_id_chooses(ls_env, review_build, capsys):
    ls = ls_env
    out = review_build
    from mcie.annotation.config import labeling_config

    ids = [ls.projects.create(title="two-of-a-title", label_config=labeling_config()).id for _ in range(2)]
    index = os.path.join(out, "index.parquet")
    before = _read(index)
    for verb in ("export", "import"):
        assert main(["ls", verb, out, "--project", "two-of-a-title"]) == 1
        err = capsys.readouterr().err
        assert f"ids {ids[0]}, {ids[1]}" in err and "--project-id" in err
    assert _read(index) == before
    assert len(_titled(ls, "two-of-a-title")) == 2  # no third one made
    argv = ["ls", "export", out, "--project-id", str(ids[1]), "--select", "random:3", "--json"]
    assert main(argv) == 0
    summary = json.loads(capsys.readouterr().out)
    assert (summary["project_id"], summary["exported"]) == (ids[1], 3)
    assert len(list(ls.tasks.list(project=ids[0]))) == 0
    assert main(["ls", "import", out, "--project-id", str(ids[1]), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["by_decision"] == {"pending": 3}


def _mcie(*argv: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "mcie.cli", *argv], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


@pytest.mark.timeout(900)
def test_concurrent_exports_imports_and_shard_keep_every_verdict(ls_env, review_build, tmp_path):
    """`ls export` ×2, `ls import` ×2 and `ls shard` at once on one build and one project: each
    either runs or is refused (exit 1, naming the holder); no verdict is lost, one project."""
    ls = ls_env
    out = str(tmp_path / "build")
    shutil.copytree(review_build, out)
    first = ["ls", "export", out, "--project", PROJECT, "--select", "random:12", "--batch-size", "4"]
    assert main(first) == 0
    (project,) = _titled(ls, PROJECT)
    accepted = _accept_all(ls, project.id)
    assert len(accepted) == 12
    procs = [
        _mcie("ls", "export", out, "--project", PROJECT, "--select", "all", "--batch-size", "2"),
        _mcie("ls", "import", out, "--project", PROJECT),
        _mcie("ls", "export", out, "--project", PROJECT, "--select", "all", "--batch-size", "2"),
        _mcie("ls", "import", out, "--project", PROJECT),
        _mcie("ls", "shard", out, "--out", str(tmp_path / "final")),
    ]
    results = [(p.wait(timeout=600), p.stderr.read()) for p in procs]
    for rc, err in results:
        assert rc in (0, 1), err
        if rc == 1:
            assert "another mcie" in err, err
    assert len(_titled(ls, PROJECT)) == 1
    imported = [rc for (rc, _), verb in zip(results, "eieis", strict=True) if verb == "i" and rc == 0]
    if imported:  # an import that ran kept all twelve, and nothing after it undid one
        assert _decisions(out) == dict.fromkeys(accepted, "accept")
    # the refused commands again, one after the other: every verdict there, nothing twice
    assert main(["ls", "export", out, "--project", PROJECT, "--select", "all"]) == 0
    assert main(["ls", "import", out, "--project", PROJECT]) == 0
    assert _decisions(out) == dict.fromkeys(accepted, "accept")
    tasks = [t.data["key"] for t in ls.tasks.list(project=project.id, fields="task_only")]
    assert len(tasks) == len(set(tasks)) == 24
