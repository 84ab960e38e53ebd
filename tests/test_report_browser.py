"""The build report in a real headless Chromium (Debian's, through Playwright; tests/browser.py):
it loads from a file with no error and no request leaving the machine, the filters change what
the gallery shows, and paging walks through it. Screenshots go under the test's folder, and to
benchmarks/figures/report_*.png only when MCIE_UPDATE_FIGURES=1."""

from __future__ import annotations

import collections
import json
import os
import re
import shutil

import pyarrow.parquet as pq
import pytest
from browser import new_page

from mcie.report.dataset import GalleryConfig, write_build_report

FIGURES = os.path.join(os.path.dirname(__file__), "..", "benchmarks", "figures")


def save_shot(target, tmp_path, name: str, **kw) -> str:
    """Screenshot ``target`` (a page or a locator) under ``tmp_path``; copied to the committed
    figures only when MCIE_UPDATE_FIGURES=1, so a test run leaves the working tree clean."""
    path = str(tmp_path / name)
    target.screenshot(path=path, **kw)
    assert os.path.getsize(path) > 10_000  # a rendered view, not a blank page
    if os.environ.get("MCIE_UPDATE_FIGURES") == "1":
        os.makedirs(FIGURES, exist_ok=True)
        shutil.copyfile(path, os.path.join(FIGURES, name))
    return path


@pytest.fixture(scope="module")
def page_file(built, tmp_path_factory):
    """The report of the session build, with a gallery of more than one page."""
    path = str(tmp_path_factory.mktemp("report-browser") / "report.html")
    write_build_report(built, path, GalleryConfig(per_group=20, max_items=60))
    with open(path, encoding="utf-8") as fh:
        m = re.search(r'id="gallery-data">(.*?)</script>', fh.read(), re.S)
    return path, json.loads(m.group(1))


def visible_cards(page) -> list[str]:
    return page.locator("#cards .card:visible").evaluate_all("els => els.map(e => e.dataset.key)")


def shown(page) -> tuple[int, int]:
    """(candidates matching in the whole index, of them in the gallery), as the page says."""
    s = page.locator("#gallery-status")
    return int(s.get_attribute("data-total")), int(s.get_attribute("data-shown"))


def test_report_loads_filters_and_pages(browser, built, page_file, tmp_path):
    path, data = page_file
    index = pq.read_table(os.path.join(built, "index.parquet")).to_pylist()
    items = data["items"]
    per_page = data["perPage"]
    assert len(items) > per_page  # so paging has something to do
    page, log = new_page(browser, viewport={"width": 1280, "height": 900})
    url = "file://" + path
    page.goto(url)
    page.wait_for_selector("#cards .card")

    # everything: all candidates match, the first page is full
    assert shown(page) == (len(index), len(items))
    assert visible_cards(page) == [it["k"] for it in items[:per_page]]
    assert page.locator("#page-label").inner_text() == f"page 1 of {-(-len(items) // per_page)}"
    assert page.locator("#prev").is_disabled()
    # the cards show images, the legend swatches and a verdict per sub-instruction
    first = page.locator("#cards .card").first
    assert first.locator("img").count() == 2
    assert first.locator("ol.subs li").count() == items[0]["n"]
    assert first.locator(".ok, .bad").count() == items[0]["n"]
    save_shot(page, tmp_path, "report_overview.png", full_page=True)

    # paging: the next page holds the next items, and back again
    page.click("#next")
    assert visible_cards(page) == [it["k"] for it in items[per_page : 2 * per_page]]
    assert not page.locator("#prev").is_disabled()
    page.click("#prev")
    assert visible_cards(page)[0] == items[0]["k"]

    # filter by status: only rejected cards, as many as the gallery holds, totals from the index
    by_status = collections.Counter(r["status"] for r in index)
    page.select_option("#filter-st", "rejected")
    rejected = [it["k"] for it in items if it["st"] == "rejected"]
    assert rejected and visible_cards(page) == rejected[:per_page]
    assert shown(page) == (by_status["rejected"], len(rejected))
    statuses = page.locator("#cards .card").evaluate_all("els => els.map(e => e.dataset.status)")
    assert set(statuses) == {"rejected"}

    # and by reason: a narrower set
    reason = items[[it["st"] for it in items].index("rejected")]["r"]
    page.select_option("#filter-r", reason)
    want = [it["k"] for it in items if it["st"] == "rejected" and it["r"] == reason]
    assert visible_cards(page) == want[:per_page]
    assert shown(page)[0] == sum(1 for r in index if r["status"] == "rejected" and r["reason"] == reason)
    save_shot(page.locator("#gallery"), tmp_path, "report_gallery_filtered.png")

    # edit type and sub-edit count, from all statuses
    page.select_option("#filter-st", "")
    page.select_option("#filter-r", "")
    etype, n = items[-1]["t"][-1], items[-1]["n"]
    page.select_option("#filter-t", etype)
    page.select_option("#filter-n", str(n))
    want = [it["k"] for it in items if etype in it["t"] and it["n"] == n]
    assert want and visible_cards(page) == want[:per_page]
    assert shown(page)[0] == sum(1 for r in index if etype in r["edit_types"] and r["num_sub_edits"] == n)

    assert log.page_errors == [] and log.console_errors == []
    assert [u for u in log.off_machine() if u != url] == []  # only the page file itself
    page.context.close()


def test_bench_pages_load_and_filter(browser, bench_runs, tmp_path):
    from mcie.bench.report import compare

    run = bench_runs["corrupt:0.6"]
    with open(os.path.join(run, "samples.jsonl")) as fh:
        rows = [json.loads(line) for line in fh]
    page, log = new_page(browser, viewport={"width": 1280, "height": 900})
    url = "file://" + os.path.join(run, "report.html")
    page.goto(url)
    page.wait_for_selector("#cards .card")
    assert shown(page)[0] == len(rows)
    page.select_option("#filter-st", "not all executed")
    failed = [f"set {r['set_id']}" for r in rows if not r["all_executed"]]
    assert (
        failed
        and visible_cards(page)
        == failed[: page.evaluate("JSON.parse(document.getElementById('gallery-data').textContent).perPage")]
    )
    assert shown(page)[0] == len(failed)
    # every visible card names the sub-instruction that failed with a ✗
    assert (
        page.locator("#cards .card:visible").count() == page.locator("#cards .card:visible:has(.bad)").count()
    )
    save_shot(page, tmp_path, "report_bench_run.png", full_page=True)
    cmp_dir = str(tmp_path / "cmp")
    compare([bench_runs[e] for e in ("corrupt:0.6", "identity", "oracle")], cmp_dir)
    cmp_url = "file://" + os.path.join(cmp_dir, "comparison.html")
    page.goto(cmp_url)
    assert page.locator("img.chart").count() == 2
    assert page.locator("#overall th").all_inner_texts()[1:] == ["corrupt:0.6", "identity", "oracle"]
    save_shot(page, tmp_path, "report_bench_compare.png", full_page=True)
    assert log.page_errors == [] and log.console_errors == []
    assert [u for u in log.off_machine() if u not in (url, cmp_url)] == []
    page.context.close()
