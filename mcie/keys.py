"""Sample keys are untrusted wherever they are read back (an index, a shard, an annotation).

Our keys have one shape (:func:`mcie.records.content_key`): 20 lower-case hex characters. A
key read from a build folder, a shard member name or a Label Studio task names files (review
masks, exported images) and reaches globs, so every reader checks it here before using it: a
key that is an absolute path, holds ``..``, a slash or glob characters is refused with an error
naming where it came from.
"""

from __future__ import annotations

import re

#: the one shape of a sample key: :func:`mcie.records.content_key`'s blake2b-80 hex digest
KEY_PATTERN = re.compile(r"[0-9a-f]{20}")


class InvalidKeyError(ValueError):
    """A key read from untrusted input does not have our keys' shape."""


def is_valid_key(key: object) -> bool:
    """True when ``key`` is a string of our keys' one shape."""
    return isinstance(key, str) and KEY_PATTERN.fullmatch(key) is not None


def check_key(key: object, where: str) -> str:
    """Return ``key`` when valid, else raise :class:`InvalidKeyError` naming ``where`` it was read."""
    if not is_valid_key(key):
        shown = repr(key)[:80]
        raise InvalidKeyError(
            f"{where}: invalid sample key {shown} (mcie keys are 20 lower-case hex characters)"
        )
    return key  # type: ignore[return-value]


#: a shard named by an index row: a tar in one of a build's shard folders, never a path outside
SHARD_PATTERN = re.compile(r"(shards|rejected|pending)/[A-Za-z0-9_-]{1,64}\.tar")


def check_shard_ref(rel: object, where: str) -> str:
    """Return the index's ``shard`` value ``rel`` when it names a shard inside the build folder
    (``shards/mcie-000001.tar``), else raise :class:`InvalidKeyError` naming ``where``."""
    if not isinstance(rel, str) or SHARD_PATTERN.fullmatch(rel) is None:
        raise InvalidKeyError(f"{where}: invalid shard reference {repr(rel)[:80]} (expected shards/NAME.tar)")
    return rel
