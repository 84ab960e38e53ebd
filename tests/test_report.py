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


def decode_uri(uri: str, mode: str) -> np.ndarray:
    """The pixels of a ``data:image/…;base64,…`` URI."""
    import base64
    import io

    from PIL import Image

    with Image.open(io.BytesIO(base64.b64decode(uri.split(",", 1)[1]))) as im:
        return np.asarray(im.convert(mode))


def object_centre(mask: np.ndarray) -> tuple[int, int]:
    """(y, x) of a pixel deepest inside ``mask``: the last one left by repeated erosion."""
    from mcie.metrics import erode

    m = mask.astype(bool)
    while erode(m, 1).any():
        m = erode(m, 1)
    ys, xs = np.nonzero(m)
    return int(ys[len(ys) // 2]), int(xs[len(xs) // 2])


def coloured_samples(built: str, n: int = 6) -> list[tuple[str, np.ndarray, np.ndarray, np.ndarray]]:
    """(key, shard target, the mask of a recolour/add sub-edit, its target) of up to ``n``
    shard samples: the sub-edits whose result is a coloured object at the mask's centre."""
    import glob

    from mcie.shards import decode_sample, read_tar

    out = []
    for path in sorted(glob.glob(os.path.join(built, "shards", "*.tar"))):
        for key, members in read_tar(path):
            meta, _, tgt, masks = decode_sample(members)
            for k, s in enumerate(meta["sub_edits"]):
                if s["edit_type"] in ("recolour", "add") and s.get("executed"):
                    out.append((key, tgt, masks[k], k))
                    break
            if len(out) == n:
                return out
    return out


def test_gallery_pictures_keep_the_shards_true_colours(built, report):
    """The page's target picture is the shard's target: at an object's centre the pixel is the
    shard's own (a tint would have mixed the mask colour in), and each mask layer is the
    shard's mask."""
    items = {it["k"]: it for it in gallery_data(report[1])["items"]}
    checked = 0
    for key, tgt, mask, k in coloured_samples(built):
        if key not in items:
            continue
        it = items[key]
        uri = dict(it["img"])["target"]
        shown = decode_uri(uri, "RGB")
        y, x = object_centre(mask)
        assert shown.shape == tgt.shape and it["wh"] == [tgt.shape[1], tgt.shape[0]]
        assert shown[y, x].tolist() == tgt[y, x].tolist()
        layer = decode_uri(it["m"][k], "RGBA")
        assert np.array_equal(layer[..., 3] > 0, mask)  # opaque exactly inside the mask
        checked += 1
    assert checked >= 2


def test_preview_tiles_keep_true_colours_with_rings_outside(built):
    """preview.png: the target tile at an object's centre has the shard's pixel; the ring
    around the mask is in the sub-edit's colour and lies outside the mask."""
    from mcie.metrics import dilate
    from mcie.preview import preview_cells
    from mcie.report.overlay import RING, colour
    from mcie.report.sheet import GAP, HEADER, contact_sheet

    key, tgt, mask, k = coloured_samples(built, 1)[0]
    cell = next(c for c in preview_cells(built, 60) if c.title.endswith(key))
    assert tgt.shape[0] == 256  # the session build: 256-px images on 256-px tiles, 1:1
    sheet = np.asarray(contact_sheet(["source", "target"], [cell], tile=256, per_row=1).convert("RGB"))
    tile = sheet[GAP + HEADER : GAP + HEADER + 256, GAP + 256 + GAP : GAP + 2 * 256 + GAP]
    y, x = object_centre(mask)
    assert tile[y, x].tolist() == tgt[y, x].tolist()
    inside = mask.astype(bool)
    crossing = np.zeros_like(inside)  # where another sub-edit's ring may run
    for j, m in enumerate(cell.masks):
        if j != k:
            crossing |= dilate(m.astype(bool), RING + 1) & ~m.astype(bool)
    clean = inside & ~crossing
    assert clean.sum() > 0.8 * inside.sum()
    assert np.array_equal(tile[clean], tgt[clean])  # no pixel of the region is painted
    ring = dilate(inside, RING) & ~inside
    assert (tile[ring] == colour(k)).all(axis=1).mean() > 0.5  # mostly its colour (others may cross)


def test_small_pictures_are_enlarged_by_whole_pixels_before_the_rings():
    from mcie.report.overlay import DARK, colour

    img = np.zeros((32, 32, 3), np.uint8)
    img[:] = (200, 200, 200)
    img[10:20, 10:20] = (250, 220, 30)  # a yellow object, the size of its mask
    mask = np.zeros((32, 32), bool)
    mask[10:20, 10:20] = True
    big = fit(img, [mask], (256, 256))
    assert big.shape == (256, 256, 3)
    # every pixel of the object is its own colour, at 8x8 per image pixel; the ring is 2 of
    # those 256 pixels (a quarter of one image pixel), outside, then the dark pixel
    assert (big[80:160, 80:160] == (250, 220, 30)).all()
    assert big[120, 79].tolist() == list(colour(0)) and big[120, 78].tolist() == list(colour(0))
    assert big[120, 77].tolist() == list(DARK) and big[120, 76].tolist() == [200, 200, 200]
    shrunk = fit(np.zeros((512, 512, 3), np.uint8), [np.ones((512, 512), bool)], (64, 64))
    assert shrunk.shape == (64, 64, 3) and (shrunk == 0).all()  # a full mask: no ring inside


def test_degenerate_histogram_axis_is_plain():
    """Every value the same (PSNR 100 dB on untouched backgrounds): plain tick labels around
    the value, no matplotlib offset text over the axis title."""
    from mcie.report import charts

    plt = charts._pyplot()
    for values in ([100.00000001] * 5, [1.0] * 3, [0.0] * 4, [0.99999999, 1.0]):
        fig, ax = plt.subplots()
        charts.hist_panel(ax, "background PSNR (dB)", {"accepted": values})
        fig.canvas.draw()
        assert ax.xaxis.get_offset_text().get_text() == ""
        labels = [t.get_text().replace("\u2212", "-") for t in ax.get_xticklabels() if t.get_text()]
        ticks = [float(t) for t in labels]  # plain numbers (no "1e-6", no offset)
        assert len(set(labels)) == len(labels) >= 2
        lo, hi = ax.get_xlim()
        assert lo < min(values) <= max(values) < hi and hi - lo >= 0.05
        assert len([t for t in ticks if lo <= t <= hi]) >= 2  # ticks on the visible axis
        plt.close(fig)
    assert charts.hist_range(0.2, 0.9) == (0.2, 0.9)  # a real range is kept as is


def test_gallery_lists_failures_first_with_scores(built, report):
    from mcie.report.dataset import GALLERY_ORDER

    index = {r["key"]: r for r in pq.read_table(os.path.join(built, "index.parquet")).to_pylist()}
    data = gallery_data(report[1])
    ranks = [GALLERY_ORDER.index(it["st"]) for it in data["items"]]
    assert ranks == sorted(ranks) and data["items"][0]["st"] == "rejected"
    assert data["statusOrder"][0] == "rejected"
    for it in data["items"]:
        c = index[it["k"]]["compliance"]
        assert it["sc"] == (None if c is None else pytest.approx(c, abs=1e-4))


def test_no_audit_line_without_a_truth(built, tmp_path):
    out = str(tmp_path / "copy")
    shutil.copytree(built, out)
    os.remove(os.path.join(out, "truth.parquet"))
    lines: list[str] = []
    s = write_build_report(out, config=GalleryConfig(max_items=4), progress=lines.append)
    assert s["candidates"] == 60 and lines
    assert not [line for line in lines if "truth" in line]
    with open(s["path"], encoding="utf-8") as fh:
        assert "Audit against the truth" not in fh.read()
