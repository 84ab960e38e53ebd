"""Score stage, the parts every backend shares: the judge interface and the filter.

:class:`Judge` is the interface a VLM judge also implements: it sets, per sub-edit,
``scores["compliance"]`` in [0, 1] and ``executed``, and per sample the scores it knows
(``compliance``, background figures, and ``quality`` where it rates it). :class:`JudgeFilter`
turns scores into ``accepted`` or ``rejected`` with a reason code, so a user can re-filter with
other thresholds without re-judging. The pixel judge of the synthetic domain lives with it
(:mod:`mcie.transforms.synthetic.judge`); the VLM judge with the models
(:mod:`mcie.transforms.models.vlm_judge`).
"""

from __future__ import annotations

import abc
import dataclasses

from mcie.reasons import Reason, Status
from mcie.records import EditSample
from mcie.transforms.precheck import prechecked
from mcie.transforms.step import Step


class Judge(abc.ABC):
    """Scores a sample's sub-edits and background; sets scores in place and returns it."""

    name: str = "judge"

    @abc.abstractmethod
    def judge(self, sample: EditSample) -> EditSample: ...


@dataclasses.dataclass(frozen=True)
class FilterThresholds:
    """When a judged sample is rejected. Defaults reject any sub-edit not executed and any
    visible background change (a blotch, or a global shift of 8/255 and more)."""

    min_compliance: float = 1.0
    bg_ssim_min: float = 0.98
    bg_psnr_min: float = 40.0
    bg_l1_max: float = 0.01
    bg_changed_max: float = 0.002
    #: share of the background away from every mask moved by more than 8 levels (the pixel
    #: judge's ``bg_faint``; judges that do not report it are not held to it)
    bg_faint_max: float = 0.001
    #: when set, a sub-edit passes on its score (``scores["compliance"]`` >= this) instead of
    #: the judge's own ``executed``: the threshold ``mcie calibrate`` chooses from reviewers
    min_sub_score: float | None = None

    def __post_init__(self) -> None:
        if not 0 <= self.min_compliance <= 1 or not 0 <= self.bg_ssim_min <= 1:
            raise ValueError(f"min_compliance and bg_ssim_min must be in [0, 1], got {self}")

    @classmethod
    def from_file(cls, path: str) -> FilterThresholds:
        """Thresholds from a JSON file (as ``mcie calibrate`` writes); fields left out keep
        their defaults. A missing file, bad JSON, an unknown or badly typed field is a
        ``ValueError`` naming the file and the allowed fields."""
        from mcie import storage

        if not storage.exists(path):
            raise ValueError(f"thresholds file {path!r} does not exist")
        try:
            data = storage.read_json(path)
        except ValueError as exc:
            raise ValueError(f"thresholds file {path!r} is not JSON: {exc}") from exc
        names = sorted(f.name for f in dataclasses.fields(cls))
        if not isinstance(data, dict) or set(data) - set(names):
            unknown = sorted(set(data) - set(names)) if isinstance(data, dict) else data
            raise ValueError(f"thresholds file {path!r}: unknown fields {unknown}; allowed: {names}")
        try:
            return cls(**data)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"thresholds file {path!r}: {exc}") from exc


class JudgeFilter:
    """Decides a judged sample: ``(True, None)`` keeps it, ``(False, reason)`` rejects it."""

    def __init__(self, thresholds: FilterThresholds | None = None) -> None:
        self.t = thresholds or FilterThresholds()

    def decide(self, sample: EditSample) -> tuple[bool, Reason | None]:
        s, t = sample.scores, self.t
        if any(
            sub.mask is not None and not sub.mask.any() and sub.edit_type != "add" for sub in sample.sub_edits
        ):
            return False, Reason.MASK_EMPTY
        # background first: a changed background also spoils the evidence for the sub-edits
        if (
            s["bg_ssim"] < t.bg_ssim_min
            or s["bg_psnr"] < t.bg_psnr_min
            or s["bg_l1"] > t.bg_l1_max
            or s["bg_changed"] > t.bg_changed_max
            or s.get("bg_faint", 0.0) > t.bg_faint_max
        ):
            return False, Reason.BACKGROUND_CHANGED
        compliance = s["compliance"]
        if t.min_sub_score is not None:
            # the calibrated bound replaces the judge's own calls, in the sample's compliance too
            passed = [sub.scores.get("compliance", 0.0) >= t.min_sub_score for sub in sample.sub_edits]
            if not all(passed):
                return False, Reason.SUB_EDIT_NOT_EXECUTED
            compliance = 1.0
        elif t.min_compliance >= 1.0 and not all(sub.executed for sub in sample.sub_edits):
            return False, Reason.SUB_EDIT_NOT_EXECUTED
        if compliance < t.min_compliance:
            return False, Reason.LOW_COMPLIANCE
        if "quality" in s and s["quality"] < 0.5:
            return False, Reason.LOW_QUALITY
        return True, None

    def apply(self, sample: EditSample) -> EditSample:
        """Set ``status``/``reason`` on a judged sample from :meth:`decide`."""
        keep, reason = self.decide(sample)
        if keep:
            sample.status, sample.reason = Status.ACCEPTED, ""
        else:
            sample.reject(reason)
        return sample


class FilterStep(Step):
    """The last step of every backend: accept or reject a judged sample (:class:`JudgeFilter`)."""

    stage = "score"
    reason = Reason.SCORE_ERROR

    def __init__(self, thresholds: FilterThresholds) -> None:
        self.filter = JudgeFilter(thresholds)

    def process(self, sample: EditSample) -> EditSample:
        if prechecked(sample):  # refused before the judge ran: it has no judge scores to decide on
            return sample
        return self.filter.apply(sample)
