"""``mcie report``: the page's data agrees with the index, it is self-contained, and damaged or
hostile input gives a page (with the problem named) or a clear error, never a crash."""

from __future__ import annotations

import collections
import json
import os
import re
import shutil

import numpy as np
import pyarrow.parquet as pq
import pytest

from mcie.cli import main
from mcie.report.dataset import GalleryConfig, counts, select_gallery, write_build_report
from mcie.report.overlay import PALETTE, fit, overlay
from mcie.report.page import Section, gallery_json, render


def gallery_data(html: str) -> dict:
    """The JSON document the gallery script draws from."""
    m = re.search(r'<script type="application/json" id="gallery-data">(.*?)</script>', html, re.S)
    assert m, "no gallery data in the page"
    return json.loads(m.group(1))


@pytest.fixture(scope="module")
def report(built, tmp_path_factory):
    """The report of the session's 60-candidate build, written beside it (not into it)."""
    path = str(tmp_path_factory.mktemp("report") / "report.html")
    summary = write_build_report(built, path)
    with open(path, encoding="utf-8") as fh:
        return summary, fh.read()


def test_counts_match_the_index(built, report):
    summary, html = report
    index = pq.read_table(os.path.join(built, "index.parquet")).to_pylist()
    by_status = collections.Counter(r["status"] for r in index)
    assert summary["candidates"] == len(index) == 60
    assert summary["by_status"] == dict(by_status)
    by_reason = collections.Counter(
        f"{r['status']}:{r['reason']}" if r["reason"] else r["status"] for r in index
    )
    assert summary["by_reason"] == dict(by_reason)
    data = gallery_data(html)
    # the combinations count every candidate once, whatever the gallery shows
    assert sum(c[4] for c in data["combos"]) == len(index)
    for status, n in by_status.items():
        assert f"<td>{status}</td><td>{n}</td>" in html


def test_gallery_items_are_index_rows_with_thumbnails(built, report):
    summary, html = report
    index = {r["key"]: r for r in pq.read_table(os.path.join(built, "index.parquet")).to_pylist()}
    items = gallery_data(html)["items"]
    assert summary["gallery_items"] == len(items) > 0
    assert summary["problems"] == []
    for it in items:
        row = index[it["k"]]
        assert (it["st"], it["r"], it["n"]) == (row["status"], row["reason"], row["num_sub_edits"])
        assert sorted(set(row["edit_types"])) == it["t"]
        assert [s[0] for s in it["sub"]] == row["sub_instructions"]
        assert [s[1] for s in it["sub"]] == row["sub_executed"]
        if row["shard"]:  # source | target, each a JPEG inline
            assert [h for h, _ in it["img"]] == ["source", "target"]
            assert all(u.startswith("data:image/jpeg;base64,") for _, u in it["img"])
    # every status of the build is in the gallery (the sample is stratified)
    assert {it["st"] for it in items} == set(summary["by_status"])


def test_page_is_self_contained(report):
    _, html = report
    # nothing fetched from elsewhere: no http(s) URL in any src/href, only data: images
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", html)
    srcs = re.findall(r'src="([^"]*)"', html)
    assert srcs and all(s.startswith("data:image/png;base64,") for s in srcs)  # the charts
    assert "Content-Security-Policy" in html
    assert "Audit against the truth" in html and "filter precision" in html  # truth.parquet is there


def test_stratified_selection_caps_and_keeps_rare_groups():
    rows = [
        {"key": f"{i:020x}", "status": "accepted", "reason": "", "num_sub_edits": 2 + i % 2}
        for i in range(100)
    ]
    rows.append({"key": "f" * 20, "status": "failed", "reason": "generate_error", "num_sub_edits": 3})
    chosen = select_gallery(rows, GalleryConfig(per_group=5, max_items=7))
    assert len(chosen) == 7
    assert [r["status"] for r in chosen].count("failed") == 1  # round-robin: the rare group is in
    assert len(select_gallery(rows, GalleryConfig(per_group=5, max_items=100))) == 11  # 5 + 5 + 1


def test_combos_count_types_once_per_candidate():
    rows = [
        {
            "key": "a",
            "status": "accepted",
            "reason": "",
            "num_sub_edits": 3,
            "edit_types": ["add", "add", "move"],
        },
        {
            "key": "b",
            "status": "accepted",
            "reason": "",
            "num_sub_edits": 3,
            "edit_types": ["move", "add", "add"],
        },
        {
            "key": "c",
            "status": "rejected",
            "reason": "low_compliance",
            "num_sub_edits": 2,
            "edit_types": ["add"],
        },
    ]
    c = counts(rows)
    assert c["combos"] == [
        ["accepted", "", 3, ["add", "move"], 2],
        ["rejected", "low_compliance", 2, ["add"], 1],
    ]
    assert c["by_reason"] == {"accepted": 2, "rejected:low_compliance": 1}


def test_hostile_text_cannot_close_the_script():
    evil = "</script><script>alert(1)</script><img src=x onerror=alert(2)>"
    item = {"k": "k" * 20, "st": "accepted", "r": "", "n": 1, "t": ["add"], "sub": [[evil, True, 1.0]],
            "img": [], "err": evil}  # fmt: skip
    html = render("t", [Section("s", evil, "")], gallery_json([item], [], [("st", "status")], evil))
    assert "</script><script>alert" not in html
    assert "<img src=x" not in html
    assert gallery_data(html)["items"][0]["sub"][0][0] == evil  # the text survives, as text


def test_overlay_tints_and_outlines_on_a_same_colour_object():
    img = np.zeros((32, 32, 3), np.uint8)
    img[8:24, 8:24] = PALETTE[0]  # an object exactly the colour of sub-edit 0's tint
    mask = np.zeros((32, 32), bool)
    mask[8:24, 8:24] = True
    out = overlay(img, [mask])
    edge = out[8, 8:24]  # the outline: black and white dashes, visible on the red object
    assert (edge == 255).all(axis=1).any() and (edge == 0).all(axis=1).any()
    assert (out[0, 0] == 0).all()  # background untouched
    inside = out[15, 15].astype(int)
    assert np.abs(inside - np.array(PALETTE[0])).max() <= 1  # tint of red over red stays red
    small = fit(np.zeros((256, 256, 3), np.uint8), [np.ones((256, 256), bool)], (64, 64))
    assert small.shape == (64, 64, 3)


def test_damaged_shard_gives_a_page_naming_it(built, tmp_path):
    out = str(tmp_path / "copy")
    shutil.copytree(built, out)
    tars = sorted(os.listdir(os.path.join(out, "shards")))
    victim = os.path.join(out, "shards", tars[0])
    with open(victim, "r+b") as fh:
        fh.truncate(os.path.getsize(victim) // 2)
    s = write_build_report(out, config=GalleryConfig(per_group=50, max_items=500), with_audit=False)
    assert s["candidates"] == 60  # nothing lost
    assert [p for p in s["problems"] if p.startswith(f"shards/{tars[0]}: ShardError")] != []
    with open(os.path.join(out, "report.html"), encoding="utf-8") as fh:
        html = fh.read()
    assert "Problems met while reading shards" in html
    items = gallery_data(html)["items"]
    assert any(it["img"] == [] and it["st"] == "accepted" for it in items)  # shown, without images


def test_cli_exit_codes(built, tmp_path, capsys):
    page = str(tmp_path / "r.html")
    assert main(["report", built, "--out", page, "--max-items", "10", "--no-audit", "--json"]) == 0
    s = json.loads(capsys.readouterr().out)
    assert s["gallery_items"] == 10 and s["path"] == page and os.path.getsize(page) == s["bytes"]
    with open(page, encoding="utf-8") as fh:
        assert "Audit against the truth" not in fh.read()  # the module's report has it
    assert main(["report", str(tmp_path)]) == 1  # no index.parquet: a usage error
    assert "index.parquet is missing" in capsys.readouterr().err
    assert main(["report", built, "--thumb", "5"]) == 1


def test_preview_shows_index_status_key_and_verdicts(built):
    from mcie.preview import preview_cells
    from mcie.report.sheet import SheetCell, contact_sheet, wrap
    from mcie.report.sheet import font as sheet_font

    index = {r["key"]: r for r in pq.read_table(os.path.join(built, "index.parquet")).to_pylist()}
    cells = preview_cells(built, n=3, shard_dir="rejected")
    assert len(cells) == 3
    for c in cells:  # status and reason as the index says, the key, each verdict
        key = c.title.split()[-1]
        row = index[key]
        assert c.title == f"[rejected: {row['reason']}] {key}"
        assert [s[0] for s in c.subs] == row["sub_instructions"]
        assert [s[1] for s in c.subs] == row["sub_executed"]
        assert False in [s[1] for s in c.subs] or row["reason"] != "sub_edit_not_executed"
    # long instructions wrap at word boundaries: every word survives, none is cut
    text = "move the small striped purple hexagon left of the large dotted cyan star to the top-right corner"
    lines = wrap(text, 200, sheet_font())
    assert len(lines) > 1 and " ".join(lines) == text
    assert all(sheet_font().getlength(line) <= 200 for line in lines)
    img = np.zeros((64, 64, 3), np.uint8)
    sheet = contact_sheet(["a", "b", "c"], [SheetCell([img, img, img], "t", [(text, False, 0.2)])], tile=64)
    assert sheet.width == 6 + 3 * 64 + 2 * 6 + 2 * 6
