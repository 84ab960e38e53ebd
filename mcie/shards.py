"""WebDataset shards: the member layout, a byte-reproducible tar writer and a reader.

Per sample: ``{key}.src.jpg``, ``{key}.tgt.jpg`` (``.png`` when lossless images are asked for),
``{key}.mask{k}.png`` for k = 0..K-1 (8-bit 0/255, image size, in the JSON's sub-edit order) and
``{key}.json``. Tars are uncompressed (wids memory-maps them), every header has ``mtime=0``,
uid/gid 0 and no user names, and samples are sorted by key, so the same samples always give
the same bytes.
"""

from __future__ import annotations

import io
import json
import os
import stat
import tarfile
from collections.abc import Container, Iterable, Iterator
from typing import IO, Any

import numpy as np

from mcie import storage
from mcie.images import PNG_LEVEL_FAST, decode_image, decode_mask, encode_jpeg, encode_png
from mcie.keys import InvalidKeyError, check_key
from mcie.layout import SHARDS_DIR, BuildLayout
from mcie.records import EditSample


def sample_members(sample: EditSample, lossless: bool = False) -> list[tuple[str, bytes]]:
    """The (member name, bytes) pairs of one sample, in a fixed order."""
    if sample.src is None or sample.tgt is None:
        raise ValueError(f"sample {sample.key} has no images; failed samples go to the index only")
    if "." in sample.key:
        raise ValueError(f"sample key {sample.key!r} contains a dot (WebDataset splits keys there)")
    ext, enc = ("png", encode_png) if lossless else ("jpg", encode_jpeg)
    k = sample.key
    out = [(f"{k}.src.{ext}", enc(sample.src)), (f"{k}.tgt.{ext}", enc(sample.tgt))]
    for i, sub in enumerate(sample.sub_edits):
        if sub.mask is None:
            raise ValueError(f"sample {k}: sub-edit {i} has no mask")
        out.append((f"{k}.mask{i}.png", encode_png(sub.mask, PNG_LEVEL_FAST)))
    out.append((f"{k}.json", json.dumps(sample.to_json(), sort_keys=True).encode()))
    return out


def write_tar(path: str, samples: Iterable[list[tuple[str, bytes]]]) -> int:
    """Write member lists (one per sample, already sorted by key) to ``path`` (local or a
    storage URL) atomically. Returns the number of samples written."""
    with storage.atomic_open(path) as fh:
        return tar_into(fh, samples)


def tar_into(fh: IO[bytes], samples: Iterable[list[tuple[str, bytes]]]) -> int:
    """Stream member lists as a reproducible tar into the writable ``fh``; returns the number
    of samples."""
    n = 0
    with tarfile.open(fileobj=fh, mode="w", format=tarfile.GNU_FORMAT) as tar:
        for members in samples:
            n += 1
            for name, data in members:
                info = tarfile.TarInfo(name)
                info.size, info.mtime, info.mode = len(data), 0, 0o644
                info.uid = info.gid = 0
                info.uname = info.gname = ""
                tar.addfile(info, io.BytesIO(data))
    return n


class ShardError(ValueError):
    """A shard that cannot be read whole: truncated, not a tar, or holding an invalid key.
    The message names the file (and the key where there is one)."""


#: a tar ends with two zero blocks (POSIX): their absence means the file was cut short
_END_OF_ARCHIVE = 2 * tarfile.BLOCKSIZE


def _check_end(path: str, fh, offset: int) -> None:
    """Raise :class:`ShardError` unless two zero blocks follow the last member at ``offset``.

    ``tarfile`` reads a tar cut at a member boundary as a shorter tar, silently; every writer
    (ours, GNU tar, webdataset's) ends a tar with the end-of-archive blocks, so their absence
    is a truncation."""
    fh.seek(offset)
    tail = fh.read(_END_OF_ARCHIVE)
    if len(tail) < _END_OF_ARCHIVE or tail.count(0) != _END_OF_ARCHIVE:
        raise ShardError(
            f"{path}: truncated tar (no end-of-archive marker after byte {offset}; "
            f"file has {storage.size(path)} bytes)"
        )


def check_tar_complete(path: str) -> int:
    """Walk the member headers of ``path`` (data is skipped, not read) and check the tar is
    whole; returns the number of members. Raises :class:`ShardError` naming the file."""
    n = 0
    seen, cap = _SeenKeys(path), max_member_bytes()
    try:
        total = storage.size(path)
        with _open_shard(path) as fh, tarfile.open(fileobj=fh, mode="r:") as tar:
            for info in tar:
                if info.offset_data + info.size > total:
                    raise ShardError(f"{path}: truncated tar (member {info.name} is cut short)")
                if info.isfile():
                    seen.member(info.name)
                    _check_member(path, info, cap)
                else:
                    _check_other(path, info)
                n += 1
            _check_end(path, fh, tar.offset)
    except tarfile.TarError as exc:
        raise ShardError(f"{path}: unreadable tar ({exc})") from exc
    return n


def _open_shard(path: str):
    """Open a shard for reading; a local path must be a regular file (a FIFO or a device named
    as a shard would block the reader forever)."""
    if not storage.is_remote(path):
        local = path[len("file://") :] if path.startswith("file://") else path
        try:
            mode = os.stat(local).st_mode
        except OSError as exc:
            raise ShardError(f"{path}: cannot read the shard ({exc.strerror})") from exc
        if not stat.S_ISREG(mode):
            raise ShardError(f"{path}: not a regular file ({storage.file_kind(mode)}); a shard is a tar file")
    return storage.open_read(path)


#: the largest member a reader takes into memory (bytes): a sample's image, mask or JSON is
#: far smaller (a 4096 x 4096 RGB PNG is under 50 MiB); a bigger member is a damaged or hostile
#: shard, not a sample. ``MCIE_MAX_MEMBER_BYTES`` raises it.
MAX_MEMBER_BYTES = 256 * 1024 * 1024
ENV_MAX_MEMBER_BYTES = "MCIE_MAX_MEMBER_BYTES"


def max_member_bytes() -> int:
    """The member size cap in force (:data:`MAX_MEMBER_BYTES` or ``$MCIE_MAX_MEMBER_BYTES``)."""
    raw = os.environ.get(ENV_MAX_MEMBER_BYTES)
    if not raw:
        return MAX_MEMBER_BYTES
    try:
        return int(raw)
    except ValueError:
        raise ShardError(f"{ENV_MAX_MEMBER_BYTES}={raw!r} is not a number of bytes") from None


def _check_member(path: str, info: tarfile.TarInfo, cap: int) -> None:
    """Refuse a member no sample has: a sparse file (a few KB on disk that read as gigabytes)
    or one larger than ``cap``."""
    if info.issparse():
        raise ShardError(
            f"{path}: member {info.name[:120]!r} is a sparse file ({info.size} bytes); not a sample"
        )
    if info.size > cap:
        raise ShardError(
            f"{path}: member {info.name[:120]!r} has {info.size} bytes, over the {cap}-byte cap "
            f"(set {ENV_MAX_MEMBER_BYTES} to raise it)"
        )


def _check_other(path: str, info: tarfile.TarInfo) -> None:
    """A member that is not a file: a folder entry is passed over (``tar`` writes them); a
    link, a device or a FIFO is no part of a sample and is refused."""
    if not info.isdir():
        raise ShardError(f"{path}: member {info.name[:120]!r} is not a regular file; not a sample")


class _SeenKeys:
    """Member names and sample keys met so far in one shard. A sample's members are
    contiguous in every writer's tars, so a key that comes back after another key, or a
    member name met twice, is a repeated sample: it would be read as two samples (two
    benchmark sets, trained on twice) or silently overwrite its first copy."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.names: set[str] = set()
        self.keys: set[str] = set()
        self.current: str | None = None

    def member(self, name: str) -> None:
        key = name.partition(".")[0]
        if name in self.names or (key != self.current and key in self.keys):
            raise ShardError(
                f"{self.path}: sample key {key[:80]!r} appears more than once in the shard "
                f"(member {name[:120]!r} repeated); a sample is one contiguous run of members"
            )
        self.names.add(name)
        self.keys.add(key)
        self.current = key


def read_tar(path: str, keys: Container[str] | None = None) -> Iterator[tuple[str, dict[str, bytes]]]:
    """Yield ``(key, {suffix: bytes})`` per sample of a shard, in file order; a key is
    everything before the first dot of a member name, as in WebDataset. With ``keys``, only
    those samples are yielded and the other members' bytes are never read (every key is still
    checked, and the tar's end too).

    A key of the wrong shape (:mod:`mcie.keys`) or a truncated tar raises :class:`ShardError`
    naming the file: a damaged shard is an error, never a shorter shard."""
    current: str | None = None
    members: dict[str, bytes] = {}
    seen, cap = _SeenKeys(path), max_member_bytes()
    try:
        with _open_shard(path) as fh, tarfile.open(fileobj=fh, mode="r:") as tar:
            for info in tar:
                if not info.isfile():
                    _check_other(path, info)
                    continue
                seen.member(info.name)
                _check_member(path, info, cap)  # before a single byte of it is read
                key, _, suffix = info.name.partition(".")
                if key != current and current is not None and members:
                    yield current, members
                    members = {}
                if key != current:
                    try:
                        check_key(key, path)
                    except InvalidKeyError as exc:
                        raise ShardError(str(exc)) from exc
                current = key
                if keys is None or key in keys:
                    members[suffix] = tar.extractfile(info).read()
            _check_end(path, fh, tar.offset)
    except tarfile.TarError as exc:
        raise ShardError(f"{path}: unreadable tar ({exc})") from exc
    if current is not None and members:
        yield current, members


def shard_paths(out: str, shard_dir: str = SHARDS_DIR) -> list[str]:
    """The tars of ``out/shard_dir`` (local or a storage URL), sorted; ``out`` is escaped, so
    a folder name with glob characters cannot widen the match."""
    return storage.glob(BuildLayout(out).shards_pattern(shard_dir))


def image_ext(members: dict[str, bytes]) -> str:
    """``png`` for a lossless build's sample, else ``jpg``."""
    return "png" if "src.png" in members else "jpg"


def decode_sample(
    members: dict[str, bytes],
) -> tuple[dict[str, Any], np.ndarray, np.ndarray, list[np.ndarray]]:
    """A sample's JSON, source, target and masks (in sub-edit order) from its members as
    :func:`read_tar` yields them. Check untrusted samples first (:func:`mcie.validate.check_sample`)."""
    meta = json.loads(members["json"])
    ext = image_ext(members)
    masks = [decode_mask(members[f"mask{k}.png"]) for k in range(len(meta["sub_edits"]))]
    return meta, decode_image(members[f"src.{ext}"]), decode_image(members[f"tgt.{ext}"]), masks


def wids_descriptor(out: str, shard_dir: str, name: str, counts: dict[str, int]) -> dict[str, Any]:
    """A wids ``wids-shard-index-v1`` descriptor; URLs are relative to the JSON's folder. Each
    entry also carries the shard's ``sha256`` (wids ignores keys it does not know), so a
    download can be checked against it."""
    shardlist = []
    for path, size in storage.glob_sizes(BuildLayout(out).shards_pattern(shard_dir)):
        rel = storage.relpath(path, out)
        n = counts.get(rel, 0)
        if n:  # wids cannot index an empty shard
            shardlist.append(
                {"url": rel, "nsamples": n, "filesize": size, "sha256": storage.digest(path).sha256}
            )
    return {
        "__kind__": "wids-shard-index-v1",
        "wids_version": 1,
        "name": name,
        "shardlist": shardlist,
    }
