"""Plan stage with a VLM: from a source image, 2–5 sub-edits and one complex instruction.

The model answers JSON in a fixed shape (edits first, so the complex instruction is written
after the model has committed to them)::

    {"edits":[{"type":"recolour","target":"the red cup","instruction":"make the cup blue",
               "box":[120,400,140,210]}, ...],
     "instruction":"Make the cup blue and remove the spoon."}

``box`` is ``[x, y, width, height]`` in 0–1000 coordinates of the image (Qwen2-VL-style
relative coordinates; width and height rather than corners so the grammar itself guarantees a
non-empty box); for ``add`` it is the free space where the new object goes.

Decoding is constrained by a regular expression of exactly this shape (:func:`plan_pattern`),
so a model, even a random one, cannot leave it; the text is then parsed strictly
(:func:`parse_plan`), which also rejects what the grammar cannot express (a target with no
letter, an empty box). A failed parse is retried by sampling (``retries`` times); then the
sample fails with ``plan_invalid`` and the raw text of the last attempt in its error.

Default edit types are those an inpainting editor can carry out in one region: add, remove,
recolour, replace, pattern (move and resize need two regions; allow them with ``edit_types``).
"""

from __future__ import annotations

import dataclasses
import json
import re
from importlib import resources

import numpy as np

from mcie.records import SubEdit

from .vlm import RegexConstraint, generate

#: the edit types the inpainting editor can carry out (the real backend's list of edit types)
INPAINT_EDIT_TYPES = ("add", "remove", "recolour", "replace", "pattern")
CONSTRAINTS = ("schema", "none")


@dataclasses.dataclass(frozen=True)
class PlannerConfig:
    """``constraint``: ``schema`` (regex-constrained decoding) or ``none``; ``retries``: sampled
    attempts after the greedy one; ``max_target``/``max_sub``/``max_instruction``: longest
    strings (characters) the grammar allows."""

    min_edits: int = 2
    max_edits: int = 5
    edit_types: tuple[str, ...] = INPAINT_EDIT_TYPES
    max_new_tokens: int = 512
    retries: int = 2
    constraint: str = "schema"
    max_target: int = 40
    max_sub: int = 120
    max_instruction: int = 400
    min_box_area: float = 0.002  # share of the image a box must cover
    #: 0: the first attempt is greedy; > 0: every attempt samples (more varied plans)
    temperature: float = 0.0
    seed: int = 0

    def __post_init__(self) -> None:
        object.__setattr__(self, "edit_types", tuple(self.edit_types))
        if not 1 <= self.min_edits <= self.max_edits:
            raise ValueError(f"need 1 <= min_edits <= max_edits, got {self.min_edits}, {self.max_edits}")
        bad = set(self.edit_types) - set(INPAINT_EDIT_TYPES)
        if bad or not self.edit_types:
            raise ValueError(f"edit_types {sorted(bad)} not in {INPAINT_EDIT_TYPES}")
        if self.constraint not in CONSTRAINTS:
            raise ValueError(f"constraint must be one of {CONSTRAINTS}, got {self.constraint!r}")
        if self.retries < 0 or self.max_new_tokens < 1:
            raise ValueError("retries must be >= 0 and max_new_tokens >= 1")


class PlanError(ValueError):
    """The planner's text is not a valid plan."""


@dataclasses.dataclass
class PlanResult:
    """A plan (``instruction`` and ``sub_edits``) or ``error`` with the ``raw`` text."""

    instruction: str
    sub_edits: list[SubEdit]
    raw: str
    attempts: int
    error: str = ""

    @property
    def ok(self) -> bool:
        return not self.error


def load_prompt(name: str) -> str:
    """A prompt template shipped as package data (``transforms/models/prompts/NAME.txt``)."""
    return resources.files("mcie.transforms.models").joinpath("prompts", f"{name}.txt").read_text()


def plan_pattern(c: PlannerConfig) -> str:
    """The regular expression of a plan's JSON text (compact: no spaces outside strings)."""

    def string(n: int) -> str:
        return r'"[^"\\\x00-\x1f]{1,' + str(n) + '}"'

    num = r"(?:1000|[1-9][0-9]{0,2}|0)"
    pos = r"(?:1000|[1-9][0-9]{0,2})"
    types = "|".join(re.escape(t) for t in c.edit_types)
    edit = (
        r'\{"type":"(?:' + types + r')","target":' + string(c.max_target)
        + r',"instruction":' + string(c.max_sub)
        + r',"box":\[' + ",".join([num, num, pos, pos]) + r"\]\}"
    )  # fmt: skip
    edits = edit + r"(?:," + edit + r"){" + f"{c.min_edits - 1},{c.max_edits - 1}" + "}"
    return r'\{"edits":\[' + edits + r'\],"instruction":' + string(c.max_instruction) + r"\}"


def parse_plan(text: str, width: int, height: int, c: PlannerConfig) -> tuple[str, list[SubEdit]]:
    """Parse and check a plan strictly; raises :class:`PlanError` saying what is wrong."""
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as exc:
        raise PlanError(f"not JSON: {exc}") from None
    if not isinstance(obj, dict) or set(obj) != {"edits", "instruction"}:
        raise PlanError("want an object with exactly the keys 'edits' and 'instruction'")
    edits, instruction = obj["edits"], obj["instruction"]
    if not isinstance(edits, list) or not c.min_edits <= len(edits) <= c.max_edits:
        raise PlanError(f"'edits' must be a list of {c.min_edits}-{c.max_edits} edits")
    _words(instruction, "instruction")
    subs = []
    for k, e in enumerate(edits):
        if not isinstance(e, dict) or set(e) != {"type", "target", "instruction", "box"}:
            raise PlanError(f"edit {k}: want exactly the keys type, target, instruction, box")
        if e["type"] not in c.edit_types:
            raise PlanError(f"edit {k}: type {e['type']!r} not in {c.edit_types}")
        target = _words(e["target"], f"edit {k} target")
        sub = _words(e["instruction"], f"edit {k} instruction")
        box = e["box"]
        if not (
            isinstance(box, list) and len(box) == 4 and all(type(v) is int and 0 <= v <= 1000 for v in box)
        ):
            raise PlanError(f"edit {k}: box must be 4 integers in 0-1000")
        x0, y0 = box[0], box[1]
        x1, y1 = min(x0 + box[2], 1000), min(y0 + box[3], 1000)
        if x1 <= x0 or y1 <= y0 or (x1 - x0) * (y1 - y0) < c.min_box_area * 1e6:
            raise PlanError(f"edit {k}: box {box} (x, y, w, h) is empty or smaller than min_box_area")
        px = [
            round(x0 * width / 1000),
            round(y0 * height / 1000),
            round(x1 * width / 1000),
            round(y1 * height / 1000),
        ]
        key = "box" if e["type"] == "add" else "plan_box"
        subs.append(
            SubEdit(
                edit_type=e["type"],
                instruction=sub,
                target_phrase=target,
                label=target.lower(),
                params={key: px},
            )
        )
    return instruction.strip(), subs


def _words(value, what: str) -> str:
    if not isinstance(value, str) or not re.search(r"[A-Za-z]{2}", value):
        raise PlanError(f"{what} must be text with a word in it, got {value!r}")
    return value.strip()


class VLMPlanner:
    """Plans a batch of images with one loaded VLM (see the module docstring)."""

    name = "vlm-planner-v1"

    def __init__(self, processor, model, config: PlannerConfig | None = None) -> None:
        self.processor, self.model = processor, model
        self.config = config or PlannerConfig()
        c = self.config
        self.prompt = load_prompt("planner").format(
            min_edits=c.min_edits, max_edits=c.max_edits, edit_types=", ".join(c.edit_types)
        )
        tok = getattr(processor, "tokenizer", processor)
        self.constraint = RegexConstraint(plan_pattern(c), tok) if c.constraint == "schema" else None

    def plan(self, images: list[np.ndarray], seeds: list[int] | None = None) -> list[PlanResult]:
        """One :class:`PlanResult` per image; never raises for a bad answer. ``seeds`` (one per
        image, e.g. from its hash) make sampled attempts reproducible whatever the batch."""
        seeds = seeds if seeds is not None else list(range(len(images)))
        c = self.config
        results: list[PlanResult | None] = [None] * len(images)
        todo = list(range(len(images)))
        for attempt in range(c.retries + 1):
            gens = generate(
                self.processor,
                self.model,
                [images[i] for i in todo],
                [self.prompt] * len(todo),
                max_new_tokens=c.max_new_tokens,
                constraint=self.constraint,
                row_seeds=None
                if attempt == 0 and c.temperature == 0
                else [(c.seed * 1_000_003 + seeds[i]) * 16 + attempt for i in todo],
                temperature=c.temperature or 1.0,
            )
            left = []
            for i, g in zip(todo, gens, strict=True):
                h, w = images[i].shape[:2]
                try:
                    if not g.finished:
                        raise PlanError(f"output cut off at max_new_tokens={c.max_new_tokens}")
                    instruction, subs = parse_plan(g.text, w, h, c)
                    results[i] = PlanResult(instruction, subs, g.text, attempt + 1)
                except PlanError as exc:
                    results[i] = PlanResult("", [], g.text, attempt + 1, error=str(exc))
                    left.append(i)
            todo = left
            if not todo:
                break
        return results  # type: ignore[return-value]
