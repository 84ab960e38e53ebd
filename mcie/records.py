"""The one record type that flows through every stage: :class:`EditSample` with its
:class:`SubEdit` list.

A record serialises two ways, both stable (sorted JSON keys, fixed column order):

* :meth:`EditSample.to_row` / :meth:`EditSample.from_row` — one Parquet row of an intermediate
  table (images and masks as lossless PNG bytes), so each stage can run alone;
* :meth:`EditSample.to_json` — the ``{key}.json`` member of a WebDataset sample (no pixels).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
from typing import Any

import numpy as np

from mcie.images import PNG_LEVEL_FAST, decode_image, decode_mask, encode_png
from mcie.reasons import Reason, Status

SCHEMA_VERSION = 1

#: The one shape of an edit type's name. Which edit types exist, and their mask semantics, is
#: each backend's to say (the synthetic registry: :mod:`mcie.transforms.synthetic.edits`); the
#: record only checks that a name read from untrusted input is a plain lower-case word.
EDIT_TYPE_RE = re.compile(r"[a-z][a-z_]{1,31}")

Box = tuple[int, int, int, int]  # (x0, y0, x1, y1), x1/y1 exclusive, pixels


def _dumps(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"))


def mask_box(mask: np.ndarray | None) -> Box | None:
    """Tight bounding box of a boolean mask, or ``None`` when it is empty."""
    if mask is None or not mask.any():
        return None
    ys = np.flatnonzero(mask.any(axis=1))
    xs = np.flatnonzero(mask.any(axis=0))
    return (int(xs[0]), int(ys[0]), int(xs[-1]) + 1, int(ys[-1]) + 1)


@dataclasses.dataclass
class SubEdit:
    """One sub-instruction of a complex instruction and everything stages learn about it."""

    edit_type: str
    instruction: str
    target_phrase: str
    label: str = ""  # semantic class of the object edited ("circle", "star", ...)
    params: dict[str, Any] = dataclasses.field(default_factory=dict)
    #: the grounder's footprint of ``target_phrase`` on the source (None for ``add``)
    ground_mask: np.ndarray | None = None
    ground_box: Box | None = None
    #: the annotated region this sub-edit may change (mask semantics), and its box
    mask: np.ndarray | None = None
    box: Box | None = None
    scores: dict[str, float] = dataclasses.field(default_factory=dict)
    executed: bool | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.edit_type, str) or not EDIT_TYPE_RE.fullmatch(self.edit_type):
            raise ValueError(
                f"edit_type {self.edit_type!r} is not a lower-case word ({EDIT_TYPE_RE.pattern})"
            )

    def meta(self) -> dict[str, Any]:
        """JSON-able fields (no pixels)."""
        return {
            "edit_type": self.edit_type,
            "instruction": self.instruction,
            "target_phrase": self.target_phrase,
            "label": self.label,
            "params": self.params,
            "ground_box": list(self.ground_box) if self.ground_box else None,
            "box": list(self.box) if self.box else None,
            "scores": self.scores,
            "executed": self.executed,
        }


@dataclasses.dataclass
class EditSample:
    """A candidate edit: source, target, complex instruction, sub-edits and its outcome."""

    key: str
    source_id: str
    source_hash: str
    src: np.ndarray | None
    tgt: np.ndarray | None
    instruction: str
    sub_edits: list[SubEdit]
    scores: dict[str, float] = dataclasses.field(default_factory=dict)
    status: Status = Status.CANDIDATE
    reason: str = ""
    error: str = ""
    provenance: dict[str, Any] = dataclasses.field(default_factory=dict)
    verdict: dict[str, Any] | None = None
    schema_version: int = SCHEMA_VERSION

    # -- outcomes ------------------------------------------------------------------------
    def reject(self, reason: Reason) -> None:
        """Mark the sample rejected with ``reason``."""
        self.status, self.reason = Status.REJECTED, Reason(reason).value

    def fail(self, reason: Reason, error: BaseException | str) -> None:
        """Mark the sample failed with ``reason`` and the error text (type and message)."""
        text = error if isinstance(error, str) else f"{type(error).__name__}: {error}"
        self.status, self.reason, self.error = Status.FAILED, Reason(reason).value, text[:2000]

    @property
    def size(self) -> tuple[int, int] | None:
        """(width, height) of the images, or None when the sample has none."""
        return None if self.src is None else (int(self.src.shape[1]), int(self.src.shape[0]))

    # -- serialisation -------------------------------------------------------------------
    def to_json(self) -> dict[str, Any]:
        """The sample's JSON (the ``{key}.json`` shard member): every field but pixels."""
        size = self.size
        return {
            "key": self.key,
            "schema_version": self.schema_version,
            "source_id": self.source_id,
            "source_hash": self.source_hash,
            "width": size[0] if size else None,
            "height": size[1] if size else None,
            "instruction": self.instruction,
            "sub_edits": [s.meta() for s in self.sub_edits],
            "scores": self.scores,
            "status": Status(self.status).value,
            "reason": self.reason,
            "error": self.error,
            "provenance": self.provenance,
            "verdict": self.verdict,
        }

    def to_row(self) -> dict[str, Any]:
        """One row of an intermediate table; see :data:`mcie.tables.RECORD_SCHEMA`."""

        def png(a: np.ndarray | None) -> bytes | None:
            return None if a is None else encode_png(a, PNG_LEVEL_FAST)

        return {
            "key": self.key,
            "schema_version": self.schema_version,
            "source_id": self.source_id,
            "source_hash": self.source_hash,
            "src_png": png(self.src),
            "tgt_png": png(self.tgt),
            "instruction": self.instruction,
            "sub_edits": [
                {
                    "meta_json": _dumps(s.meta()),
                    "ground_mask_png": png(s.ground_mask),
                    "mask_png": png(s.mask),
                }
                for s in self.sub_edits
            ],
            "scores_json": _dumps(self.scores),
            "status": Status(self.status).value,
            "reason": self.reason,
            "error": self.error,
            "provenance_json": _dumps(self.provenance),
            "verdict_json": _dumps(self.verdict),
        }

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> EditSample:
        """Inverse of :meth:`to_row`."""
        if row["schema_version"] != SCHEMA_VERSION:
            raise ValueError(
                f"record {row['key']} has schema_version {row['schema_version']}, "
                f"this mcie reads {SCHEMA_VERSION}"
            )
        subs = []
        for s in row["sub_edits"] or []:
            meta = json.loads(s["meta_json"])
            subs.append(
                SubEdit(
                    edit_type=meta["edit_type"],
                    instruction=meta["instruction"],
                    target_phrase=meta["target_phrase"],
                    label=meta["label"],
                    params=meta["params"],
                    ground_mask=None if s["ground_mask_png"] is None else decode_mask(s["ground_mask_png"]),
                    ground_box=tuple(meta["ground_box"]) if meta["ground_box"] else None,
                    mask=None if s["mask_png"] is None else decode_mask(s["mask_png"]),
                    box=tuple(meta["box"]) if meta["box"] else None,
                    scores=meta["scores"],
                    executed=meta["executed"],
                )
            )
        return cls(
            key=row["key"],
            source_id=row["source_id"],
            source_hash=row["source_hash"],
            src=None if row["src_png"] is None else decode_image(row["src_png"]),
            tgt=None if row["tgt_png"] is None else decode_image(row["tgt_png"]),
            instruction=row["instruction"],
            sub_edits=subs,
            scores=json.loads(row["scores_json"]),
            status=Status(row["status"]),
            reason=row["reason"],
            error=row["error"],
            provenance=json.loads(row["provenance_json"]),
            verdict=json.loads(row["verdict_json"]),
            schema_version=row["schema_version"],
        )


def content_key(*parts: bytes | str) -> str:
    """A sample key: a content hash of ``parts``, 20 hex characters, never containing a dot
    (WebDataset splits keys at the first dot)."""
    h = hashlib.blake2b(digest_size=10)
    for p in parts:
        b = p.encode() if isinstance(p, str) else p
        h.update(len(b).to_bytes(8, "little"))
        h.update(b)
    return h.hexdigest()
