"""The one enumerated list of reason codes.

Every sample ends ``accepted``, ``rejected`` with a reason, ``failed`` with a reason and its
error text, or ``pending`` human review. The judge, the Label Studio import and the index all
use these codes, so a reason means the same thing wherever it appears.
"""

from __future__ import annotations

import enum


class Status(str, enum.Enum):
    """Where a candidate ended."""

    CANDIDATE = "candidate"  # not yet scored (intermediate tables only)
    ACCEPTED = "accepted"
    REJECTED = "rejected"
    FAILED = "failed"
    PENDING = "pending"  # sent for human review


class Reason(str, enum.Enum):
    """Why a candidate was rejected or failed. The value is what tables store."""

    # -- judge (automatic filter) --------------------------------------------------------
    SUB_EDIT_NOT_EXECUTED = "sub_edit_not_executed"
    LOW_COMPLIANCE = "low_compliance"
    BACKGROUND_CHANGED = "background_changed"
    MASK_EMPTY = "mask_empty"
    LOW_QUALITY = "low_quality"
    DUPLICATE = "duplicate"
    #: the pixel check that runs before a model judge (no MLLM call is spent on it)
    PRECHECK_REJECTED = "precheck_rejected"
    # -- human review (Label Studio) ------------------------------------------------------
    HUMAN_REJECTED = "human_rejected"
    WRONG_INSTRUCTION = "wrong_instruction"
    BAD_MASK = "bad_mask"
    ANNOTATOR_DISAGREEMENT = "annotator_disagreement"
    SENT_FOR_REVIEW = "sent_for_review"
    # -- failures: the sample could not be processed ---------------------------------------
    SOURCE_UNREADABLE = "source_unreadable"
    SOURCE_REFUSED = "source_refused"
    PLAN_INVALID = "plan_invalid"
    GENERATE_ERROR = "generate_error"
    ANNOTATE_ERROR = "annotate_error"
    SCORE_ERROR = "score_error"
    ENCODE_ERROR = "encode_error"
    SERVICE_UNAVAILABLE = "service_unavailable"


#: One line per code, shown in the dataset card and ``mcie reasons``.
DESCRIPTIONS: dict[Reason, str] = {
    Reason.SUB_EDIT_NOT_EXECUTED: "the judge found at least one sub-instruction not carried out",
    Reason.LOW_COMPLIANCE: "the judge's overall instruction-compliance score is below threshold",
    Reason.BACKGROUND_CHANGED: "pixels outside the union of sub-edit masks changed (SSIM/PSNR/L1)",
    Reason.MASK_EMPTY: "annotate found no evidence for a sub-edit's region",
    Reason.LOW_QUALITY: "the judge rated the edited image's overall quality below threshold",
    Reason.DUPLICATE: "another candidate with the same content (key) came first",
    Reason.PRECHECK_REJECTED: "before the VLM judge ran: pixels changed outside every dilated mask,"
    " or a sub-edit's mask barely changed",
    Reason.HUMAN_REJECTED: "a human reviewer rejected the sample",
    Reason.WRONG_INSTRUCTION: "a human reviewer found the instruction wrong for the edit",
    Reason.BAD_MASK: "a human reviewer found a mask wrong",
    Reason.ANNOTATOR_DISAGREEMENT: "human reviewers disagreed; not accepted",
    Reason.SENT_FOR_REVIEW: "waiting for a human verdict in Label Studio",
    Reason.SOURCE_UNREADABLE: "the source image could not be decoded",
    Reason.SOURCE_REFUSED: "the source image broke a size or decompression-bomb limit",
    Reason.PLAN_INVALID: "the planner's output was not a valid plan",
    Reason.GENERATE_ERROR: "an exception while generating the candidate",
    Reason.ANNOTATE_ERROR: "an exception while annotating masks",
    Reason.SCORE_ERROR: "an exception while scoring",
    Reason.ENCODE_ERROR: "an exception while encoding the sample for the shard",
    Reason.SERVICE_UNAVAILABLE: "an external service was unreachable for this sample",
}

#: Reason for an exception in each stage, used by the error policy.
STAGE_ERROR: dict[str, Reason] = {
    "generate": Reason.GENERATE_ERROR,
    "annotate": Reason.ANNOTATE_ERROR,
    "score": Reason.SCORE_ERROR,
    "encode": Reason.ENCODE_ERROR,
}


def parse_reason(value: str) -> Reason:
    """Return the :class:`Reason` for ``value`` or raise ``ValueError`` listing the codes."""
    try:
        return Reason(value)
    except ValueError:
        allowed = ", ".join(r.value for r in Reason)
        raise ValueError(f"unknown reason code {value!r}; allowed: {allowed}") from None
