"""One storage layer for every file mcie reads or writes: local paths, ``gs://…``, ``s3://…``
(whatever Apache Beam's ``FileSystems`` supports).

Remote paths go through Beam's :class:`~apache_beam.io.filesystems.FileSystems`, the same
code Dataflow workers use; local paths go straight to the standard library (Beam's own local
filesystem does the same, with a layer less), so local output and speed do not change.

* **Atomic writes**: :func:`atomic_write` / :func:`atomic_open` write to a temporary name
  beside the target and rename it once complete, so a file appears under its final name only
  when whole. A worker killed mid-write leaves at most a ``*.tmp-…`` file (never an object on
  GCS or S3: their uploads become visible only on ``close()``), which no reader lists.
* **Globs**: :func:`escape` quotes ``*``, ``?`` and ``[`` in a folder name before a pattern is
  appended, so an output folder called ``run[1]`` is never read as a pattern.
* **Cloud clients** come from the ``cloud`` extra (``pip install 'mcie[cloud]'``):
  google-cloud-storage for ``gs://`` (``STORAGE_EMULATOR_HOST`` points it at an emulator) and
  boto3 for ``s3://`` (``AWS_ENDPOINT_URL`` or Beam's ``--s3_endpoint_url`` for S3-compatible
  servers). Credentials are the clients' usual ones (Application Default Credentials, the AWS
  environment or config files).
"""

from __future__ import annotations

import contextlib
import dataclasses
import glob as _glob
import hashlib
import io
import json
import os
import re
import threading
import uuid
import warnings
from collections.abc import Iterable, Iterator
from typing import IO, Any

from mcie import extras
from mcie.exitcodes import UsageError

#: read block size when hashing a file (1 MiB: few calls, little memory)
_BLOCK = 1 << 20

_SCHEME = re.compile(r"^([a-zA-Z][-a-zA-Z0-9+.]*)://")


@dataclasses.dataclass(frozen=True)
class FileDigest:
    """Size and SHA-256 of a file's bytes, as a done-marker records them."""

    size: int
    sha256: str

    def to_json(self) -> dict[str, Any]:
        return {"size": self.size, "sha256": self.sha256}


# ------------------------------------------------------------------ paths


def scheme(path: str) -> str | None:
    """The URL scheme of ``path`` (``gs``, ``s3``), or None for a local path (``file://``
    counts as local)."""
    m = _SCHEME.match(path)
    if m is None or m.group(1).lower() == "file":
        return None
    return m.group(1).lower()


def is_remote(path: str) -> bool:
    """True for object-store URLs (anything with a scheme other than ``file://``)."""
    return scheme(path) is not None


def _local(path: str) -> str:
    return path[len("file://") :] if path.startswith("file://") else path


def join(base: str, *parts: str) -> str:
    """Join path components with ``/`` for URLs, ``os.path.join`` for local paths."""
    if not is_remote(base):
        return os.path.join(_local(base), *parts)
    out = base.rstrip("/")
    for p in parts:
        out = out + "/" + p.strip("/")
    return out


def relpath(path: str, base: str) -> str:
    """``path`` relative to the folder ``base`` (``/``-separated for URLs)."""
    if not is_remote(path):
        return os.path.relpath(_local(path), _local(base))
    prefix = base.rstrip("/") + "/"
    if not path.startswith(prefix):
        raise ValueError(f"{path!r} is not under {base!r}")
    return path[len(prefix) :]


def basename(path: str) -> str:
    """The last component of ``path`` (a trailing ``/`` ignored)."""
    if is_remote(path):
        return path.rstrip("/").rsplit("/", 1)[-1]
    return os.path.basename(os.path.normpath(path))


def escape(text: str) -> str:
    """Quote the glob characters ``*``, ``?`` and ``[`` so ``text`` matches only itself (the
    bracket form works for both Python's ``glob`` and Beam's patterns)."""
    return re.sub(r"([*?[])", r"[\1]", text)


# ------------------------------------------------------------------ Beam's FileSystems


def configure(beam_flags: Iterable[str]) -> None:
    """Hand Beam pipeline flags (``--s3_endpoint_url``, ``--project`` …) to the remote
    filesystems for reads and writes outside a pipeline (a pipeline sets them itself)."""
    from apache_beam.io.filesystems import FileSystems
    from apache_beam.options.pipeline_options import PipelineOptions

    FileSystems.set_options(PipelineOptions(list(beam_flags)))


#: the fields of Beam's S3 options that decide which client a call needs
_S3_FIELDS = (
    "s3_access_key_id",
    "s3_secret_access_key",
    "s3_session_token",
    "s3_endpoint_url",
    "s3_disable_ssl",
    "s3_region_name",
    "s3_api_version",
    "s3_verify",
)
#: the environment boto3 reads when it makes a client (a client made before a change of
#: these would still talk to the old endpoint with the old keys)
_S3_ENV = (
    "AWS_ENDPOINT_URL",
    "AWS_ENDPOINT_URL_S3",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_DEFAULT_REGION",
    "AWS_REGION",
    "AWS_PROFILE",
    "AWS_CONFIG_FILE",
    "AWS_SHARED_CREDENTIALS_FILE",
)
_s3_lock = threading.Lock()


def _share_s3_clients() -> None:
    """Make Beam's S3 filesystem reuse one boto3 client per set of S3 options.

    Beam's ``S3FileSystem`` builds a new ``S3IO``, hence a new boto3 session and client, for
    every call (``exists``, ``size``, ``open``, ``rename``, ``match``...): measured here at
    0.27 s of CPU per call against moto (a session loads botocore's service models anew), 40
    calls 10.8 s; with one shared client 0.15 s. A client is kept per S3 options and AWS
    environment (so a changed endpoint or key gets a new one); boto3 clients are thread-safe.
    Installed once per process; if Beam's layout ever differs, calls simply stay unshared."""
    try:
        from apache_beam.io.aws.clients.s3 import boto3_client
    except ImportError:  # no boto3: the S3 filesystem is not registered either
        return
    original = boto3_client.Client
    if getattr(original, "_mcie_shared", False):
        return
    clients: dict[tuple, Any] = {}

    def key_of(options) -> tuple:
        env = tuple(os.environ.get(v) for v in _S3_ENV)
        if hasattr(options, "view_as"):
            from apache_beam.options.pipeline_options import S3Options

            s3 = options.view_as(S3Options)
            return env + tuple(getattr(s3, f, None) for f in _S3_FIELDS)
        return env + tuple(options.get(f) for f in _S3_FIELDS)

    class SharedClient(original):
        _mcie_shared = True

        def __new__(cls, options):
            key = key_of(options)
            with _s3_lock:
                if key not in clients:
                    clients[key] = original(options)
                return clients[key]  # not a SharedClient: __init__ does not run again

    boto3_client.Client = SharedClient


def _fs(path: str):
    """Beam's filesystem for a remote ``path``, or a usage error naming the missing client."""
    from apache_beam.io.filesystems import FileSystems

    if scheme(path) in extras.CLOUD_CLIENTS:  # Beam registers no filesystem for it without one
        extras.require("cloud", f"{path!r}", [extras.CLOUD_CLIENTS[scheme(path)]])
    if scheme(path) == "s3":
        _share_s3_clients()
    if FileSystems._pipeline_options is None:
        # outside a pipeline nothing has set them, and Beam's S3 client refuses to start
        # without options: the defaults (clients read their usual environment)
        configure([])
    try:
        return FileSystems.get_filesystem(path)
    except ValueError as exc:
        raise UsageError(f"cannot use {path!r}: {exc}") from None


def _beam_exists(path: str) -> bool:
    return _fs(path).exists(path)


def _beam_delete(path: str) -> None:
    """Delete one object. Beam's GCS ``delete`` matches its argument as a pattern (and a path
    ending in ``/`` as a whole prefix), so the name is quoted: it deletes that object only."""
    if path.endswith("/"):
        raise ValueError(f"refusing to delete a folder: {path!r}")
    _fs(path).delete([escape(path) if scheme(path) == "gs" else path])


# ------------------------------------------------------------------ reading


def exists(path: str) -> bool:
    """Whether a file exists at ``path``."""
    if not is_remote(path):
        return os.path.exists(_local(path))
    return _beam_exists(path)


def open_read(path: str) -> IO[bytes]:
    """A seekable binary reader of ``path`` (never decompressed, whatever its name)."""
    if not is_remote(path):
        return open(_local(path), "rb")
    from apache_beam.io.filesystem import CompressionTypes

    if not _beam_exists(path):
        raise FileNotFoundError(f"no such file: {path}")
    return _fs(path).open(path, compression_type=CompressionTypes.UNCOMPRESSED)


def read_bytes(path: str) -> bytes:
    """The whole content of ``path``."""
    with open_read(path) as fh:
        return fh.read()


def read_json(path: str) -> Any:
    """Parse the JSON file at ``path``."""
    return json.loads(read_bytes(path))


def size(path: str) -> int:
    """Size of ``path`` in bytes."""
    if not is_remote(path):
        return os.path.getsize(_local(path))
    return _fs(path).size(path)


def digest(path: str) -> FileDigest:
    """Size and SHA-256 of the bytes stored at ``path`` (read in 1 MiB blocks)."""
    h, n = hashlib.sha256(), 0
    with open_read(path) as fh:
        while block := fh.read(_BLOCK):
            h.update(block)
            n += len(block)
    return FileDigest(n, h.hexdigest())


def glob(pattern: str) -> list[str]:
    """Sorted paths of the files matching ``pattern`` (``*`` stays inside one folder). Quote
    any part that comes from a name with :func:`escape`."""
    return [p for p, _ in glob_sizes(pattern)]


def glob_sizes(pattern: str) -> list[tuple[str, int]]:
    """Sorted ``(path, size)`` of the files matching ``pattern``: one listing, no per-file call."""
    if not is_remote(pattern):
        paths = [p for p in _glob.glob(_local(pattern)) if os.path.isfile(p)]
        return sorted((p, os.path.getsize(p)) for p in paths)
    from apache_beam.io.filesystem import BeamIOError

    try:
        with warnings.catch_warnings():  # "[[]" (a quoted "[") reads as a nested set to re
            warnings.simplefilter("ignore", FutureWarning)
            result = _fs(pattern).match([pattern])[0]
    except BeamIOError as exc:  # Beam reports "no bucket" and "no such prefix" alike
        if "not found" in str(exc).lower() or "no such" in str(exc).lower():
            return []
        raise
    return sorted((m.path, m.size_in_bytes) for m in result.metadata_list)


def list_folder(folder: str, pattern: str = "*") -> list[str]:
    """Sorted files directly in ``folder`` whose names match ``pattern``."""
    return glob(join(escape(folder), pattern))


def is_empty_folder(folder: str, ignore: tuple[str, ...] = ()) -> bool:
    """True when nothing is stored under ``folder`` (a missing folder is empty); local entries
    named in ``ignore`` (a run's lock file) do not count."""
    if not is_remote(folder):
        folder = _local(folder)
        return not os.path.isdir(folder) or not set(os.listdir(folder)) - set(ignore)
    prefix = escape(folder.rstrip("/")) + "/**"
    return not glob_sizes(prefix)


def require_folder(path: str) -> None:
    """A usage error unless ``path`` is a local folder, or a URL with files under it."""
    if is_remote(path) and is_empty_folder(path):
        raise UsageError(f"{path!r} holds no files")
    if not is_remote(path) and not os.path.isdir(_local(path)):
        raise UsageError(f"{path!r} is not a directory")


def check_folder(path: str) -> None:
    """A usage error when a local ``path`` exists and is a file (object stores have no such
    conflict: a prefix and an object may share a name)."""
    if not is_remote(path) and os.path.exists(_local(path)) and not os.path.isdir(_local(path)):
        raise UsageError(f"output path {path!r} exists and is not a directory")


# ------------------------------------------------------------------ writing


class DigestWriter(io.RawIOBase):
    """A write-only stream that hashes and counts what passes through it to ``target``."""

    def __init__(self, target: IO[bytes]) -> None:
        self.target = target
        self._hash = hashlib.sha256()
        self._size = 0

    def writable(self) -> bool:
        return True

    def write(self, data) -> int:
        data = bytes(data)
        self.target.write(data)
        self._hash.update(data)
        self._size += len(data)
        return len(data)

    def tell(self) -> int:
        return self._size

    def digest(self) -> FileDigest:
        """Size and SHA-256 of everything written so far."""
        return FileDigest(self._size, self._hash.hexdigest())


def _tmp_name(path: str) -> str:
    # unique, so two attempts at one unit (a retried bundle) never write into one file; the
    # suffix keeps it out of every ``*.tar`` / ``*.parquet`` / ``*.json`` listing
    return f"{path}.tmp-{uuid.uuid4().hex[:12]}"


def makedirs(folder: str) -> None:
    """Create a local folder and its parents (object stores need none)."""
    if not is_remote(folder):
        os.makedirs(_local(folder), exist_ok=True)


@contextlib.contextmanager
def atomic_open(path: str) -> Iterator[DigestWriter]:
    """Write ``path`` through a :class:`DigestWriter`: the bytes go to a temporary name that
    is renamed to ``path`` only when the block ends without an exception (then the temporary
    file is deleted). Parent folders are created for local paths."""
    tmp = _tmp_name(path)
    if not is_remote(path):
        target = _local(path)
        os.makedirs(os.path.dirname(target) or ".", exist_ok=True)
        tmp = _tmp_name(target)
        try:
            with open(tmp, "wb") as fh:
                writer = DigestWriter(fh)
                yield writer
            os.replace(tmp, target)
        except BaseException:
            with contextlib.suppress(OSError):
                os.remove(tmp)
            raise
        return
    from apache_beam.io.filesystem import CompressionTypes

    fs = _fs(path)
    fh = fs.create(tmp, compression_type=CompressionTypes.UNCOMPRESSED)
    try:
        writer = DigestWriter(fh)
        yield writer
        fh.close()  # the object becomes visible (under the temporary name) only now
        fs.rename([tmp], [path])
    except BaseException:
        with contextlib.suppress(Exception):
            fh.close()
        with contextlib.suppress(Exception):
            _beam_delete(tmp)
        raise


def atomic_write(path: str, data: bytes | str) -> FileDigest:
    """Write ``data`` to ``path`` atomically (see :func:`atomic_open`); returns its digest."""
    if isinstance(data, str):
        data = data.encode()
    with atomic_open(path) as fh:
        fh.write(data)
    return fh.digest()


def write_json(path: str, obj: Any) -> FileDigest:
    """Write ``obj`` as indented, key-sorted JSON to ``path`` atomically."""
    return atomic_write(path, json.dumps(obj, indent=1, sort_keys=True))


def delete(paths: Iterable[str]) -> None:
    """Delete files; a missing one is not an error."""
    for path in paths:
        if not is_remote(path):
            with contextlib.suppress(FileNotFoundError):
                os.remove(_local(path))
        elif _beam_exists(path):
            _beam_delete(path)


def copy(src: str, dst: str) -> None:
    """Copy one file (across local and remote storage too) atomically at ``dst``."""
    with open_read(src) as fh, atomic_open(dst) as out:
        while block := fh.read(_BLOCK):
            out.write(block)
