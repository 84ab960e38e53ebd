"""A build folder loads with Hugging Face ``datasets`` as it is (and streams), the card's
snippets run as printed, and shards carry their size and SHA-256."""

import hashlib
import json
import os
import re
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from mcie.hub import MASK_SLOTS, brace_pattern


@pytest.fixture()
def hf_cache(tmp_path, monkeypatch):
    """A fresh datasets cache per test, so a load really reads the shards."""
    import datasets

    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", str(tmp_path / "hf"))
    return str(tmp_path / "hf")


def _accepted(built):
    rows = pq.read_table(os.path.join(built, "index.parquet")).to_pylist()
    return {r["key"]: r for r in rows if r["status"] == "accepted"}


def _check_row(row, index):
    ref = index[row["__key__"]]
    meta = row["json"]
    assert meta["key"] == row["__key__"] and meta["instruction"] == ref["instruction"]
    k = ref["num_sub_edits"]
    assert len(meta["sub_edits"]) == k and [s["edit_type"] for s in meta["sub_edits"]] == ref["edit_types"]
    src, tgt = row["src.jpg"], row["tgt.jpg"]
    assert src.mode == "RGB" and src.size == tgt.size == (meta["width"], meta["height"])
    for slot in range(MASK_SLOTS):
        mask = row[f"mask{slot}.png"]
        if slot >= k:
            assert mask is None  # an unused slot
            continue
        assert mask.mode == "L" and mask.size == src.size  # 8-bit single-channel, as the card says
        assert set(np.unique(np.asarray(mask)).tolist()) == {0, 255}


def test_datasets_loads_the_build_folder_as_it_is(built, hf_cache):
    import datasets

    index = _accepted(built)
    ds = datasets.load_dataset(built, split="train", cache_dir=hf_cache)
    assert ds.num_rows == len(index) > 0
    assert sorted(ds["__key__"]) == sorted(index)
    assert {n for n in ds.features if n.startswith("mask")} == {f"mask{k}.png" for k in range(MASK_SLOTS)}
    for row in ds:
        _check_row(row, index)
    rejected = datasets.load_dataset(built, "rejected", split="train", cache_dir=hf_cache)
    rows = pq.read_table(os.path.join(built, "index.parquet")).to_pylist()
    assert sorted(rejected["__key__"]) == sorted(r["key"] for r in rows if r["status"] == "rejected")


def test_datasets_streams_the_build_folder(built):
    import datasets

    index = _accepted(built)
    stream = datasets.load_dataset(built, split="train", streaming=True)
    seen = []
    for row in stream:
        _check_row(row, index)
        seen.append(row["__key__"])
    assert sorted(seen) == sorted(index)


def _snippets(card: str) -> list[str]:
    return re.findall(r"```python\n(.*?)```", card, flags=re.S)


def test_card_snippets_run_as_printed(built, hf_cache, monkeypatch, tmp_path):
    card = Path(built, "README.md").read_text()
    assert "000009" not in card  # the old made-up range; this build has 3 shards
    snippets = _snippets(card)
    assert len(snippets) == 2 and 'wds.WebDataset("shards/mcie-{000000..000002}.tar"' in snippets[1]
    monkeypatch.chdir(built)
    index = _accepted(built)
    cache = repr(str(tmp_path / "w"))
    scope: dict = {}
    exec(compile(snippets[0].replace('"/tmp/wids-cache"', cache), "card-1", "exec"), scope)
    assert scope["ds"].num_rows == len(index) and next(iter(scope["stream"]))["__key__"] in index
    assert len(scope["masks"]) == len(scope["row"]["json"]["sub_edits"])
    scope = {}
    exec(compile(snippets[1].replace('"/tmp/wids-cache"', cache), "card-2", "exec"), scope)
    assert scope["meta"]["key"] in index and len(scope["ds"]) == len(index)
    assert scope["sample"][".json"]  # wids random access


def test_shards_carry_size_and_sha256(built):
    card = Path(built, "README.md").read_text()
    for name in ("shards.json", "rejected.json"):
        desc = json.loads(Path(built, name).read_text())
        assert desc["shardlist"]
        for e in desc["shardlist"]:
            path = os.path.join(built, e["url"])
            data = Path(path).read_bytes()
            assert e["filesize"] == len(data) and e["sha256"] == hashlib.sha256(data).hexdigest()
            assert f"| `{e['url']}` | {e['nsamples']} | {e['filesize']} | `{e['sha256']}` |" in card


def test_brace_pattern_only_for_a_contiguous_run():
    assert brace_pattern(["a/m-000003.tar", "a/m-000004.tar"]) == "a/m-{000003..000004}.tar"
    assert brace_pattern(["a/m-000000.tar"]) == "a/m-000000.tar"
    assert brace_pattern(["a/m-000000.tar", "a/m-000002.tar"]) is None
    assert brace_pattern(["a/m-000000.tar", "b/m-000001.tar"]) is None
    assert brace_pattern([]) is None
