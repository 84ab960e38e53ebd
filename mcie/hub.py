"""What makes a build folder load with Hugging Face ``datasets`` as it is.

``datasets``' WebDataset loader infers one schema from the first few samples, and ours carry 2-5
``mask{k}.png`` members, so inference fails ("files in the archive don't share the same prefix or
the same types"). We keep the layout (webdataset and wids read it, and a sample's masks stay
members of its own) and declare the schema instead: the card's YAML front matter lists the
configs with their shard files and the features, every mask slot typed as an 8-bit single-channel
image (``Image(mode="L")``), so a slot a sample does not use comes back ``None``; the JSON member
is ``Json()``. The same front matter is what the Hub reads.

Nothing here imports ``datasets``: the card is written by every build, the loader is optional.
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any

from mcie.layout import REJECTED_DIR, SHARDS_DIR, WIDS_FILES

# DESIGN.md: a complex instruction has 2-5 sub-instructions, so a sample has at most five masks
MASK_SLOTS = 5

# a config name of the front matter → the wids descriptor that lists its shards
CONFIGS = (("default", WIDS_FILES[SHARDS_DIR]), ("rejected", WIDS_FILES[REJECTED_DIR]))


def file_sha256(path: str, chunk: int = 1 << 20) -> str:
    """Hex SHA-256 of a file, read in 1 MiB chunks (shards are large)."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def features(ext: str, slots: int = MASK_SLOTS) -> list[tuple[str, Any]]:
    """The ``datasets`` features of one shard sample as (member, dtype) pairs in the YAML form
    of ``DatasetInfo``: images for source and target, an L-mode image per mask slot, JSON."""
    mask = {"image": {"mode": "L"}}
    return [
        ("__key__", "string"),
        ("__url__", "string"),
        (f"src.{ext}", "image"),
        (f"tgt.{ext}", "image"),
        *((f"mask{k}.png", mask) for k in range(slots)),
        ("json", "json"),
    ]


def read_shardlist(out: str, descriptor: str) -> list[dict[str, Any]]:
    """The shard entries (url, nsamples, filesize, sha256) of a wids descriptor in ``out``;
    empty when the descriptor does not exist."""
    from mcie import storage

    path = storage.join(out, descriptor)
    if not storage.exists(path):
        return []
    return list(storage.read_json(path).get("shardlist", []))


def brace_pattern(urls: list[str]) -> str | None:
    """``shards/mcie-{000000..000005}.tar`` when the URLs are one contiguous numbered run (what
    webdataset's brace expansion gives back exactly), else ``None``."""
    m = [re.fullmatch(r"(.*?)(\d+)(\.tar)", u) for u in urls]
    if not urls or not all(m):
        return None
    prefixes = {(x.group(1), x.group(3), len(x.group(2))) for x in m}
    numbers = [int(x.group(2)) for x in m]
    if len(prefixes) != 1 or numbers != list(range(numbers[0], numbers[0] + len(numbers))):
        return None
    (prefix, suffix, width) = prefixes.pop()
    if len(urls) == 1:
        return urls[0]
    return f"{prefix}{{{numbers[0]:0{width}d}..{numbers[-1]:0{width}d}}}{suffix}"


def _yaml_scalar(value: Any) -> str:
    # JSON strings are valid YAML flow scalars, and quote whatever needs it
    return value if re.fullmatch(r"[A-Za-z0-9_./-]+", str(value)) else json.dumps(value)


def front_matter(shardlists: dict[str, list[dict[str, Any]]], ext: str, slots: int = MASK_SLOTS) -> str:
    """The card's YAML front matter (between ``---`` lines): one config per non-empty shard list,
    its files listed one by one, and the features of each."""
    names = [name for name, entries in shardlists.items() if entries]
    lines = ["---", "configs:"]
    for name in names:
        lines += [f"- config_name: {name}", "  data_files:", "  - split: train", "    path:"]
        lines += [f"    - {_yaml_scalar(e['url'])}" for e in shardlists[name]]
        if name == "default":
            lines.append("  default: true")
    lines.append("dataset_info:")
    for name in names:
        lines += [f"- config_name: {name}", "  features:"]
        for member, dtype in features(ext, slots):
            lines.append(f"  - name: {_yaml_scalar(member)}")
            if isinstance(dtype, str):
                lines.append(f"    dtype: {dtype}")
            else:  # {"image": {"mode": "L"}}
                lines += ["    dtype:", "      image:", f"        mode: {dtype['image']['mode']}"]
        lines.append(f"  download_size: {sum(e['filesize'] for e in shardlists[name])}")
    lines += ["license: other", "task_categories:", "- image-to-image", "tags:", "- image-editing", "---", ""]
    return "\n".join(lines)


def loading_snippets(shardlist: list[dict[str, Any]], ext: str, slots: int = MASK_SLOTS) -> str:
    """Python that loads the accepted shards with ``datasets``, ``webdataset`` and ``wids``, from
    the folder that holds the card; names the real shards (never a made-up range)."""
    urls = [e["url"] for e in shardlist]
    pattern = brace_pattern(urls)
    wds_urls = json.dumps(pattern) if pattern else json.dumps(urls)
    files = json.dumps(urls)
    return f"""```python
import os

from datasets import Features, Image, Json, Value, load_dataset

# this folder ("user/name" once on the Hub; datasets needs a folder name, not "."): the front
# matter above gives the files and the features
ds = load_dataset(os.getcwd(), split="train")
stream = load_dataset(os.getcwd(), split="train", streaming=True)

# or the generic loader, with the same features spelled out
features = Features({{"__key__": Value("string"), "__url__": Value("string"),
                     "src.{ext}": Image(), "tgt.{ext}": Image(),
                     **{{f"mask{{k}}.png": Image(mode="L") for k in range({slots})}}, "json": Json()}})
ds = load_dataset("webdataset", data_files={{"train": {files}}},
                  split="train", features=features)
row = ds[0]  # row["mask0.png"] is an 8-bit single-channel PIL image; unused slots are None
masks = [row[f"mask{{k}}.png"] for k in range(len(row["json"]["sub_edits"]))]
```

```python
import webdataset as wds

ds = wds.WebDataset({wds_urls}, shardshuffle=False).decode("pil")
for sample in ds:  # for multi-GPU training add nodesplitter=wds.split_by_node
    src, tgt, meta = sample["src.{ext}"], sample["tgt.{ext}"], sample["json"]
    masks = [sample[f"mask{{k}}.png"] for k in range(len(meta["sub_edits"]))]

import wids

ds = wids.ShardListDataset("shards.json", cache_dir="/tmp/wids-cache")
sample = ds[0]  # random access; keys ".src.{ext}", ".json", ".mask0.png", ...
```"""


def shard_table(shardlists: dict[str, list[dict[str, Any]]]) -> str:
    """A Markdown table of every shard: samples, bytes and SHA-256."""
    rows = ["| shard | samples | bytes | sha256 |", "|---|---|---|---|"]
    for entries in shardlists.values():
        rows += [
            f"| `{e['url']}` | {e['nsamples']} | {e['filesize']} | `{e.get('sha256', '')}` |" for e in entries
        ]
    return "\n".join(rows) if len(rows) > 2 else "(no shards)"
