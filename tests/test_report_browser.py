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

import numpy as np
import pyarrow.parquet as pq
import pytest
from browser import new_page
from PIL import Image

from mcie.report.dataset import GalleryConfig, write_build_report

FIGURES = os.path.join(os.path.dirname(__file__), "..", "benchmarks", "figures")


def save_shot(target, tmp_path, name: str, **kw) -> str:
    """Screenshot ``target`` (a page or a locator) under ``tmp_path``; copied to the committed
    figures only when MCIE_UPDATE_FIGURES=1, so a test run leaves the working tree clean."""
    path = str(tmp_path / name)
    target.screenshot(path=path, **kw)
    assert os.path.getsize(path) > 10_000  # a rendered view, not a blank page
    keep_figure(path, name)
    return path


def keep_figure(path: str, name: str) -> None:
    """Copy ``path`` to ``benchmarks/figures/name`` when MCIE_UPDATE_FIGURES=1."""
    if os.environ.get("MCIE_UPDATE_FIGURES") == "1":
        os.makedirs(FIGURES, exist_ok=True)
        shutil.copyfile(path, os.path.join(FIGURES, name))


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


def painted(page, box: str = "#cards") -> None:
    """Wait until the page has drawn the masks of every picture in ``box``."""
    page.wait_for_function(
        f"(() => {{ const b = document.querySelector({box!r}); "
        "return b.dataset.gen && b.dataset.painted === b.dataset.gen; })()"
    )


def open_card(page, key: str):
    """The card of ``key``, paging forward until it is shown."""
    while page.locator(f'#cards .card[data-key="{key}"]').count() == 0:
        assert not page.locator("#next").is_disabled(), f"{key} is on no page"
        page.click("#next")
    return page.locator(f'#cards .card[data-key="{key}"]')


def screenshot_array(locator, path: str) -> np.ndarray:
    locator.screenshot(path=path)
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB")).astype(int)


def test_enlarged_target_shows_the_shards_true_colours(browser, built, page_file, tmp_path):
    """Click a card's target: the enlarged picture (whole-pixel zoom) shows, at the centre of
    an edited object, the shard's target pixel — not a tint; the ring runs outside the mask in
    the sub-edit's colour and goes when that mask is switched off; the tint is a choice."""
    from test_report import coloured_samples, object_centre

    from mcie.metrics import dilate
    from mcie.report.overlay import PALETTE

    _, data = page_file
    in_gallery = {it["k"] for it in data["items"]}
    key, tgt, mask, k = next(
        (key, tgt, mask, k)
        for key, tgt, mask, k in coloured_samples(built, 20)
        if key in in_gallery
        and np.abs(tgt[object_centre(mask)].astype(int) - PALETTE[k % len(PALETTE)]).max() > 80
    )
    y, x = object_centre(mask)
    page, log = new_page(browser, viewport={"width": 1280, "height": 900})
    page.goto("file://" + page_file[0])
    painted(page)
    open_card(page, key).locator(".pic").nth(1).click()
    painted(page, "#zoom")
    pic = page.locator("#zoom .pic").nth(1)
    shot = screenshot_array(pic, str(tmp_path / "zoom.png"))
    s = shot.shape[1] // tgt.shape[1]
    assert s >= 2 and shot.shape[1] == s * tgt.shape[1]  # a whole-pixel enlargement
    centre = shot[y * s + s // 2, x * s + s // 2]
    assert np.abs(centre - tgt[y, x]).max() <= 8, (centre, tgt[y, x])  # true colour
    # a pixel just right of the mask, next to it: the ring's colour, gone with the mask
    edge = np.argwhere(dilate(mask, 1) & ~mask & np.roll(mask, 1, axis=1))
    ey, ex = (int(v) for v in edge[len(edge) // 2])
    ring = shot[ey * s + s // 2, ex * s]
    assert np.abs(ring - PALETTE[k]).max() <= 8, (ring, PALETTE[k])
    save_shot(page, tmp_path, "report_zoom.png")
    page.locator(f'#zoom input[data-k="{k}"]').uncheck()
    painted(page, "#zoom")
    off = screenshot_array(pic, str(tmp_path / "zoom-off.png"))
    assert np.abs(off[ey * s + s // 2, ex * s] - tgt[ey, ex]).max() <= 8  # the image's own pixel
    # the tint, chosen above the gallery, mixes the mask colour into the object
    page.click("#zoom-close")
    page.select_option("#mask-mode", "tint")
    painted(page)
    open_card(page, key).locator(".pic").nth(1).click()
    painted(page, "#zoom")
    tinted = screenshot_array(page.locator("#zoom .pic").nth(1), str(tmp_path / "zoom-tint.png"))
    assert np.abs(tinted[y * s + s // 2, x * s + s // 2] - tgt[y, x]).max() > 30
    assert log.page_errors == [] and log.console_errors == []
    page.context.close()


def test_gallery_sorts_and_wraps_long_errors(browser, tmp_path):
    """Sort by score (lowest first, none last), key and reason; the status drop-down lists the
    failures first; a 3000-character error without a space wraps inside its card."""
    from mcie.report.page import Section, gallery_json, render

    statuses = ["accepted", "rejected", "failed"]
    items = [
        {
            "k": f"{(i * 7919) % 97:04x}{i:016x}",
            "st": statuses[i % 3],
            "r": "" if i % 3 == 0 else ("plan_invalid" if i % 3 == 2 else "sub_edit_not_executed"),
            "n": 1,
            "t": ["add"],
            "sub": [["add a star", i % 2 == 0, 0.5]],
            "sc": None if i % 5 == 0 else round((i * 37 % 100) / 100, 2),
            "img": [],
            "err": ("plan_invalid:" + "x" * 3000) if i % 3 == 2 else "",
        }
        for i in range(30)
    ]
    # one card with a picture whose second mask layer does not decode: drawn without that mask
    from mcie.report.gallery import sample_pictures

    img = np.full((16, 16, 3), 200, np.uint8)
    items[0].update(sample_pictures([("target", img, None)], [np.eye(16, dtype=bool)], 256))
    items[0]["m"].append("data:image/png;base64,AAAA")
    gallery = gallery_json(
        items, [], [("st", "status")], "n", per_page=50, status_order=("rejected", "failed", "accepted")
    )
    path = str(tmp_path / "p.html")
    with open(path, "w", encoding="utf-8") as fh:
        fh.write(render("t", [Section("s", "S", "")], gallery))
    page, log = new_page(browser, viewport={"width": 1280, "height": 900})
    page.goto("file://" + path)
    page.wait_for_selector("#cards .card")
    painted(page)
    assert page.evaluate("document.documentElement.scrollWidth") <= 1280
    assert page.locator("#filter-st option").all_inner_texts() == ["all", "rejected", "failed", "accepted"]
    # the default sort: failures first, each status in the page's order
    want = sorted(items, key=lambda it: ["rejected", "failed", "accepted"].index(it["st"]))
    assert visible_cards(page) == [it["k"] for it in want]
    page.select_option("#sort", "score")
    scored = sorted((it for it in items if it["sc"] is not None), key=lambda it: it["sc"])  # stable
    assert visible_cards(page) == [it["k"] for it in scored] + [it["k"] for it in items if it["sc"] is None]
    page.select_option("#sort", "key")
    assert visible_cards(page) == sorted(it["k"] for it in items)
    page.select_option("#sort", "reason")
    got = [next(it["r"] for it in items if it["k"] == k) for k in visible_cards(page)]
    assert got == sorted(got, key=lambda r: (r == "", r))
    assert page.evaluate("document.documentElement.scrollWidth") <= 1280
    assert log.page_errors == [] and log.console_errors == []
    page.context.close()


def test_gallery_figure(browser, built, tmp_path):
    """The first page of a build's gallery, for the committed figure (true colours, rings)."""
    path = str(tmp_path / "report.html")
    write_build_report(built, path, GalleryConfig(per_group=3, max_items=12), with_audit=False)
    page, log = new_page(browser, viewport={"width": 1280, "height": 900})
    page.goto("file://" + path)
    painted(page)
    save_shot(page.locator("#gallery"), tmp_path, "report_gallery.png")
    assert log.page_errors == [] and log.console_errors == []
    page.context.close()


def test_sheet_figures(built, bench_runs, tmp_path):
    """The contact sheets for the committed figures: ``mcie preview`` of the session build
    (256 px) and of a 32-px build (enlarged by whole pixels before the rings), and a bench
    run's contact sheet (64 px; expected and output drawn alike)."""
    from mcie.cli import main

    small = str(tmp_path / "b32")
    args = ["build", "--out", small, "--samples", "8", "--image-size", "32", "--seed", "4", "--no-progress"]
    assert main(args) == 0
    for out, name, n in ((built, "preview.png", 8), (small, "preview_32px.png", 8)):
        png = str(tmp_path / name)
        assert main(["preview", out, "--out", png, "--n", str(n)]) == 0
        with Image.open(png) as im:
            assert im.width > 1000
        keep_figure(png, name)
    keep_figure(os.path.join(bench_runs["corrupt:0.6"], "contact.png"), "bench_contact.png")
