"""One sample validator: the checks ``mcie audit`` makes on a shard sample, used by every
reader that trusts a sample's members (``train``, ``bench build --from``, ``ls export``,
``ls shard``).

A sample read from a shard is untrusted: its key must have our keys' shape, its JSON must parse
with a list of sub-edits, its source and target must decode to images of equal size, there must
be one mask per sub-edit (``mask0.png`` … in order), and each mask must be a PNG of image size,
8-bit grey (``L``) or 1-bit, holding only 0 and 255 (or 0/1).
"""

from __future__ import annotations

import dataclasses
import io
import json
import re
from typing import Any

import numpy as np
from PIL import Image

from mcie.images import decode_image
from mcie.keys import is_valid_key

#: PIL modes a mask PNG may have: 8-bit grey as we write it, or 1-bit
MASK_MODES = ("L", "1")


#: the member suffixes of a sample (DESIGN.md, "Shard members")
MEMBER_PATTERN = re.compile(r"(src|tgt)\.(jpg|png)|mask[0-9]{1,2}\.png|json")


class SampleError(ValueError):
    """A sample that breaks the shard format; the message names where it was read and the key."""


@dataclasses.dataclass
class CheckedSample:
    """What validating a sample decoded: its problems (empty when valid), JSON (None when it
    does not parse), source and target (H, W, 3) and masks (H, W) ``bool``, in sub-edit order
    (None where not decoded), so a reader that goes on needs no second decode."""

    problems: list[str]
    meta: dict[str, Any] | None = None
    src: np.ndarray | None = None
    tgt: np.ndarray | None = None
    masks: list[np.ndarray] | None = None


def _mask(data: bytes, size: tuple[int, int]) -> tuple[str | None, np.ndarray | None]:
    try:
        with Image.open(io.BytesIO(data)) as im:
            if im.format != "PNG":
                return f"is {im.format}, not PNG", None
            if im.mode not in MASK_MODES:
                return f"has mode {im.mode}, not 8-bit grey", None
            if im.size != size:
                return f"is {im.size[0]}x{im.size[1]}, the images {size[0]}x{size[1]}", None
            grey = np.asarray(im.convert("L"))
    except Exception as exc:
        return f"unreadable ({type(exc).__name__}: {exc})", None
    inside = grey > 127
    if np.count_nonzero(grey[~inside]) or np.count_nonzero(grey[inside] != 255):
        values = np.unique(grey).tolist()
        return f"holds values other than 0 and 255 ({values[:4]}...)", None
    return None, inside


#: JSON fields readers turn into typed columns (bench sets, the index, Label Studio tasks):
#: a wrong type there would surface later as a bare ``ArrowTypeError`` naming no sample
_TEXT_FIELDS = ("source_hash", "instruction")
_SUB_TEXT_FIELDS = ("edit_type", "instruction")


def _check_json_types(meta: Any) -> None:
    """Raise ``TypeError`` naming the first field of ``meta`` (a sample's JSON) whose type is
    not the one we write."""
    for f in _TEXT_FIELDS:
        if not isinstance(meta.get(f), str):
            raise TypeError(f"{f} is {type(meta.get(f)).__name__}, not a string")
    for k, sub in enumerate(meta["sub_edits"]):
        if not isinstance(sub, dict):
            raise TypeError(f"sub_edits[{k}] is {type(sub).__name__}, not an object")
        for f in _SUB_TEXT_FIELDS:
            if not isinstance(sub.get(f), str):
                raise TypeError(f"sub_edits[{k}].{f} is {type(sub.get(f)).__name__}, not a string")
    if not isinstance(meta.get("scores", {}), dict):
        raise TypeError(f"scores is {type(meta['scores']).__name__}, not an object")


def check_members(key: str, members: dict[str, bytes]) -> CheckedSample:
    """Validate one sample (``{suffix: bytes}`` as :func:`mcie.shards.read_tar` yields) and
    keep what was decoded (see :class:`CheckedSample`)."""
    if not is_valid_key(key):
        return CheckedSample([f"invalid sample key {key[:80]!r}"])
    odd = sorted(n for n in members if not MEMBER_PATTERN.fullmatch(n))
    if odd:  # member names become file names (ls export): only the known ones pass
        return CheckedSample([f"{key}: unexpected members {[n[:40] for n in odd[:3]]}"])
    try:
        meta = json.loads(members["json"])
        subs = meta["sub_edits"]
        if not isinstance(subs, list):
            raise TypeError("sub_edits is not a list")
        _check_json_types(meta)
    except Exception as exc:
        return CheckedSample([f"{key}: unreadable JSON member ({type(exc).__name__}: {exc})"])
    ext = "png" if "src.png" in members else "jpg"
    try:
        src, tgt = decode_image(members[f"src.{ext}"]), decode_image(members[f"tgt.{ext}"])
    except Exception as exc:
        return CheckedSample([f"{key}: unreadable image member ({type(exc).__name__}: {exc})"], meta)
    checked = CheckedSample([], meta, src, tgt)
    if src.shape != tgt.shape:
        (h, w), (th, tw) = src.shape[:2], tgt.shape[:2]
        checked.problems.append(f"{key}: source {w}x{h} and target {tw}x{th} differ")
    k = len(subs)
    mask_names = sorted(n for n in members if n.startswith("mask"))
    if mask_names != sorted(f"mask{i}.png" for i in range(k)):
        checked.problems.append(f"{key}: {len(mask_names)} masks for {k} sub-edits")
        return checked
    size = (src.shape[1], src.shape[0])
    masks = []
    for i in range(k):
        problem, mask = _mask(members[f"mask{i}.png"], size)
        if problem:
            checked.problems.append(f"{key}: mask{i}.png {problem}")
        masks.append(mask)
    checked.masks = masks
    return checked


def sample_problems(key: str, members: dict[str, bytes]) -> tuple[list[str], dict[str, Any] | None]:
    """The problems of one sample (``{suffix: bytes}`` as :func:`mcie.shards.read_tar` yields)
    and its parsed JSON (None when it does not parse)."""
    checked = check_members(key, members)
    return checked.problems, checked.meta


def check_sample(key: str, members: dict[str, bytes], where: str) -> dict[str, Any]:
    """Validate one sample read from ``where`` (a shard path); returns its parsed JSON or raises
    :class:`SampleError` naming ``where`` and the key with every problem found."""
    problems, meta = sample_problems(key, members)
    if problems:
        raise SampleError(f"{where}: bad sample: " + "; ".join(problems))
    assert meta is not None
    return meta
