"""The Label Studio labeling config for reviewing MCIE candidates, and the names in it.

Layout (one task = one candidate):

* the complex instruction on top, source and target images side by side;
* five fixed sub-instruction slots (MCIE instructions have 2–5 sub-instructions). Slot ``k``
  shows the sub-instruction, its judge score, its own brush layer ``mask{k}`` on the target,
  its box ``box{k}``, a verdict ``verdict{k}`` (accept / reject / fixed) and a text area
  ``wording{k}`` to correct
  its wording. A slot is visible only when the task uses it: the export pre-fills a hidden
  multi-choice ``slots`` with the used slot numbers, and each slot view has
  ``visibleWhen="choice-selected"`` on it (Label Studio cannot hide a view from task data
  alone, but it can from a pre-annotated choice);
* the overall verdict ``verdict`` (accept / reject / fixed, required), the reason ``reason``
  (shown when rejecting; the human-review codes of :mod:`mcie.reasons`) and a text area
  ``instruction_fix`` to correct the complex instruction's wording.

Choices are ours (the design fixes the content, not the names); the names are the contract
between :mod:`mcie.annotation.tasks` (export) and :mod:`mcie.annotation.verdicts` (import).
"""

from __future__ import annotations

from xml.sax.saxutils import quoteattr

from mcie.reasons import DESCRIPTIONS, Reason

#: Fixed number of sub-instruction slots (MCIE: 2–5 sub-instructions per instruction).
SLOTS = 5
VERDICTS = ("accept", "reject", "fixed")
#: Reasons a reviewer may give when rejecting (the human-review codes of mcie.reasons).
REVIEW_REASONS: tuple[Reason, ...] = (Reason.HUMAN_REJECTED, Reason.WRONG_INSTRUCTION, Reason.BAD_MASK)
#: A distinct, readable colour per slot's brush layer.
SLOT_COLOURS = ("#e6194b", "#3cb44b", "#4363d8", "#f58231", "#911eb4")

IMAGE_SRC, IMAGE_TGT = "src", "tgt"
SLOTS_CONTROL = "slots"
OVERALL = "verdict"
REASON = "reason"
INSTRUCTION_FIX = "instruction_fix"
#: Style of the view holding the hidden ``slots`` choice (the control still keeps and submits
#: its pre-annotated value).
HIDDEN_STYLE = "display: none"


def mask_control(k: int) -> str:
    """Name of slot ``k``'s brush layer."""
    return f"mask{k}"


def mask_label(k: int) -> str:
    """The one label of slot ``k``'s brush layer."""
    return f"sub-instruction {k + 1}"


def box_control(k: int) -> str:
    """Name of slot ``k``'s box layer (the pipeline's box; import derives boxes from masks)."""
    return f"box{k}"


def verdict_control(k: int) -> str:
    """Name of slot ``k``'s verdict choice."""
    return f"verdict{k}"


def wording_control(k: int) -> str:
    """Name of slot ``k``'s wording text area."""
    return f"wording{k}"


def _choices(name: str, values: list[tuple[str, str]], *, required: bool = False, extra: str = "") -> str:
    req = ' required="true"' if required else ""
    items = "".join(f"<Choice value={quoteattr(v)} hint={quoteattr(h)}/>" for v, h in values)
    return (
        f'<Choices name="{name}" toName="{IMAGE_TGT}" choice="single-radio" showInline="true"{req}{extra}>'
        f"{items}</Choices>"
    )


def _slot(k: int) -> str:
    verdicts = [(v, f"sub-instruction {k + 1}: {v}") for v in VERDICTS]
    return (
        f'<View visibleWhen="choice-selected" whenTagName="{SLOTS_CONTROL}" whenChoiceValue="{k}"'
        ' style="border-top: 1px solid #ddd; padding-top: 4px">'
        f'<Header value="Sub-instruction {k + 1}" size="5"/>'
        f'<Text name="sub{k}" value="$sub{k}"/>'
        f'<Text name="score{k}" value="$score{k}"/>'
        f'<BrushLabels name="{mask_control(k)}" toName="{IMAGE_TGT}">'
        f'<Label value="{mask_label(k)}" background="{SLOT_COLOURS[k]}"/></BrushLabels>'
        # boxes as outlines only: Label Studio's default fill tinted the edit (seen in a browser:
        # an orange diamond looked red under its filled box)
        f'<RectangleLabels name="{box_control(k)}" toName="{IMAGE_TGT}" fillOpacity="0" strokeWidth="2">'
        f'<Label value="{mask_label(k)}" background="{SLOT_COLOURS[k]}"/></RectangleLabels>'
        + _choices(verdict_control(k), verdicts)
        + f'<TextArea name="{wording_control(k)}" toName="{IMAGE_TGT}" editable="true" maxSubmissions="1"'
        ' rows="1" placeholder="corrected wording of this sub-instruction (optional)"/>'
        "</View>"
    )


def labeling_config() -> str:
    """The labeling config XML (deterministic: a project created twice gets the same text)."""
    overall = [(v, f"the whole sample: {v}") for v in VERDICTS]
    reasons = [(r.value, DESCRIPTIONS[r]) for r in REVIEW_REASONS]
    slot_choices = "".join(f'<Choice value="{k}"/>' for k in range(SLOTS))
    return (
        "<View>"
        '<Header value="Complex instruction"/>'
        '<Text name="instruction" value="$instruction"/>'
        '<View style="display: flex; gap: 8px">'
        f'<View style="flex: 1"><Header value="Source" size="5"/>'
        f'<Image name="{IMAGE_SRC}" value="$src"/></View>'
        f'<View style="flex: 1"><Header value="Target" size="5"/>'
        f'<Image name="{IMAGE_TGT}" value="$tgt"/></View>'
        "</View>"
        # Hidden: pre-filled by the export with the used slots; drives the slots' visibility.
        # Hidden by style, not by visibleWhen on this choice: a view whose visibility depends
        # on a control inside it is a mobx cycle and Label Studio's labeling view stays blank.
        f'<View style="{HIDDEN_STYLE}">'
        f'<Choices name="{SLOTS_CONTROL}" toName="{IMAGE_TGT}" choice="multiple">{slot_choices}</Choices>'
        "</View>"
        + "".join(_slot(k) for k in range(SLOTS))
        + '<Header value="Overall verdict" size="5"/>'
        + _choices(OVERALL, overall, required=True)
        + f'<View visibleWhen="choice-selected" whenTagName="{OVERALL}" whenChoiceValue="reject">'
        '<Header value="Reason for rejecting" size="6"/>' + _choices(REASON, reasons) + "</View>"
        f'<TextArea name="{INSTRUCTION_FIX}" toName="{IMAGE_TGT}" editable="true" maxSubmissions="1"'
        ' rows="2" placeholder="corrected complex instruction (optional)"/>'
        "</View>"
    )
