"""CIE-Bench reports: seeded bootstrap intervals, what a run writes (no Python ``None`` in the
Markdown, charts with content for an editor that executes nothing, a contact sheet with which
sub-instruction failed), ``mcie bench report`` and ``mcie bench compare``'s HTML page."""

from __future__ import annotations

import json
import os
import re

import numpy as np
import pytest
from PIL import Image

from mcie.bench.report import bootstrap_ci, paired_diff_ci, ratio_ci, run_stats
from mcie.cli import main


def rows_of(run: str) -> list[dict]:
    with open(os.path.join(run, "samples.jsonl")) as fh:
        return [json.loads(line) for line in fh]


def test_bootstrap_intervals_are_seeded_and_bracket_the_mean():
    v = [0.0, 1.0, 1.0, 0.5, 1.0, 0.0, 1.0, 1.0, 0.75, 1.0]
    lo, hi = bootstrap_ci(v)
    assert bootstrap_ci(v) == (lo, hi)  # seeded: the same interval every time
    assert lo < np.mean(v) < hi and lo >= 0.0 and hi <= 1.0
    assert hi - lo > 0.2  # ten sets: wide, as it should be
    assert bootstrap_ci([0.7] * 10) == (pytest.approx(0.7), pytest.approx(0.7))
    assert bootstrap_ci([]) is None
    lo, hi = ratio_ci([1, 2, 0, 3], [2, 2, 1, 3])
    assert lo <= 6 / 8 <= hi
    d, lo, hi = paired_diff_ci([0.5] * 20, [0.9] * 20)
    assert d == pytest.approx(0.4) and lo == pytest.approx(0.4) and hi == pytest.approx(0.4)


def test_run_stats_match_the_summary(bench_runs):
    with open(os.path.join(bench_runs["corrupt:0.6"], "summary.json")) as fh:
        s = json.load(fh)
    st = run_stats(rows_of(bench_runs["corrupt:0.6"]))
    assert st["overall"]["sets"] == s["sets"] == 16
    assert st["overall"]["compliance"]["value"] == pytest.approx(s["instruction_compliance"], abs=1e-4)
    assert st["overall"]["all_executed"]["value"] == pytest.approx(s["all_executed_rate"], abs=1e-4)
    for t, v in s["by_edit_type"].items():
        assert st["by_edit_type"][t]["value"] == pytest.approx(v["compliance"], abs=1e-4)
        assert st["by_edit_type"][t]["sub_instructions"] == v["sub_instructions"]
    for k, v in s["by_num_sub_edits"].items():
        assert st["by_num_sub_edits"][k]["sets"] == v["sets"]


def test_run_writes_readable_reports(bench_runs):
    ident = bench_runs["identity"]
    with open(os.path.join(ident, "summary.md")) as fh:
        md = fh.read()
    assert "None" not in md and "CLIP-I —" in md and "95% bootstrap CI [0.000, 0.000]" in md
    for name in ("compliance_by_num_sub_edits.png", "compliance_by_edit_type.png"):
        with Image.open(os.path.join(ident, name)) as im:
            a = np.asarray(im.convert("L"))
        # an editor that executes nothing still gets axes, labels and a title: ink on the page
        assert (a < 128).mean() > 0.01
    rows = rows_of(bench_runs["corrupt:0.6"])
    assert all(len(r["sub_instructions"]) == r["num_sub_edits"] for r in rows)
    with Image.open(os.path.join(bench_runs["corrupt:0.6"], "contact.png")) as im:
        assert im.width == 6 + 2 * (3 * 256 + 2 * 6 + 2 * 6)  # two sets a row, three columns each
    with open(os.path.join(bench_runs["corrupt:0.6"], "report.html"), encoding="utf-8") as fh:
        html = fh.read()
    data = json.loads(re.search(r'id="gallery-data">(.*?)</script>', html, re.S).group(1))
    by_id = {r["set_id"]: r for r in rows}
    assert sum(c[4] for c in data["combos"]) == len(rows)
    for it in data["items"]:
        r = by_id[int(it["k"].split()[-1])]
        assert [s[1] for s in it["sub"]] == r["executed"]  # which sub-instruction failed
        assert [s[0] for s in it["sub"]] == r["sub_instructions"]
        assert it["st"] == ("all executed" if r["all_executed"] else "not all executed")
        assert [h for h, _ in it["img"]] == ["source", "expected", "output"]


def test_bench_report_command_rewrites_the_page(bench_runs, tmp_path, capsys):
    page = str(tmp_path / "r.html")
    assert main(["bench", "report", bench_runs["oracle"], "--out", page]) == 0
    with open(page, encoding="utf-8") as fh:
        html = fh.read()
    assert "CIE-Bench run: oracle" in html and "instruction compliance" in html
    assert main(["bench", "report", str(tmp_path)]) == 1  # not a run: a usage error
    assert "not a bench run" in capsys.readouterr().err


def test_compare_has_editor_columns_intervals_and_paired_differences(bench_runs, tmp_path):
    out = str(tmp_path / "cmp")
    order = [bench_runs["corrupt:0.6"], bench_runs["identity"], bench_runs["oracle"]]
    assert main(["bench", "compare", *order, "--out", out]) == 0
    with open(os.path.join(out, "comparison.html"), encoding="utf-8") as fh:
        html = fh.read()
    assert "<th>corrupt:0.6</th><th>identity</th><th>oracle</th>" in html
    assert "Difference to corrupt:0.6 (paired by set)" in html
    with open(os.path.join(out, "comparison.md")) as fh:
        md = fh.read()
    assert "None" not in md
    ident = re.search(r"- identity: ([-+0-9.]+) \[([-+0-9.]+), ([-+0-9.]+)\]", md)
    c = np.mean([r["compliance"] for r in rows_of(bench_runs["corrupt:0.6"])])
    assert float(ident.group(1)) == pytest.approx(-c, abs=1e-4)  # identity executes nothing
    assert float(ident.group(3)) < 0  # and the interval says that is no noise
    assert html.count('<img class="chart"') == 2


def test_chart_text_is_literal():
    from mcie.report import charts

    # a $ in an editor name or path must not start matplotlib's math mode (an invalid one raises)
    png = charts.bars(
        {"mcie-e1:/ckpt/$x^{": {"2": 0.5, "3": None}}, "by $n$ — $bad{", "y", "x", counts={"2": 4}
    )
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    assert charts.count_bars({"a$b$": 3}, "t$", "x")[:4] == b"\x89PNG"


@pytest.mark.slow
@pytest.mark.parametrize(
    "name", ["compliance_by_edit_type.png", "gallery.jsonl", "report.html", "comparison.html"]
)
def test_a_failed_report_write_leaves_no_partial_file(bench_runs, tmp_path, name):
    """A write cut half-way (a real EFBIG, as on a full disk; the harness of
    test_reliability_writes.py) leaves the report absent, never a cut file."""
    from test_reliability_writes import _check_whole, _fail_writing, _snapshot

    run = str(tmp_path / "run")
    bench = os.path.join(os.path.dirname(bench_runs["identity"]), "bench")
    if name == "comparison.html":
        _fail_writing(name, "bench", "compare", bench_runs["identity"], "--out", run)
    else:
        _fail_writing(name, "bench", "run", "--bench", bench, "--editor", "identity", "--out", run)
    files = _snapshot(run)
    assert name not in files  # absent, not cut
    for rel, data in files.items():
        _check_whole(rel, data)


def test_contact_sheet_draws_expected_and_output_alike(bench_runs):
    """The oracle's output is the expected image, so their tiles must be the same pixels: no
    tint on one column only; each region is ringed in its sub-edit's colour on both."""
    from mcie.report.overlay import PALETTE
    from mcie.report.sheet import GAP, HEADER

    tile = 256
    with Image.open(os.path.join(bench_runs["oracle"], "contact.png")) as im:
        sheet = np.asarray(im.convert("RGB"))
    cell_w = 3 * tile + 2 * GAP
    y = GAP + HEADER
    for j in range(2):  # the first row's two sets
        x0 = GAP + j * (cell_w + 2 * GAP)
        src, expected, output = (
            sheet[y : y + tile, x0 + c * (tile + GAP) : x0 + c * (tile + GAP) + tile] for c in range(3)
        )
        assert np.array_equal(expected, output)
        assert not np.array_equal(src, expected)  # the edit shows
        assert (expected == PALETTE[0]).all(axis=2).sum() > 50  # sub-edit 0's ring is there
    # the page too: lossless pictures, the same for expected and output, one mask per region
    with open(os.path.join(bench_runs["oracle"], "report.html"), encoding="utf-8") as fh:
        html = fh.read()
    data = json.loads(re.search(r'id="gallery-data">(.*?)</script>', html, re.S).group(1))
    for it in data["items"]:
        pics = dict(it["img"])
        assert pics["expected"] == pics["output"] and pics["expected"].startswith("data:image/png;base64,")
        assert len(it["m"]) == it["n"] and it["wh"] == [64, 64]
