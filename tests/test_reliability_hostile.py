"""Hostile and careless inputs, second round: an ``--out`` over a build's own files, a key
repeated inside a shard, an index whose ``shard`` column points anywhere, and script planted
in a bench run folder."""

from __future__ import annotations

import glob
import json
import os
import shutil
import subprocess

import pyarrow.parquet as pq
import pytest

from mcie.cli import main
from mcie.shards import ShardError, read_tar, write_tar
from mcie.tables import INDEX_SCHEMA, write_rows


def _copy(built: str, tmp_path) -> str:
    out = str(tmp_path / "build")
    shutil.copytree(built, out)
    return out


def _read(path: str) -> bytes:
    with open(path, "rb") as fh:
        return fh.read()


# -- an output path inside a build's managed files ----------------------------------------------


def test_report_preview_and_train_refuse_to_write_over_a_build(built, tmp_path, capsys):
    out = _copy(built, tmp_path)
    index = os.path.join(out, "index.parquet")
    shard = sorted(glob.glob(os.path.join(out, "shards", "*.tar")))[0]
    link = str(tmp_path / "innocent.html")
    os.symlink(index, link)  # a path that only looks like it is elsewhere
    before = {p: _read(p) for p in (index, shard)}
    cases = [
        ["report", out, "--out", index, "--no-audit"],
        ["report", out, "--out", link, "--no-audit"],
        ["report", out, "--out", os.path.join(out, "stats", "page.html"), "--no-audit"],
        ["preview", out, "--out", shard],
        ["preview", out, "--out", os.path.join(out, "run.json")],
        ["train", os.path.join(out, "shards", "*.tar"), "--out", out, "--preset", "tiny", "--max-steps", "1"],
    ]
    for argv in cases:
        assert main(argv) == 1, argv
        err = capsys.readouterr().err
        assert "would overwrite the managed files of the build" in err, (argv, err)
    assert {p: _read(p) for p in before} == before
    assert not os.path.exists(os.path.join(out, "stats", "page.html"))
    # a page beside the data stays allowed
    assert main(["preview", out, "--out", os.path.join(out, "look.png"), "--n", "2"]) == 0


# -- a key repeated inside one shard ------------------------------------------------------------


def _repeat_first_sample(out: str, adjacent: bool = False) -> tuple[str, str]:
    """Rewrite the first accepted shard with its first sample written twice: at the end of the
    tar, or (``adjacent``) its JSON member twice in a row. Returns (shard path, key)."""
    path = sorted(glob.glob(os.path.join(out, "shards", "*.tar")))[0]
    samples = [[(f"{k}.{s}", b) for s, b in m.items()] for k, m in read_tar(path)]
    key = samples[0][0][0].split(".")[0]
    if adjacent:
        samples[0].append(next(m for m in samples[0] if m[0].endswith(".json")))
    else:
        samples.append(list(samples[0]))
    write_tar(path, samples)
    return path, key


@pytest.mark.parametrize("adjacent", [False, True], ids=["later-in-the-tar", "member-twice"])
def test_a_repeated_key_is_refused_by_every_reader_naming_shard_and_key(built, tmp_path, capsys, adjacent):
    out = _copy(built, tmp_path)
    path, key = _repeat_first_sample(out, adjacent)
    with pytest.raises(ShardError, match=key) as exc:
        list(read_tar(path))
    assert path in str(exc.value)
    bench = str(tmp_path / "bench")
    assert main(["bench", "build", "--out", bench, "--from", out, "--holdout", "0.99"]) == 2
    err = capsys.readouterr().err
    assert path in err and key in err and "more than once" in err
    assert not os.path.exists(os.path.join(bench, "bench.parquet"))
    # training walks every shard before the first step: the repeat stops it there
    argv = ["train", os.path.join(out, "shards", "*.tar"), "--out", str(tmp_path / "run"), "--preset", "tiny"]
    assert main([*argv, "--max-steps", "1"]) == 2
    err = capsys.readouterr().err
    assert key in err and os.path.basename(path) in err
    assert not glob.glob(str(tmp_path / "run" / "checkpoint-*"))


# -- the index's shard column is untrusted ------------------------------------------------------


@pytest.mark.timeout(300)
def test_report_opens_only_shards_inside_the_build(built, built_two_workers, tmp_path):
    from mcie.report.dataset import GalleryConfig, write_build_report

    out = _copy(built, tmp_path)
    fifo = str(tmp_path / "hang.tar")
    os.mkfifo(fifo)
    os.mkfifo(os.path.join(out, "shards", "fifo.tar"))  # a FIFO named like a shard, inside
    other = sorted(glob.glob(os.path.join(built_two_workers, "shards", "*.tar")))[0]
    rows = pq.read_table(os.path.join(out, "index.parquet")).to_pylist()
    with_shard = [r for r in rows if r["shard"]]
    planted = {
        with_shard[0]["key"]: other,
        with_shard[1]["key"]: fifo,
        with_shard[2]["key"]: "shards/fifo.tar",
    }
    for r in rows:
        r["shard"] = planted.get(r["key"], r["shard"])
    write_rows(os.path.join(out, "index.parquet"), rows, INDEX_SCHEMA)
    page = str(tmp_path / "page.html")
    summary = write_build_report(out, page, GalleryConfig(per_group=50, max_items=500), with_audit=False)
    problems = "\n".join(summary["problems"])
    # a reference is quoted to its first 80 characters (an index value can be any length)
    assert f"invalid shard reference {repr(other)[:80]}" in problems
    assert f"invalid shard reference {repr(fifo)[:80]}" in problems
    assert "fifo.tar: not a regular file (a FIFO)" in problems
    with open(page, encoding="utf-8") as fh:
        html = fh.read()
    data = json.loads(html.split('id="gallery-data">', 1)[1].split("</script>", 1)[0])
    shown = {it["k"]: it["img"] for it in data["items"]}
    for key in planted:  # listed, without another build's images
        assert key in shown and shown[key] == []
    assert sum(1 for v in shown.values() if v) == len(shown) - 3


# -- script planted in a bench run folder -------------------------------------------------------

PAYLOAD = '<script>window.__pwned=1</script><img src=x onerror="window.__pwned=2">'


def _plant(value):
    """``value`` with the payload added to every string, dict key and list member; numbers that
    are only shown (not computed on) are replaced by it by the caller."""
    if isinstance(value, str):
        return value + PAYLOAD
    if isinstance(value, list):
        return [_plant(v) for v in value]
    if isinstance(value, dict):
        return {(k + PAYLOAD if k not in _STRUCTURE else k): _plant(v) for k, v in value.items()}
    return value


#: field names the report reads by name (a planted copy of the key would only hide the field)
_STRUCTURE = {
    "editor", "sets", "checker", "decomposition", "unavailable", "by_num_sub_edits", "by_edit_type",
    "set_id", "num_sub_edits", "edit_types", "executed", "compliance", "all_executed", "instruction",
    "sub_instructions", "judge_scores", "agreement", "compliance_exact",
    "background_ssim", "background_psnr", "background_l1", "img",
    "instruction_compliance", "ic_exact", "all_executed_rate", "l1", "l2", "clip_i", "clip_t", "dino",
    "lpips", "sub_instruction_compliance",
}  # fmt: skip


def test_script_planted_in_a_bench_run_never_runs(browser, bench_runs, tmp_path, capsys):
    from browser import new_page

    run = str(tmp_path / "run")
    shutil.copytree(bench_runs["corrupt:0.6"], run)
    with open(os.path.join(run, "summary.json")) as fh:
        summary = json.load(fh)
    planted = _plant(summary)
    planted["sets"] = PAYLOAD  # shown as is in the page's header line
    planted["by_num_sub_edits"] = summary["by_num_sub_edits"]  # keys are numbers the tables sort
    with open(os.path.join(run, "summary.json"), "w") as fh:
        json.dump(planted, fh)
    with open(os.path.join(run, "samples.jsonl")) as fh:
        rows = [json.loads(line) for line in fh]
    with open(os.path.join(run, "samples.jsonl"), "w") as fh:
        for r in rows:
            fh.write(json.dumps(_plant(r)) + "\n")
    page_path = str(tmp_path / "report.html")
    assert main(["bench", "report", run, "--out", page_path]) == 0
    capsys.readouterr()
    with open(page_path, encoding="utf-8") as fh:
        html = fh.read()
    assert PAYLOAD not in html and "<script>window.__pwned" not in html
    page, log = new_page(browser)
    page.on("dialog", lambda d: d.dismiss())
    page.goto("file://" + page_path)
    page.wait_for_selector("#cards .card")  # the page's own script still runs
    assert page.evaluate("window.__pwned") is None
    # the planted text is shown as text
    assert PAYLOAD in page.locator("header .meta").inner_text()
    assert log.page_errors == [] and log.console_errors == []
    page.context.close()


def test_the_page_runs_no_inline_script_but_its_own(browser, tmp_path):
    """Defence in depth: even trusted HTML that carries a script (a future escaping slip) does
    not run it; the gallery script, allowed by its hash, does."""
    from browser import new_page

    from mcie.report.page import Section, gallery_json, render

    body = "<p id='x'>x</p><script>window.__pwned=1</script><img src=x onerror='window.__pwned=2'>"
    html = render("t", [Section("s", "S", body)], gallery_json([], [], [("st", "status")], "note"))
    assert "'unsafe-inline'; script-src 'sha256-" in html
    path = str(tmp_path / "p.html")
    with open(path, "w", encoding="utf-8") as fh:
        fh.write(html)
    page, log = new_page(browser)
    page.goto("file://" + path)
    page.wait_for_selector("#gallery-note")
    assert page.locator("#gallery-note").inner_text() == "note"  # the gallery script ran
    assert page.evaluate("window.__pwned") is None
    assert any("Content Security Policy" in e for e in log.console_errors)  # the blocked script
    page.context.close()


# -- members no sample has: sparse, oversized, not a file ----------------------------------------


def _sparse_shard(shard: str, key: str, tmp_path) -> None:
    """Replace ``shard`` with a tar (tens of KB) whose member ``{key}.src.jpg`` is a sparse
    20 GB file, written by GNU tar as a real user's tool would."""
    d = tmp_path / "sparse"
    d.mkdir()
    with open(d / f"{key}.src.jpg", "wb") as fh:
        fh.truncate(20 * 1024**3)
    subprocess.run(["tar", "--sparse", "-cf", shard, "-C", str(d), f"{key}.src.jpg"], check=True)
    assert os.path.getsize(shard) < 100_000


@pytest.mark.timeout(300)
def test_a_sparse_20gb_member_is_refused_by_every_reader_unread(built, tmp_path, capsys):
    from mcie.audit import audit
    from mcie.report.dataset import GalleryConfig, write_build_report

    out = _copy(built, tmp_path)
    shard = sorted(glob.glob(os.path.join(out, "shards", "*.tar")))[0]
    key = next(iter(read_tar(shard)))[0]
    _sparse_shard(shard, key, tmp_path)
    with pytest.raises(ShardError, match="sparse file"):
        list(read_tar(shard))
    summary = write_build_report(out, str(tmp_path / "r.html"), GalleryConfig(per_group=2), with_audit=False)
    assert any("sparse file" in p for p in summary["problems"])
    assert any("sparse file" in p for p in audit(out)["problems"])
    assert main(["bench", "build", "--out", str(tmp_path / "b"), "--from", out, "--holdout", "0.99"]) == 2
    assert "sparse file" in capsys.readouterr().err


def test_oversized_and_non_file_members_are_refused(built, tmp_path, monkeypatch):
    import tarfile

    shard = sorted(glob.glob(os.path.join(built, "shards", "*.tar")))[0]
    monkeypatch.setenv("MCIE_MAX_MEMBER_BYTES", "1000")  # the documented way to move the cap
    with pytest.raises(ShardError, match="over the 1000-byte cap"):
        list(read_tar(shard))
    monkeypatch.delenv("MCIE_MAX_MEMBER_BYTES")
    linked = str(tmp_path / "link.tar")
    key = next(iter(read_tar(shard)))[0]
    with tarfile.open(linked, "w", format=tarfile.GNU_FORMAT) as tar:
        info = tarfile.TarInfo(f"{key}.json")
        info.type, info.linkname = tarfile.SYMTYPE, "/etc/passwd"
        tar.addfile(info)
    with pytest.raises(ShardError, match="not a regular file"):
        list(read_tar(linked))


# -- smaller: usage errors that were crashes, names that were markup ------------------------------


def test_ls_shard_out_that_is_a_file_or_a_dangling_link_is_a_usage_error(built, tmp_path, capsys):
    afile = tmp_path / "final.txt"
    afile.write_text("keep me")
    dangling = tmp_path / "gone"
    os.symlink(tmp_path / "nowhere", dangling)
    for target in (afile, dangling):
        assert main(["ls", "shard", built, "--out", str(target)]) == 1
        assert "is not a folder" in capsys.readouterr().err
    assert afile.read_text() == "keep me" and not os.path.exists(tmp_path / "nowhere")


def test_report_names_the_missing_index_column(built, tmp_path, capsys):
    out = _copy(built, tmp_path)
    table = pq.read_table(os.path.join(out, "index.parquet"))
    pq.write_table(table.drop_columns(["status", "shard"]), os.path.join(out, "index.parquet"))
    assert main(["report", out, "--no-audit", "--out", str(tmp_path / "r.html")]) == 1
    err = capsys.readouterr().err
    assert "lacks the column(s) shard, status of an mcie index" in err


def test_comparison_files_escape_editor_names(bench_runs, tmp_path):
    import csv

    from mcie.bench.report import compare

    run = str(tmp_path / "run")
    shutil.copytree(bench_runs["oracle"], run)
    name = '=HYPERLINK("http://x")<b>|x'
    with open(os.path.join(run, "summary.json")) as fh:
        summary = json.load(fh)
    summary["editor"] = name
    with open(os.path.join(run, "summary.json"), "w") as fh:
        json.dump(summary, fh)
    out = str(tmp_path / "cmp")
    compare([bench_runs["identity"], run], out)
    with open(os.path.join(out, "comparison.csv"), newline="") as fh:
        rows = list(csv.reader(fh))
    assert rows[2][0] == "'" + name  # a spreadsheet shows it as text, never runs it
    with open(os.path.join(out, "comparison.md")) as fh:
        md = fh.read()
    assert "<b>" not in md and '=HYPERLINK("http://x")&lt;b&gt;\\|x' in md
    line = next(ln for ln in md.splitlines() if "HYPERLINK" in ln and ln.startswith("|"))
    assert line.count(" | ") == md.splitlines()[2].count(" | ")  # no cell added
