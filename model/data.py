"""WebDataset loader over MCIE shards for training MCIE-E1.

Each sample gives: ``src`` / ``tgt`` (3, R, R) in [-1, 1]; ``regions`` (K, R, R) in {0, 1},
one per sub-edit (zeros past the sample's count); ``n_sub``; ``input_ids`` (L,) of the complex
instruction and ``sub_ids`` (K, L) of each sub-instruction ("" past the count); ``key``.
K is the config's ``max_sub_edits``: a sample with more sub-edits keeps the first K (the
synthetic grammar writes at most 5, the default K).

Resizing (our choice): the shorter side goes to R and the centre R x R square is kept, with the
same box for source, target and masks; masks are max-pooled (any masked pixel marks its cell),
so a region never vanishes at low resolution.

Shards are untrusted: every shard is checked whole before training starts (a truncated tar is
a :class:`~mcie.shards.ShardError` naming the file, never a shorter epoch), and every sample
goes through the one sample validator (:mod:`mcie.validate`: key shape, members, PNG masks of
image size, equal source/target sizes). A bad sample is skipped with a warning naming the shard,
the key and its problems, and counted: each decoded sample carries ``skipped``, the number of
bad samples its loader worker skipped since the previous good one, so summing it over batches
counts them all, whatever the number of loader workers.
"""

from __future__ import annotations

import logging
import os

import numpy as np
import torch
import torch.nn.functional as F
import webdataset as wds
from PIL import Image
from webdataset.gopen import gopen_schemes  # the module: wds.gopen is its function

from mcie import storage
from mcie.shards import check_tar_complete
from mcie.validate import check_members

log = logging.getLogger(__name__)


def expand_shards(pattern: str) -> list[str]:
    """Shard paths from a glob (or a comma-separated list of globs), sorted; error if none.
    A glob may be local or a storage URL (``gs://bucket/run/shards/*.tar``)."""
    paths: list[str] = []
    for part in pattern.split(","):
        part = part.strip()
        paths += storage.glob(part if storage.is_remote(part) else os.path.expanduser(part))
    paths = sorted(set(p for p in paths if p.endswith(".tar")))
    if not paths:
        raise FileNotFoundError(f"no .tar shards match {pattern!r}")
    return paths


def _gopen_storage(url: str, mode: str = "rb", bufsize: int = 8192, **kw):
    """webdataset's opener for ``gs://`` and ``s3://`` shards: read through :mod:`mcie.storage`
    (Beam's filesystems) instead of webdataset's default ``gsutil`` / ``aws`` pipes."""
    if mode != "rb":
        raise ValueError(f"shards are read only, not opened with mode {mode!r}: {url}")
    return storage.open_read(url)


# webdataset's documented extension point: one opener per URL scheme
for _scheme in ("gs", "s3"):
    gopen_schemes[_scheme] = _gopen_storage


def _crop_box(w: int, h: int) -> tuple[int, int, int, int]:
    s = min(w, h)
    x0, y0 = (w - s) // 2, (h - s) // 2
    return (x0, y0, x0 + s, y0 + s)


def resize_image(a: np.ndarray, res: int) -> torch.Tensor:
    """(H, W, 3) uint8 → (3, R, R) float in [-1, 1]: centre square, bicubic."""
    im = Image.fromarray(a).crop(_crop_box(a.shape[1], a.shape[0])).resize((res, res), Image.BICUBIC)
    x = torch.from_numpy(np.asarray(im, dtype=np.float32)).permute(2, 0, 1)  # (3, R, R)
    return x / 127.5 - 1.0


def resize_mask(a: np.ndarray, res: int) -> torch.Tensor:
    """(H, W) mask → (R, R) float in {0, 1}: centre square, max-pooled (nearest when enlarging)."""
    x0, y0, x1, y1 = _crop_box(a.shape[1], a.shape[0])
    m = torch.from_numpy((a[y0:y1, x0:x1] > 0).astype(np.float32))[None, None]  # (1, 1, S, S)
    if m.shape[-1] >= res:  # any masked pixel marks its cell: max-pooling
        return F.adaptive_max_pool2d(m, res)[0, 0]  # (R, R)
    return F.interpolate(m, size=(res, res), mode="nearest")[0, 0]


def check_shards(urls: list[str]) -> None:
    """Raise :class:`~mcie.shards.ShardError` naming the first shard that is not a whole tar
    (headers only are read: cheap next to an epoch)."""
    for url in urls:
        check_tar_complete(url)


class SampleDecoder:
    """Shard member dict → training tensors (picklable, so DataLoader workers can run it); a
    sample that fails the sample validator → None (webdataset's ``map`` drops it), counted in
    ``skipped`` and reported in the next good sample's ``skipped``."""

    def __init__(self, tokenizer, resolution: int, max_sub_edits: int, sub_length: int | None = None) -> None:
        self.tokenizer, self.resolution, self.k = tokenizer, resolution, max_sub_edits
        self.sub_length = sub_length  # None: the tokenizer's length, as the complex instruction
        self.skipped = 0  # bad samples seen by this copy (one per loader worker)
        self._unreported = 0

    def _ids(self, texts: list[str], length: int | None = None) -> torch.Tensor:
        from mcie.model.tokenizer import token_ids

        return token_ids(self.tokenizer, texts, length)

    def __call__(self, sample: dict) -> dict | None:
        key = sample["__key__"]
        members = {k: v for k, v in sample.items() if not k.startswith("__")}
        checked = check_members(key, members)  # decodes once: the images and masks are kept
        problems, meta = checked.problems, checked.meta
        if problems:
            self.skipped += 1
            self._unreported += 1
            log.warning(
                "training skips a bad sample of %s: %s", sample.get("__url__", "?"), "; ".join(problems)
            )
            return None
        src, tgt = checked.src, checked.tgt
        skipped, self._unreported = self._unreported, 0
        subs = meta["sub_edits"][: self.k]
        r = self.resolution
        regions = torch.zeros(self.k, r, r)
        for i in range(len(subs)):
            regions[i] = resize_mask(checked.masks[i], r)
        texts = [s["instruction"] for s in subs] + [""] * (self.k - len(subs))
        return {
            "key": key,
            "src": resize_image(src, r),
            "tgt": resize_image(tgt, r),
            "regions": regions,
            "n_sub": len(subs),
            "input_ids": self._ids([meta["instruction"]])[0],
            "sub_ids": self._ids(texts, self.sub_length),
            "skipped": skipped,
        }


def shard_dataset(
    shards: str | list[str],
    tokenizer,
    resolution: int,
    max_sub_edits: int,
    shuffle_buffer: int = 64,
    seed: int = 0,
    repeat: bool = True,
    sub_length: int | None = None,
) -> wds.WebDataset:
    """The sample stream: shards shuffled (``shardshuffle``) and split across nodes
    (``split_by_node``) and workers, samples shuffled in a buffer (0: no shuffling, file order).
    ``sub_length``: tokens per sub-instruction (the model's ``cfg.sub_length``)."""
    urls = expand_shards(shards) if isinstance(shards, str) else list(shards)
    check_shards(urls)  # webdataset reads a tar cut at a member boundary as a shorter tar
    ds = wds.WebDataset(
        urls,
        shardshuffle=len(urls) if shuffle_buffer else False,
        nodesplitter=wds.split_by_node,
        workersplitter=wds.split_by_worker,
        seed=seed,
        empty_check=False,
    )
    if repeat:  # WebDataset(repeat=True) does not loop in webdataset 1.0.x; .repeat() does
        ds = ds.repeat()
    if shuffle_buffer:
        ds = ds.shuffle(shuffle_buffer, seed=seed)
    return ds.map(SampleDecoder(tokenizer, resolution, max_sub_edits, sub_length))


def shard_loader(
    shards: str | list[str],
    tokenizer,
    resolution: int,
    max_sub_edits: int,
    batch_size: int,
    workers: int = 0,
    shuffle_buffer: int = 64,
    seed: int = 0,
    repeat: bool = True,
    sub_length: int | None = None,
) -> torch.utils.data.DataLoader:
    """A DataLoader of batches (dict of stacked tensors; ``key`` a list) over the shards."""
    ds = shard_dataset(shards, tokenizer, resolution, max_sub_edits, shuffle_buffer, seed, repeat, sub_length)
    return torch.utils.data.DataLoader(
        ds.batched(batch_size, partial=True), batch_size=None, num_workers=workers
    )
