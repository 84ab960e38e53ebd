"""The review UI in a real browser: Label Studio's labeling view renders our config (issue 16),
shows exactly the used sub-instruction slots, takes a verdict through the UI, and
``mcie ls import`` reads it back; nothing the page or the server does leaves the machine."""

from __future__ import annotations

import json
import os
import shutil
import time

from browser import new_page
from ls_server import connection_attempts, outbound_attempts

from mcie.annotation import config as cfg
from mcie.annotation.client import Connection
from mcie.cli import main

#: The committed screenshots (benchmarks/figures/); a test run writes its own under the test's
#: tmp folder and copies them there only when MCIE_UPDATE_FIGURES=1, so `make test` leaves the
#: working tree clean.
FIGURES = os.path.join(os.path.dirname(__file__), "..", "benchmarks", "figures")


def _build(out: str, n: int) -> None:
    args = ["build", "--out", out, "--samples", "2", "--seed", "1", "--image-size", "128", "--workers", "1"]
    assert main([*args, "--min-edits", str(n), "--max-edits", str(n), "--no-progress"]) == 0


def _login(page, url: str, creds: dict) -> None:
    page.goto(url + "/user/login/")
    page.fill('input[name="email"]', creds["LABEL_STUDIO_USERNAME"])
    page.fill('input[name="password"]', creds["LABEL_STUDIO_PASSWORD"])
    page.click('button[type="submit"]')
    page.wait_for_load_state("networkidle")


def _screenshot(page, tmp_path, name: str) -> str:
    """Save a full-page screenshot under the test's folder (and the committed figures when asked)."""
    path = str(tmp_path / name)
    page.screenshot(path=path, full_page=True)
    assert os.path.getsize(path) > 10_000  # a rendered view, not a blank page
    if os.environ.get("MCIE_UPDATE_FIGURES") == "1":
        os.makedirs(FIGURES, exist_ok=True)
        shutil.copyfile(path, os.path.join(FIGURES, name))
    return path


def _open_task(page, url: str, project_id: int, task) -> None:
    """Open a task's labeling view and wait until it shows the first sub-instruction. The data
    manager's table may show the same text in a cell, so wait on the labeling view's own text
    element, not on any element with that text."""
    page.goto(f"{url}/projects/{project_id}/data?task={task.id}")
    view_text = page.locator(".lsf-richtext__line").filter(has_text=task.data["sub0"])
    view_text.first.wait_for(timeout=60_000)
    page.wait_for_timeout(1500)  # the brush masks decode after the view appears


def _annotation(ls, task_id: int, timeout_s: float = 60) -> dict:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        anns = ls.tasks.get(task_id).annotations or []
        if anns:
            a = anns[0]
            return a if isinstance(a, dict) else a.model_dump()
        time.sleep(0.5)
    raise AssertionError(f"no annotation on task {task_id} after submitting")


def test_labeling_view_renders_slots_and_submits(browser, ls_server, tmp_path, monkeypatch, capsys):
    server, creds = ls_server
    monkeypatch.setenv("LABEL_STUDIO_URL", server.url)
    monkeypatch.setenv("LABEL_STUDIO_USER_TOKEN", creds["LABEL_STUDIO_USER_TOKEN"])
    monkeypatch.setenv("LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT", server.config.document_root)
    ls = Connection(server.url, creds["LABEL_STUDIO_USER_TOKEN"]).client()
    page, log = new_page(browser, viewport={"width": 1400, "height": 1800})
    _login(page, server.url, creds)
    for n in (2, 5):
        out = str(tmp_path / f"subs{n}")
        _build(out, n)
        capsys.readouterr()
        project = f"browser-{n}"
        if n == 2:  # a project made by an earlier mcie (the blank-view config): updated in place
            old = cfg.labeling_config().replace(
                f'<View style="{cfg.HIDDEN_STYLE}">',
                '<View visibleWhen="choice-selected" whenTagName="slots" whenChoiceValue="__never__">',
            )
            ls.projects.create(title=project, label_config=old)
        assert main(["ls", "export", out, "--project", project, "--json"]) == 0
        summary = json.loads(capsys.readouterr().out)
        p = ls.projects.get(summary["project_id"])
        assert p.label_config == cfg.labeling_config()
        task = sorted(ls.tasks.list(project=p.id), key=lambda t: t.id)[0]
        assert task.data["n_subs"] == n
        _open_task(page, server.url, p.id, task)
        headers = [page.get_by_text(f"Sub-instruction {k + 1}", exact=True) for k in range(cfg.SLOTS)]
        visible = [k for k, h in enumerate(headers) if h.is_visible()]
        assert visible == list(range(n))
        if n == 2:
            _screenshot(page, tmp_path, "ls_labeling_view.png")
        # the overall verdict: the first "reject" after its header
        overall = page.get_by_text("Overall verdict", exact=True)
        overall.locator("xpath=following::*[normalize-space(text())='reject'][1]").click()
        page.get_by_role("button", name="Submit").click()
        ann = _annotation(ls, task.id)
        by_name = {r["from_name"]: r for r in ann["result"]}
        assert by_name[cfg.OVERALL]["value"]["choices"] == ["reject"]
        # the hidden control kept its pre-annotated value through the UI's submit
        assert by_name[cfg.SLOTS_CONTROL]["value"]["choices"] == [str(k) for k in range(n)]
        assert {r["from_name"] for r in ann["result"] if r["type"] == "brushlabels"} == {
            cfg.mask_control(k) for k in range(n)
        }
        assert main(["ls", "import", out, "--project", project, "--json"]) == 0
        imported = json.loads(capsys.readouterr().out)
        assert imported["by_decision"].get("reject") == 1
    assert log.page_errors == []
    # the only console errors are the 404s of the tips fetch above (air-gapped: no GitHub)
    assert all("404" in e for e in log.console_errors), log.console_errors
    assert log.off_machine() == []  # no Sentry script, no error reports
    page.context.close()
    attempts = connection_attempts(server)
    # Label Studio's /heidi-tips fetch (every page load) went to the dead loopback proxy that
    # mcie ls serve sets (annotation/server.py NO_EGRESS): no lookup of GitHub, no connect out
    assert any(a["event"] == "connect" and a["address"][1:] == [9] for a in attempts), attempts
    assert outbound_attempts(attempts) == []


def test_erase_part_of_a_mask_through_the_ui(browser, ls_server, tmp_path, monkeypatch, capsys):
    """Issue 15: a reviewer erases part of a pre-annotated mask with the eraser on the canvas;
    ``mcie ls import`` writes the corrected mask with fewer pixels."""
    import numpy as np

    from mcie.images import decode_mask
    from mcie.shards import read_tar

    server, creds = ls_server
    monkeypatch.setenv("LABEL_STUDIO_URL", server.url)
    monkeypatch.setenv("LABEL_STUDIO_USER_TOKEN", creds["LABEL_STUDIO_USER_TOKEN"])
    monkeypatch.setenv("LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT", server.config.document_root)
    ls = Connection(server.url, creds["LABEL_STUDIO_USER_TOKEN"]).client()
    page, log = new_page(browser, viewport={"width": 1400, "height": 1800})
    _login(page, server.url, creds)
    out = str(tmp_path / "erase")
    _build(out, 2)
    capsys.readouterr()
    assert main(["ls", "export", out, "--project", "browser-erase", "--json"]) == 0
    pid = json.loads(capsys.readouterr().out)["project_id"]
    task = sorted(ls.tasks.list(project=pid), key=lambda t: t.id)[0]
    _open_task(page, server.url, pid, task)
    # select slot 0's brush region in the regions panel (the label chips in the slot view come
    # first: brush, box; then the panel's brush, box), then the eraser (hotkey E)
    names = page.get_by_text(cfg.mask_label(0), exact=True)
    names.nth(names.count() - 2).click()
    page.keyboard.press("e")
    page.wait_for_timeout(500)
    stage = page.locator("canvas").all()[-1].bounding_box()  # the target image's drawing layer
    x0, w, h = stage["x"], stage["width"], stage["height"]
    for row in (0.25, 0.3):  # two strokes across the whole target
        y = stage["y"] + h * row
        page.mouse.move(x0 + 5, y)
        page.mouse.down()
        for i in range(41):
            page.mouse.move(x0 + 5 + i * (w - 10) / 40, y, steps=2)
        page.mouse.up()
    page.wait_for_timeout(800)
    _screenshot(page, tmp_path, "ls_erase_mask.png")
    overall = page.get_by_text("Overall verdict", exact=True)
    overall.locator("xpath=following::*[normalize-space(text())='fixed'][1]").click()
    page.get_by_role("button", name="Submit").click()
    _annotation(ls, task.id)
    assert main(["ls", "import", out, "--project", "browser-erase", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["by_decision"] == {"fixed": 1, "pending": 1}
    key = task.data["key"]
    shard = next(os.path.join(out, "shards", f) for f in sorted(os.listdir(os.path.join(out, "shards"))))
    orig = dict(read_tar(shard))[key]
    with open(os.path.join(out, "review", f"{key}.mask0.png"), "rb") as fh:
        erased = decode_mask(fh.read())
    before = decode_mask(orig["mask0.png"])
    assert 0 < erased.sum() < before.sum()  # part erased, not all
    assert not (erased & ~before).any()  # erasing adds nothing
    # slot 1 was not touched: whatever the UI re-encoded, its pixels are the pre-annotation's
    m1 = os.path.join(out, "review", f"{key}.mask1.png")
    if os.path.exists(m1):
        with open(m1, "rb") as fh:
            assert np.array_equal(decode_mask(fh.read()), decode_mask(orig["mask1.png"]))
    assert log.page_errors == []
    page.context.close()
