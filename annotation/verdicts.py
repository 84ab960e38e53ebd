"""Reading reviewers' annotations and resolving several reviewers into one decision.

An annotation (one reviewer's submission for one task) becomes a :class:`Review`: the overall
verdict, the reason when rejecting, per sub-instruction verdicts, corrected wording, and
corrected masks. A mask counts as corrected only when the annotation's brush region for that
slot differs from the pre-annotation's (the exported prediction); several regions of one slot
are united. A slot without a region keeps its mask (deleting a mask is not a correction:
reject with ``bad_mask`` instead).

Resolution (``majority`` or ``strict``) over each reviewer's latest annotation: accept and
fixed are votes for, reject a vote against. ``majority``: more for → accepted, more against →
rejected, a tie → disagreement. ``strict``: all for → accepted, all against → rejected,
anything else → disagreement. A disagreement is not accepted: rejected with reason
``annotator_disagreement``. Corrections come from the reviewers voting for, applied in
annotation-id order (a later reviewer's correction of the same field wins). The rejection
reason is the most frequent among the reviewers voting against (``human_rejected`` when they
give none or tie).
"""

from __future__ import annotations

import collections
import dataclasses
import hashlib
import json
from typing import Any

import numpy as np

from mcie.annotation import config as cfg
from mcie.annotation.tasks import rle_to_mask
from mcie.reasons import Reason

RESOLUTIONS = ("majority", "strict")
POSITIVE = ("accept", "fixed")
REASON_VALUES = frozenset(r.value for r in Reason)


@dataclasses.dataclass
class Review:
    """One reviewer's verdict on one task."""

    annotation_id: int
    user: int | None
    verdict: str | None
    reason: str | None
    sub_verdicts: dict[int, str]
    instruction: str | None  # corrected complex instruction
    sub_instructions: dict[int, str]  # corrected wording per slot
    masks: dict[int, np.ndarray]  # corrected masks per slot

    def summary(self) -> dict[str, Any]:
        return {
            "annotation": self.annotation_id,
            "user": self.user,
            "verdict": self.verdict,
            "reason": self.reason,
            "sub_verdicts": {str(k): v for k, v in sorted(self.sub_verdicts.items())},
        }


def _text(value: dict[str, Any]) -> str | None:
    t = " ".join(s.strip() for s in value.get("text") or [] if s and s.strip())
    return t or None


def _one_choice(name: str, value: dict[str, Any]) -> str | None:
    """The single choice of a choices control: Label Studio stores a list of one; a bare string
    (an annotation written through the API by hand) is read as that choice; anything else is
    refused rather than read as no verdict."""
    choices = value.get("choices")
    if choices is None or choices == []:
        return None
    if isinstance(choices, str):
        return choices
    if isinstance(choices, list) and len(choices) == 1 and isinstance(choices[0], str):
        return choices[0]
    raise ValueError(f"{name}: expected one choice, got {str(choices)[:80]}")


def _predicted_rles(predictions: list[dict[str, Any]]) -> dict[str, list[list[int]]]:
    out: dict[str, list[list[int]]] = collections.defaultdict(list)
    for p in predictions:
        for r in p.get("result") or []:
            if r.get("type") == "brushlabels":
                out[r["from_name"]].append(r["value"]["rle"])
    return out


def rle_digest(rles: list[list[int]]) -> str:
    """A fingerprint of one slot's brush regions, whatever their order: equal digests, equal
    regions (80 bits: no collision to fear among a set's masks)."""
    body = json.dumps(sorted(map(list, rles)), separators=(",", ":")).encode()
    return hashlib.blake2b(body, digest_size=10).hexdigest()


def predicted_digests(predictions: list[dict[str, Any]]) -> dict[str, str]:
    """``{mask control: digest}`` of a task's pre-annotations. Export records them for each task
    it sends, so import can tell an untouched mask without reading the predictions back."""
    return {name: rle_digest(rles) for name, rles in _predicted_rles(predictions).items()}


def parse_annotation(
    ann: dict[str, Any],
    predictions: list[dict[str, Any]],
    original: dict[str, Any],
    predicted: dict[str, str] | None = None,
) -> Review:
    """A :class:`Review` from an annotation dict; ``original`` is the sample's JSON. The
    pre-annotations a mask is compared with are ``predicted`` (:func:`predicted_digests`, as
    export recorded them) or, without it, the task's ``predictions``."""
    subs = original["sub_edits"]
    h, w = int(original["height"]), int(original["width"])
    if predicted is None:
        predicted = predicted_digests(predictions)
    verdict = reason = instruction = None
    sub_verdicts: dict[int, str] = {}
    wording: dict[int, str] = {}
    brush: dict[int, list[list[int]]] = collections.defaultdict(list)
    slot_of = {cfg.mask_control(k): k for k in range(cfg.SLOTS)}
    slot_of.update({cfg.verdict_control(k): k for k in range(cfg.SLOTS)})
    slot_of.update({cfg.wording_control(k): k for k in range(cfg.SLOTS)})
    for r in ann.get("result") or []:
        name, value = r.get("from_name"), r.get("value") or {}
        if name == cfg.OVERALL:
            verdict = _one_choice(name, value)
            if verdict is not None and verdict not in (*POSITIVE, "reject"):
                raise ValueError(f"unknown verdict {verdict!r} (accept, fixed or reject)")
        elif name == cfg.REASON:
            reason = _one_choice(name, value)
            if reason is not None and reason not in REASON_VALUES:
                raise ValueError(f"unknown reason {reason!r} (see `mcie reasons`)")
        elif name == cfg.INSTRUCTION_FIX:
            instruction = _text(value)
        elif name in slot_of and slot_of[name] < len(subs):
            k = slot_of[name]
            if name == cfg.verdict_control(k):
                sub_verdicts[k] = _one_choice(name, value)
            elif name == cfg.wording_control(k):
                t = _text(value)
                if t and t != subs[k]["instruction"]:
                    wording[k] = t
            elif value.get("rle") is not None:
                brush[k].append(value["rle"])
    masks: dict[int, np.ndarray] = {}
    for k, rles in brush.items():
        if rle_digest(rles) == predicted.get(cfg.mask_control(k)):
            continue  # the pre-annotation, untouched
        masks[k] = np.logical_or.reduce([rle_to_mask(r, h, w) for r in rles])
    if instruction == original["instruction"]:
        instruction = None
    user = ann.get("completed_by")
    if isinstance(user, dict):  # some endpoints expand the user
        user = user.get("id")
    return Review(
        annotation_id=int(ann["id"]),
        user=user,
        verdict=verdict,
        reason=reason,
        sub_verdicts=sub_verdicts,
        instruction=instruction,
        sub_instructions=wording,
        masks=masks,
    )


@dataclasses.dataclass
class Decision:
    """The resolved outcome of a task."""

    decision: str  # accept | fixed | reject | disagreement
    reason: str  # a Reason value ("" when accepted)
    instruction: str | None
    sub_instructions: dict[int, str]
    masks: dict[int, np.ndarray]
    reviews: list[Review]

    @property
    def accepted(self) -> bool:
        return self.decision in POSITIVE


def latest_per_user(reviews: list[Review]) -> list[Review]:
    """Each reviewer's latest annotation (highest id), sorted by annotation id."""
    by_user: dict[Any, Review] = {}
    for r in sorted(reviews, key=lambda r: r.annotation_id):
        by_user[r.user if r.user is not None else f"anon{r.annotation_id}"] = r
    return sorted(by_user.values(), key=lambda r: r.annotation_id)


def resolve(reviews: list[Review], resolution: str = "majority") -> Decision | None:
    """One decision from the reviews with a verdict; None when there is none yet."""
    if resolution not in RESOLUTIONS:
        raise ValueError(f"resolution {resolution!r} not in {RESOLUTIONS}")
    voting = [r for r in latest_per_user(reviews) if r.verdict in (*POSITIVE, "reject")]
    if not voting:
        return None
    pos = [r for r in voting if r.verdict in POSITIVE]
    neg = [r for r in voting if r.verdict == "reject"]
    if resolution == "majority":
        outcome = "for" if len(pos) > len(neg) else "against" if len(neg) > len(pos) else "tie"
    else:
        outcome = "for" if not neg else "against" if not pos else "tie"
    if outcome == "tie":
        return Decision("disagreement", Reason.ANNOTATOR_DISAGREEMENT.value, None, {}, {}, voting)
    if outcome == "against":
        counts = collections.Counter(r.reason for r in neg if r.reason)
        top = counts.most_common()
        reason = (
            top[0][0] if top and (len(top) == 1 or top[0][1] > top[1][1]) else Reason.HUMAN_REJECTED.value
        )
        return Decision("reject", Reason(reason).value, None, {}, {}, voting)
    instruction, wording, masks = None, {}, {}
    for r in pos:  # annotation-id order: later corrections win
        instruction = r.instruction or instruction
        wording.update(r.sub_instructions)
        masks.update(r.masks)
    fixed = any(r.verdict == "fixed" for r in pos) or bool(instruction or wording or masks)
    return Decision("fixed" if fixed else "accept", "", instruction, wording, masks, voting)
