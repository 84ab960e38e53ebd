"""Decomposers: a complex instruction → sub-instructions, each with a region where known.

Three sources, one result type (:class:`Decomposition`):

- :class:`GrammarDecomposer`: offline parser of the synthetic grammar, written as the inverse
  of :func:`mcie.transforms.synthetic.planner.compose_instruction` (and of the planner's
  templates, which it turns into regular expressions, so new templates are picked up). Text
  alone locates only what the wording places: an ``add`` gets the 3x3 grid cell it names.
  Other sub-instructions (``make the red circle blue``) get no region; finding the object needs
  eyes, which is the MLLM decomposer's job.
- :func:`load_decomposition`: a user-given JSON file (schema in its docstring).
- :class:`MLLMDecomposer`: asks a VLM (any callable ``(image, prompt, attempt) -> reply
  text``; :mod:`mcie.model.decompose_vlm` wraps a real one with constrained decoding) for the
  sub-instructions with boxes, and retries on a bad reply.

How the editor uses regions: SACA ties each sub-instruction that has a region to it; a
sub-instruction without one is left out of the regional branch. BCCA needs the whole
background, so it is used only when every sub-instruction has a region.
"""

from __future__ import annotations

import dataclasses
import glob
import json
import math
import os
import re
from collections.abc import Callable

import numpy as np

from mcie.images import decode_mask
from mcie.transforms.synthetic import planner, scene


@dataclasses.dataclass
class SubInstruction:
    """One sub-instruction; ``box`` (x0, y0, x1, y1, pixels, exclusive) or ``mask`` (H, W) when
    its region is known."""

    text: str
    box: tuple[int, int, int, int] | None = None
    mask: np.ndarray | None = None
    edit_type: str | None = None

    @property
    def has_region(self) -> bool:
        return self.box is not None or self.mask is not None

    def region(self, height: int, width: int) -> np.ndarray:
        """(H, W) float32 in {0, 1} (zeros when unknown)."""
        out = np.zeros((height, width), np.float32)
        if self.mask is not None:
            m = np.asarray(self.mask)
            if m.shape != (height, width):
                raise ValueError(f"mask of {self.text!r} is {m.shape}, image is {(height, width)}")
            out[m > 0] = 1.0
        if self.box is not None:
            x0, y0, x1, y1 = (int(v) for v in self.box)
            out[max(y0, 0) : max(y1, 0), max(x0, 0) : max(x1, 0)] = 1.0
        return out


@dataclasses.dataclass
class Decomposition:
    """A complex instruction and its sub-instructions."""

    instruction: str
    subs: list[SubInstruction]

    @property
    def all_located(self) -> bool:
        return bool(self.subs) and all(s.has_region for s in self.subs)


# -- the synthetic grammar -------------------------------------------------------------------------


def split_complex_instruction(text: str) -> list[str]:
    """Inverse of :func:`~mcie.transforms.synthetic.planner.compose_instruction`: the
    sub-instructions, in order (the planner owns its grammar and its inverse)."""
    if not text.strip():
        raise ValueError("empty instruction")
    return planner.split_instruction(text)


def _alternatives(words) -> str:
    return "|".join(re.escape(w) for w in sorted(words, key=len, reverse=True))


#: what each template slot may hold (closed word lists where the grammar has them, so that
#: "make {ref} {colour}" and "make {ref} {bigger}" cannot be confused)
_SLOTS = {
    "colour": _alternatives(scene.COLOURS),
    "bigger": "bigger|smaller",
    "scale_verb": "enlarge|shrink",
    "where": _alternatives(w for w, _ in planner.CELL_WORDS.values()),
    "dest": _alternatives(d for _, d in planner.CELL_WORDS.values()),
    "updown": "up|down",
    "new_article": "an?",
    "new_shape": _alternatives(scene.SHAPES),
    "pattern_adj": _alternatives(a for a, _ in planner.PATTERN_ASKS.values()),
    "pattern_noun": _alternatives(n for _, n in planner.PATTERN_ASKS.values()),
    "ref": "the .+?",
    "new": "an? .+?",
}


def _template_patterns() -> list[tuple[str, re.Pattern, list[str]]]:
    out = []
    for edit_type, templates in planner.TEMPLATES.items():
        for t in templates:
            names = re.findall(r"{(\w+)}", t)
            pattern = re.escape(t)
            for n in names:
                pattern = pattern.replace(re.escape("{" + n + "}"), f"(?P<{n}>{_SLOTS.get(n, '.+?')})", 1)
            out.append((edit_type, re.compile(f"^{pattern}$"), names))
    return out


_PATTERNS = _template_patterns()
_CELL_BY_PHRASE = {phrase: cell for cell, phrases in planner.CELL_WORDS.items() for phrase in phrases}


def match_template(sub: str) -> tuple[str, dict[str, str]] | None:
    """(edit type, slot values) of a sub-instruction written from a planner template, or None."""
    for edit_type, pattern, _ in _PATTERNS:
        m = pattern.match(sub)
        if m:
            return edit_type, m.groupdict()
    return None


class GrammarDecomposer:
    """Offline decomposer for the synthetic grammar (see the module docstring)."""

    def decompose(self, instruction: str, width: int, height: int) -> Decomposition:
        subs = []
        for text in split_complex_instruction(instruction):
            match = match_template(text)
            sub = SubInstruction(text, edit_type=match[0] if match else None)
            if match and match[0] == "add" and match[1].get("where") in _CELL_BY_PHRASE:
                c, r = _CELL_BY_PHRASE[match[1]["where"]]
                sub.box = (c * width // 3, r * height // 3, (c + 1) * width // 3, (r + 1) * height // 3)
            subs.append(sub)
        return Decomposition(instruction, subs)


# -- user-given and MLLM decompositions ------------------------------------------------------------


def require_text(text: str, what: str) -> str:
    """``text`` when it is valid Unicode that UTF-8 can encode; else ValueError naming ``what``
    and the first bad character. A command-line argument holding bytes that are not UTF-8
    arrives with them as surrogate escapes (``\\udcXX``), and a JSON file may spell a lone
    surrogate (``"\\ud800"``): tokenizers crash on both."""
    for i, ch in enumerate(text):
        if "\ud800" <= ch <= "\udfff":
            code = ord(ch)
            bad = (
                f"byte 0x{code - 0xDC00:02x}" if 0xDC80 <= code <= 0xDCFF else f"lone surrogate U+{code:04X}"
            )
            raise ValueError(f"{what} is not valid UTF-8 text ({bad} at character {i}); write it in UTF-8")
    return text


def parse_decomposition(data: dict, base_dir: str = ".") -> Decomposition:
    """Build a :class:`Decomposition` from the JSON schema::

        {"instruction": "...",                       # optional
         "sub_instructions": [
            {"instruction": "make the star red", "box": [x0, y0, x1, y1]},
            {"instruction": "remove the circle", "mask": "mask1.png"},   # 0/255 PNG, image size
            {"instruction": "add a cat"}                                 # no region
         ]}

    Mask paths are relative to ``base_dir``.
    """
    from mcie import storage

    if not isinstance(data, dict) or not isinstance(data.get("sub_instructions"), list):
        raise ValueError("decomposition JSON needs a 'sub_instructions' list")
    subs = []
    for i, item in enumerate(data["sub_instructions"]):
        if not isinstance(item, dict) or not isinstance(item.get("instruction"), str):
            raise ValueError(f"sub_instructions[{i}] needs an 'instruction' string")
        require_text(item["instruction"], f"sub_instructions[{i}].instruction")
        box = item.get("box")
        if box is not None and not (
            isinstance(box, list)
            and len(box) == 4
            and all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in box)
        ):
            raise ValueError(f"sub_instructions[{i}].box must be [x0, y0, x1, y1] numbers, got {box!r}"[:300])
        mask = None
        if item.get("mask") is not None:
            if not isinstance(item["mask"], str) or not item["mask"]:
                raise ValueError(
                    f"sub_instructions[{i}].mask must be a file name, got {item['mask']!r}"[:300]
                )
            path = os.path.join(base_dir, item["mask"])
            with storage.open_regular(path) as fh:  # a FIFO named as a mask would block for ever
                data_ = fh.read()
            try:
                mask = decode_mask(data_)
            except Exception as exc:  # Pillow raises several types for bytes that are no image
                raise ValueError(f"sub_instructions[{i}].mask {path}: not a mask image ({exc})") from None
        subs.append(SubInstruction(item["instruction"], tuple(int(v) for v in box) if box else None, mask))
    instruction = data.get("instruction")
    if instruction is not None and not isinstance(instruction, str):
        raise ValueError(f"'instruction' must be a string, got {type(instruction).__name__}")
    instruction = require_text(instruction or " ".join(s.text for s in subs), "'instruction'")
    return Decomposition(instruction, subs)


def load_decomposition(path: str) -> Decomposition:
    """Read a user-given decomposition file (see :func:`parse_decomposition`)."""
    from mcie import storage

    with storage.open_regular(path) as fh:
        raw = fh.read()
    try:
        data = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path}: not valid JSON: {exc}") from exc
    except RecursionError:  # Python's parser recurses per nesting level
        raise ValueError(f"{path}: not a decomposition: JSON nested too deeply") from None
    try:
        return parse_decomposition(data, os.path.dirname(os.path.abspath(path)))
    except ValueError as exc:
        raise ValueError(f"{path}: {exc}") from None


def shard_sample_decomposition(path: str, key: str | None = None) -> tuple[str, np.ndarray, Decomposition]:
    """``(key, source image (H, W, 3) uint8, decomposition)`` of one sample of MCIE shards: the
    sample ``key`` (default: the first) of a shard file, of a folder of shards, or of a build
    folder's ``shards/``. The decomposition holds every sub-instruction with its mask (the
    ``mask{k}.png`` members), so SACA gets a region for each. Shards are untrusted: a bad key is
    refused before it is compared, a damaged tar raises (:func:`mcie.shards.read_tar`)."""
    from mcie.images import decode_image
    from mcie.keys import check_key
    from mcie.shards import read_tar

    if key is not None:
        check_key(key, "--key")
    if os.path.isdir(path):
        tars = sorted(glob.glob(os.path.join(glob.escape(path), "shards", "*.tar")))
        tars = tars or sorted(glob.glob(os.path.join(glob.escape(path), "*.tar")))
    elif os.path.isfile(path):
        tars = [path]
    else:
        raise FileNotFoundError(f"{path!r} is neither a shard file nor a folder")
    if not tars:
        raise FileNotFoundError(f"{path!r} holds no shards (*.tar, or shards/*.tar)")
    for tar in tars:
        for k, members in read_tar(tar):
            if key is not None and k != key:
                continue
            meta = json.loads(members["json"])
            src = members.get("src.png") or members.get("src.jpg")
            if src is None:
                raise ValueError(f"{tar}: sample {k} has no src.png / src.jpg")
            subs = []
            for i, sub in enumerate(meta["sub_edits"]):
                if f"mask{i}.png" not in members:
                    raise ValueError(f"{tar}: sample {k} lacks mask{i}.png")
                subs.append(SubInstruction(sub["instruction"], mask=decode_mask(members[f"mask{i}.png"]) > 0))
            return k, decode_image(src), Decomposition(meta["instruction"], subs)
    raise ValueError(f"no sample {key!r} in {path!r} ({len(tars)} shard(s))")


class DecompositionError(ValueError):
    """A VLM's reply is not a valid decomposition (after all its attempts, for
    :meth:`MLLMDecomposer.decompose`)."""


#: the reply's boxes are in 0-1000 coordinates of the image (Qwen2-VL style, as the VLM planner's):
#: the grammar then does not depend on the image size, and a box inside the range is inside the image
MLLM_PROMPT = (
    "Split this image-editing instruction into its sub-instructions (at most {max_subs}), in order. "
    "For each, give the box of the region it changes as [x0, y0, x1, y1] in 0-1000 coordinates of "
    "the image (0,0 is the top-left corner, 1000,1000 the bottom-right one). Answer with JSON only: "
    '{{"sub_instructions":[{{"instruction":"...","box":[x0,y0,x1,y1]}}]}}\n'
    "Instruction: {instruction}"
)


def relative_box_to_pixels(box, width: int, height: int) -> tuple[int, int, int, int]:
    """[x0, y0, x1, y1] in 0-1000 coordinates → pixels (exclusive end), clipped to the image.
    Corners are sorted first (a VLM may swap them); raises :class:`DecompositionError` for a box
    that is not 4 numbers or covers no pixel of the image."""
    if not (
        isinstance(box, list)
        and len(box) == 4
        and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in box)
    ):
        raise DecompositionError(f"box must be [x0, y0, x1, y1] numbers, got {box!r}")
    x0, x1 = sorted(min(max(float(v), 0.0), 1000.0) for v in (box[0], box[2]))
    y0, y1 = sorted(min(max(float(v), 0.0), 1000.0) for v in (box[1], box[3]))
    if x1 <= x0 or y1 <= y0:
        raise DecompositionError(f"box {box} covers no pixel of the {width}x{height} image")
    # floor / ceil: a box with an area keeps at least one pixel
    return (
        math.floor(x0 * width / 1000),
        math.floor(y0 * height / 1000),
        math.ceil(x1 * width / 1000),
        math.ceil(y1 * height / 1000),
    )


def parse_mllm_reply(reply: str, width: int, height: int) -> Decomposition:
    """The :class:`Decomposition` in a VLM's reply (text around the JSON object is ignored): a
    non-empty ``sub_instructions`` list, each with an ``instruction`` that has a letter in it and
    an optional ``box`` in 0-1000 coordinates (see :func:`relative_box_to_pixels`); a ``mask``
    key is ignored (a reply never names files on this machine). ``instruction`` is left empty for
    the caller. Raises :class:`DecompositionError` saying what is wrong."""
    start, end = reply.find("{"), reply.rfind("}")
    if start < 0 or end < start:
        raise DecompositionError("the reply holds no JSON object")
    try:
        data = json.loads(reply[start : end + 1])
    except json.JSONDecodeError as exc:
        raise DecompositionError(f"not valid JSON: {exc}") from None
    items = data.get("sub_instructions") if isinstance(data, dict) else None
    if not isinstance(items, list) or not items:
        raise DecompositionError("want a non-empty 'sub_instructions' list")
    subs = []
    for i, item in enumerate(items):
        text = item.get("instruction") if isinstance(item, dict) else None
        if not isinstance(text, str) or not re.search(r"[A-Za-z]", text):
            raise DecompositionError(f"sub_instructions[{i}] needs an 'instruction' with words in it")
        box = item.get("box")
        try:
            px = None if box is None else relative_box_to_pixels(box, width, height)
        except DecompositionError as exc:
            raise DecompositionError(f"sub_instructions[{i}]: {exc}") from None
        subs.append(SubInstruction(text.strip(), px))
    return Decomposition("", subs)


class MLLMDecomposer:
    """Decomposition by a VLM, retried on a bad reply.

    ``vlm(image, prompt, attempt) -> reply`` is any callable: load the model once and pass a
    bound method or object, e.g. :class:`mcie.model.decompose_vlm.DecompositionVLM` (greedy on
    attempt 0, seeded sampling after). The reply is parsed by :func:`parse_mllm_reply`; a bad one
    is asked again, ``retries`` times, then :class:`DecompositionError` names the last problem
    and quotes the reply.
    """

    def __init__(
        self,
        vlm: Callable[[np.ndarray, str, int], str],
        prompt: str = MLLM_PROMPT,
        retries: int = 2,
        max_subs: int = 5,
    ) -> None:
        if retries < 0:
            raise ValueError(f"retries must be >= 0, got {retries}")
        self.vlm, self.prompt, self.retries, self.max_subs = vlm, prompt, retries, max_subs
        self.attempts = 0  # attempts the last decompose() took

    def decompose(self, instruction: str, image: np.ndarray) -> Decomposition:
        """Sub-instructions of ``instruction`` with boxes in pixels of ``image`` (H, W, 3)."""
        h, w = image.shape[:2]
        prompt = self.prompt.format(instruction=instruction, max_subs=self.max_subs)
        for attempt in range(self.retries + 1):
            self.attempts = attempt + 1
            reply = self.vlm(image, prompt, attempt)
            try:
                d = parse_mllm_reply(reply, w, h)
            except DecompositionError as exc:
                error = exc
                continue
            d.instruction = instruction
            return d
        raise DecompositionError(
            f"no valid decomposition in {self.attempts} VLM attempt(s); last: {error}; reply {reply[:200]!r}"
        )
