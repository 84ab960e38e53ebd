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


def test_the_server_refuses_sign_up_and_keeps_its_data_dir_private(ls_server):
    import re
    import stat

    import httpx

    server, creds = ls_server
    data = server.config.data_dir  # a copy of a data dir made 0755 / 0644 (the test cache)
    assert stat.S_IMODE(os.stat(data).st_mode) == 0o700
    docs = server.config.document_root
    for root, _, files in os.walk(data):
        for name in files:
            path = os.path.join(root, name)
            if not path.startswith(docs + os.sep):  # the database, its log: the token's homes
                assert os.lstat(path).st_mode & 0o077 == 0, path
    with httpx.Client(base_url=server.url, timeout=30) as c:
        page = c.get("/user/signup/")
        token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text).group(1)
        form = {"csrfmiddlewaretoken": token, "email": "intruder@mcie.test", "password": "pw-intruder-123"}
        r = c.post("/user/signup/", data=form, headers={"Referer": server.url + "/user/signup/"})
    assert r.status_code == 403
    ls = Connection(server.url, creds["LABEL_STUDIO_USER_TOKEN"]).client()
    assert "intruder@mcie.test" not in {u.email for u in ls.users.list()}


DJANGO_500 = (
    "<!doctype html>\n<html lang='en'><head><title>Server Error (500)</title>"
    "<style>body{font:13px sans-serif}</style></head><body>\n<h1>Server Error (500)</h1>\n"
    + "<p>" + "x" * 5000 + "</p></body></html>\n"
)  # fmt: skip


class _FlakyProxy:
    """A reverse proxy on loopback in front of the real server that answers Django's HTML 500
    page for the requests ``fail(method, path)`` picks, as Label Studio does when one task's
    annotations cannot be serialised."""

    def __init__(self, upstream: str, fail) -> None:
        import http.server
        import threading

        import httpx

        outer = self
        self.fail = fail
        self.client = httpx.Client(base_url=upstream, timeout=60)

        class Handler(http.server.BaseHTTPRequestHandler):
            def _any(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if outer.fail(self.command, self.path):
                    data = DJANGO_500.encode()
                    self.send_response(500)
                    self.send_header("Content-Type", "text/html")
                else:
                    headers = {
                        k: v for k, v in self.headers.items() if k.lower() not in ("host", "content-length")
                    }
                    r = outer.client.request(self.command, self.path, content=body, headers=headers)
                    data = r.content
                    self.send_response(r.status_code)
                    self.send_header("Content-Type", r.headers.get("content-type", "application/json"))
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_PATCH = do_PUT = do_DELETE = _any

            def log_message(self, *args) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.client.close()


def test_a_server_error_on_one_task_skips_that_task_only(ls_env, review_build, tmp_path, capsys):
    ls = ls_env
    out = str(tmp_path / "build")
    shutil.copytree(review_build, out)
    assert main(["ls", "export", out, "--project", "flaky-server", "--select", "random:4"]) == 0
    capsys.readouterr()
    (project,) = _titled(ls, "flaky-server")
    accepted = _accept_all(ls, project.id)
    tasks = sorted(ls.tasks.list(project=project.id, fields="task_only"), key=lambda t: t.id)
    bad = tasks[1]
    broken = {"all": False}

    def fail(method: str, path: str) -> bool:
        return broken["all"] or (
            method == "GET" and ("fields=all" in path or path.startswith(f"/api/tasks/{bad.id}"))
        )

    proxy = _FlakyProxy(os.environ["LABEL_STUDIO_URL"], fail)
    try:
        assert main(["ls", "import", out, "--project", "flaky-server", "--url", proxy.url, "--json"]) == 0
        summary = json.loads(capsys.readouterr().out)
        assert summary["unreadable_tasks"] == [f"task {bad.id}: HTTP 500: Server Error (500)"]
        assert summary["by_decision"] == {"accept": 3}
        kept = dict.fromkeys(sorted(set(accepted) - {bad.data["key"]}), "accept")
        assert _decisions(out) == kept
        broken["all"] = True  # nothing answers: exit 3 with one short line, not the page
        assert main(["ls", "import", out, "--project", "flaky-server", "--url", proxy.url]) == 3
        err = capsys.readouterr().err.strip()
        assert "\n" not in err and "<" not in err and len(err) < 400, err
        assert "answered 500: Server Error (500)" in err
    finally:
        proxy.close()


def test_projects_whose_titles_slug_alike_keep_their_own_images(ls_env, review_build, tmp_path, capsys):
    from mcie.annotation.export import _write_once

    ls = ls_env
    out = str(tmp_path / "build")
    shutil.copytree(review_build, out)
    folders = {}
    for title in ("rev 1", "rev-1"):
        argv = ["ls", "export", out, "--project", title, "--select", "random:2", "--json"]
        assert main(argv) == 0
        pid = json.loads(capsys.readouterr().out)["project_id"]
        srcs = [t.data["src"] for t in ls.tasks.list(project=pid, fields="task_only")]
        folders[title] = ({os.path.dirname(s.split("?d=", 1)[1]) for s in srcs}, pid)
    assert folders["rev 1"][0] == {f"mcie/rev-1-{folders['rev 1'][1]}"}
    assert folders["rev-1"][0] == {f"mcie/rev-1-{folders['rev-1'][1]}"}
    # a file already there is kept only when its bytes are the same, not merely its size
    path = str(tmp_path / "img.jpg")
    with open(path, "wb") as fh:
        fh.write(b"a" * 10)
    _write_once(path, b"b" * 10)
    assert _read(path) == b"b" * 10
