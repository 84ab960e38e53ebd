"""Real images as pipeline inputs: list them, read them, and normalise them — or say why not.

Inputs are listed from a folder (recursively), a glob, or a Parquet/CSV list of paths or URLs,
through Beam's :class:`~apache_beam.io.filesystems.FileSystems` so ``gs://`` and ``s3://`` work
wherever Beam has that filesystem installed; ``http(s)://`` entries are fetched with urllib.

Local folders and globs are walked here, not by Beam's matcher, so that nothing listed
vanishes: a dangling symlink or a symlink loop with an image name is listed like any file and
fails to read with ``source_unreadable`` and a message saying which; a sub-folder that cannot
be listed is listed itself (and fails the same way); a folder reached again through a
symlink is walked once. A file name that is not valid UTF-8 is read under its real name; the
index shows it with its undecodable bytes as ``\\xNN`` (:func:`display_name`), as ``ls -b``
does, since Parquet strings must be UTF-8.

Every listed input becomes exactly one :class:`LoadedImage`: either pixels or a failure with a
reason code (``source_unreadable``: empty, truncated, not an image, undecodable mode;
``source_refused``: over the byte, pixel or side limits, or a decompression bomb). The
pipeline turns each failure into a ``failed`` index row, so every input file is accounted for.

Choices (ours: the paper is silent on them):

* EXIF orientation is applied (``ImageOps.exif_transpose``) before anything else.
* Animated images (GIF, APNG, WebP) use their first frame; the frame count is kept.
* Transparent images (RGBA, LA, palette with transparency) are composited on white.
* 16-bit and 32-bit greyscale (``I;16``, ``I``) are scaled to 8 bits by their full range
  (65535), not clipped (Pillow's ``convert("L")`` clips at 255); CMYK uses Pillow's conversion.
* Resize policy: downscale (never upscale) so the short side is ``short_side``, Lanczos; then
  centre-crop each side down to a multiple of ``multiple`` (latent diffusion needs /8).
  Images whose short side is below ``min_side`` are refused.
"""

from __future__ import annotations

import csv
import dataclasses
import errno
import fnmatch
import hashlib
import io
import os
import urllib.request
import warnings
from collections.abc import Iterable

import numpy as np
from PIL import Image, ImageFile, ImageOps

from mcie import extras
from mcie.exitcodes import UsageError
from mcie.reasons import Reason

#: image file extensions a folder listing picks up (lower case)
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".gif", ".webp", ".bmp", ".tif", ".tiff", ".ppm", ".pgm")
#: column names looked for in a Parquet/CSV list, in order
LIST_COLUMNS = ("path", "url", "image", "file", "filename")

#: the bundled sample photographs (scikit-image's data folder: public-domain or CC-licensed
#: photos, see skimage/data/README.txt)
SAMPLE_PHOTOS = (
    "astronaut.png",
    "camera.png",
    "chelsea.png",
    "coffee.png",
    "motorcycle_left.png",
    "rocket.jpg",
)


@dataclasses.dataclass(frozen=True)
class ImageSourceConfig:
    """Limits and the resize policy for real images.

    ``max_bytes``: largest file read; ``max_pixels``: largest decoded frame (width × height) —
    anything bigger is refused before decoding, like Pillow's decompression-bomb guard;
    ``max_side``: largest width or height; ``short_side``: the short side after the downscale;
    ``multiple``: both sides are cropped to a multiple of this; ``min_side``: smallest short side
    accepted (after cropping)."""

    max_bytes: int = 64 * 1024 * 1024
    max_pixels: int = 64_000_000
    max_side: int = 20_000
    short_side: int = 512
    multiple: int = 8
    min_side: int = 32

    def __post_init__(self) -> None:
        if min(self.max_bytes, self.max_pixels, self.max_side, self.short_side, self.multiple) < 1:
            raise ValueError(f"image source limits must be positive, got {self}")
        if self.min_side > self.short_side:
            raise ValueError(f"min_side {self.min_side} > short_side {self.short_side}")


@dataclasses.dataclass
class LoadedImage:
    """One input: ``pixels`` (uint8 H×W×3) or ``reason`` + ``error`` saying why not.

    ``source_hash`` is a hash of the file bytes (empty when unreadable); ``info`` has the
    original size, mode, format, frame count and EXIF orientation."""

    path: str
    pixels: np.ndarray | None
    source_hash: str = ""
    reason: Reason | None = None
    error: str = ""
    info: dict = dataclasses.field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.pixels is not None


# -- listing -------------------------------------------------------------------------------
def sample_photo_paths() -> list[str]:
    """Paths of the bundled sample photographs (needs the ``model`` extra: scikit-image)."""
    extras.require("model", "the bundled sample photographs (scikit-image)", ["skimage"])
    import skimage

    folder = os.path.join(os.path.dirname(skimage.__file__), "data")
    return [os.path.join(folder, n) for n in SAMPLE_PHOTOS]


def _is_remote(path: str) -> bool:
    return "://" in path


def _match(pattern: str) -> list[str]:
    from apache_beam.io.filesystems import FileSystems

    results = FileSystems.match([pattern])
    return sorted(m.path for r in results for m in r.metadata_list)


def list_inputs(spec: str) -> list[str]:
    """The input files named by ``spec``: a folder (recursive, image extensions only), a glob,
    a ``.parquet``/``.csv`` list (column ``path``/``url``/...; relative paths are relative to the
    list's folder), or one file. Sorted, de-duplicated. Raises :class:`UsageError` when it names
    nothing."""
    from apache_beam.io.filesystems import FileSystems

    low = spec.lower()
    if low.endswith((".parquet", ".csv")):
        if not FileSystems.exists(spec):
            raise UsageError(f"--images: list {spec!r} does not exist")
        paths = _read_list(spec)
    elif any(c in spec for c in "*?["):
        paths = _match(spec) if _is_remote(spec) else glob_local(spec)
    elif not _is_remote(spec) and os.path.isdir(spec):
        files, unlisted = walk_local(spec)
        paths = [p for p in files if p.lower().endswith(IMAGE_EXTENSIONS)] + unlisted
    elif _is_remote(spec) and spec.endswith("/"):
        paths = [p for p in _match(spec.rstrip("/") + "/**") if p.lower().endswith(IMAGE_EXTENSIONS)]
    elif FileSystems.exists(spec):
        paths = [spec]
    else:
        raise UsageError(f"--images: {spec!r} is not a folder, glob, list or file")
    paths = sorted(set(paths))
    if not paths:
        raise UsageError(f"--images: {spec!r} names no image files")
    return paths


def walk_local(top: str, max_depth: int | None = None) -> tuple[list[str], list[str]]:
    """``(entries, unlisted)`` under the local folder ``top``: every entry that is not a folder
    (files, and symlinks that do not lead to a folder: dangling ones and loops included),
    recursively, sorted by name per folder; and the sub-folders that could not be listed.
    A folder reached again (a symlink back up the tree) is not walked twice. ``max_depth``:
    how many folder levels below ``top`` to enter (None: all)."""
    entries: list[str] = []
    unlisted: list[str] = []
    seen: set[tuple[int, int]] = set()

    def visit(folder: str, depth: int) -> None:
        try:
            st = os.stat(folder)
            if (st.st_dev, st.st_ino) in seen:
                return  # a symlink loop back to a folder already walked
            seen.add((st.st_dev, st.st_ino))
            with os.scandir(folder) as it:
                listing = sorted(it, key=lambda e: e.name)
        except OSError:
            unlisted.append(folder)
            return
        for e in listing:
            try:
                is_dir = e.is_dir()  # follows a symlink; False when it dangles or loops
            except OSError:
                is_dir = False
            if not is_dir:
                entries.append(e.path)
            elif max_depth is None or depth < max_depth:
                visit(e.path, depth + 1)

    visit(top, 0)
    return entries, unlisted


def glob_local(pattern: str) -> list[str]:
    """Local paths matching ``pattern`` as :func:`glob.glob` with ``recursive=True`` would
    (``*`` within a name, ``**`` any depth, names starting with a dot only when the pattern
    does), but walked by :func:`walk_local`: dangling symlinks and symlink loops are kept,
    symlinked folders are walked once, an unlistable folder under the pattern's fixed part is
    returned itself."""
    parts = pattern.split(os.sep)
    fixed = next(i for i, p in enumerate(parts) if any(c in p for c in "*?["))
    base = os.sep.join(parts[:fixed]) or (os.sep if pattern.startswith(os.sep) else ".")
    rest = parts[fixed:]
    if not os.path.isdir(base):
        return []
    depth = None if "**" in rest else len(rest) - 1
    entries, unlisted = walk_local(base, depth)
    prefix = "" if base == "." and not pattern.startswith(".") else base
    found = []
    for path in entries:
        rel = os.path.relpath(path, base).split(os.sep)
        if _match_parts(rest, rel):
            found.append(os.path.join(prefix, *rel) if prefix else os.path.join(*rel))
    return found + unlisted


def _match_parts(pattern: list[str], names: list[str]) -> bool:
    if not pattern:
        return not names
    if pattern[0] == "**":
        return any(_match_parts(pattern[1:], names[i:]) for i in range(len(names) + 1))
    if not names or (names[0].startswith(".") and not pattern[0].startswith(".")):
        return False
    return fnmatch.fnmatchcase(names[0], pattern[0]) and _match_parts(pattern[1:], names[1:])


def display_name(path: str) -> str:
    """``path`` as valid UTF-8 text: a name read from disk that is not UTF-8 holds surrogate
    escapes (:func:`os.fsdecode`); they are shown as ``\\xNN``, as ``ls -b`` does."""
    try:
        path.encode("utf-8")
        return path
    except UnicodeEncodeError:
        return path.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def _read_list(spec: str) -> list[str]:
    from apache_beam.io.filesystems import FileSystems

    with FileSystems.open(spec) as fh:
        data = fh.read()
    if spec.lower().endswith(".parquet"):
        import pyarrow.parquet as pq

        table = pq.read_table(io.BytesIO(data))
        names = table.column_names
        col = next((c for c in LIST_COLUMNS if c in names), names[0] if names else None)
        values = [] if col is None else table.column(col).to_pylist()
    else:
        rows = list(csv.reader(io.StringIO(data.decode("utf-8-sig"))))
        header = [h.strip().lower() for h in rows[0]] if rows else []
        col_i = next((header.index(c) for c in LIST_COLUMNS if c in header), None)
        body = rows[1:] if col_i is not None else rows
        values = [r[col_i or 0] for r in body if r]
    base = os.path.dirname(spec)
    out = []
    for v in values:
        v = (v or "").strip()
        if v:
            out.append(v if _is_remote(v) or os.path.isabs(v) else os.path.join(base, v))
    return out


# -- reading -------------------------------------------------------------------------------
def read_bytes(path: str, max_bytes: int) -> bytes:
    """The file's bytes, at most ``max_bytes + 1`` of them (so an oversize file is detected
    without reading it all)."""
    if path.startswith(("http://", "https://")):
        with urllib.request.urlopen(path, timeout=60) as resp:  # noqa: S310 - user-given list
            return resp.read(max_bytes + 1)
    if not _is_remote(path):
        with open(path, "rb") as fh:
            return fh.read(max_bytes + 1)
    from apache_beam.io.filesystems import FileSystems  # gs://, s3://, ...

    with FileSystems.open(path, mime_type="application/octet-stream", compression_type="uncompressed") as fh:
        return fh.read(max_bytes + 1)


class ImageLoader:
    """Reads and normalises inputs under an :class:`ImageSourceConfig`; never raises for a bad
    file (it becomes a :class:`LoadedImage` with a reason)."""

    def __init__(self, config: ImageSourceConfig | None = None) -> None:
        self.config = config or ImageSourceConfig()

    def load(self, path: str) -> LoadedImage:
        """Read and normalise one input."""
        try:
            data = read_bytes(path, self.config.max_bytes)
        except Exception as exc:
            return _failed(path, Reason.SOURCE_UNREADABLE, f"cannot read: {_why(path, exc)}")
        if len(data) > self.config.max_bytes:
            return _failed(path, Reason.SOURCE_REFUSED, f"file larger than max_bytes={self.config.max_bytes}")
        return self.load_bytes(path, data)

    def load_bytes(self, path: str, data: bytes) -> LoadedImage:
        """Decode and normalise ``data`` read from ``path``."""
        digest = hashlib.blake2b(data, digest_size=16).hexdigest() if data else ""
        if not data:
            return _failed(path, Reason.SOURCE_UNREADABLE, "empty file", digest)
        try:
            pixels, info = self._decode(data)
        except _Refused as exc:
            return _failed(path, Reason.SOURCE_REFUSED, str(exc), digest)
        except Exception as exc:
            return _failed(path, Reason.SOURCE_UNREADABLE, f"{type(exc).__name__}: {exc}", digest)
        return LoadedImage(path, pixels, digest, info=info)

    def load_many(self, paths: Iterable[str]) -> list[LoadedImage]:
        return [self.load(p) for p in paths]

    # -- internals ---------------------------------------------------------------------------
    def _decode(self, data: bytes) -> tuple[np.ndarray, dict]:
        c = self.config
        # Pillow raises DecompressionBombError only above 2x its global limit and warns below;
        # we check the header size against our own limit first and turn the warning into an error.
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            try:
                img = Image.open(io.BytesIO(data))
            except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
                raise _Refused(f"decompression bomb: {exc}") from exc
            with img:
                w, h = img.size
                if w * h > c.max_pixels:
                    raise _Refused(f"{w}x{h} = {w * h} pixels > max_pixels={c.max_pixels}")
                if max(w, h) > c.max_side:
                    raise _Refused(f"{w}x{h}: a side is longer than max_side={c.max_side}")
                frames = int(getattr(img, "n_frames", 1))
                info = {"width": w, "height": h, "mode": img.mode, "format": img.format, "frames": frames}
                img.seek(0)
                # a truncated file must fail, not decode as grey (Pillow's default is strict, but
                # a library elsewhere in the process may have flipped the global)
                ImageFile.LOAD_TRUNCATED_IMAGES = False
                img.load()
                orientation = img.getexif().get(0x0112, 1)
                info["exif_orientation"] = int(orientation)
                img = ImageOps.exif_transpose(img)
                rgb = to_rgb(img)
        return self._resize(rgb), info

    def _resize(self, rgb: Image.Image) -> np.ndarray:
        c = self.config
        w, h = rgb.size
        short = min(w, h)
        if short > c.short_side:
            scale = c.short_side / short
            w, h = max(round(w * scale), 1), max(round(h * scale), 1)
            rgb = rgb.resize((w, h), Image.Resampling.LANCZOS)
        cw, ch = w - w % c.multiple, h - h % c.multiple
        if min(cw, ch) < c.min_side:
            raise _Refused(f"{w}x{h} is smaller than min_side={c.min_side} (after cropping to /{c.multiple})")
        x0, y0 = (w - cw) // 2, (h - ch) // 2
        arr = np.asarray(rgb, dtype=np.uint8)[y0 : y0 + ch, x0 : x0 + cw]
        return np.ascontiguousarray(arr)


def to_rgb(img: Image.Image) -> Image.Image:
    """Any Pillow mode → 8-bit RGB (see the module docstring for the rules)."""
    mode = img.mode
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        arr = np.asarray(img, dtype=np.float64)
        top = 65535.0 if mode.startswith("I;16") or arr.max() > 255 else 255.0
        grey = np.clip(np.rint(arr / top * 255.0), 0, 255).astype(np.uint8)
        return Image.fromarray(grey, mode="L").convert("RGB")
    if mode == "F":
        arr = np.asarray(img, dtype=np.float64)
        top = 1.0 if arr.max() <= 1.0 else 255.0
        return Image.fromarray(np.clip(np.rint(arr / top * 255), 0, 255).astype(np.uint8), "L").convert("RGB")
    if mode == "P" and "transparency" in img.info:
        img, mode = img.convert("RGBA"), "RGBA"
    if mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = img.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    return img.convert("RGB")


class _Refused(Exception):
    """An input over a limit (``source_refused``)."""


def _why(path: str, exc: Exception) -> str:
    """The read error, saying when ``path`` is a symlink that dangles or loops."""
    text = f"{type(exc).__name__}: {exc}"
    if not _is_remote(path) and os.path.islink(path):
        target = os.readlink(path)
        if isinstance(exc, OSError) and exc.errno == errno.ELOOP:
            return f"symlink loop ({path} -> {target}): {text}"
        if not os.path.exists(path):
            return f"dangling symlink (-> {target}, which does not exist): {text}"
    if isinstance(exc, IsADirectoryError) or (not _is_remote(path) and os.path.isdir(path)):
        return f"a folder that cannot be listed: {text}"
    return text


def _failed(path: str, reason: Reason, error: str, digest: str = "") -> LoadedImage:
    return LoadedImage(path, None, digest, reason=reason, error=display_name(error)[:2000])
