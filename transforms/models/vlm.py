"""Shared VLM plumbing for the planner and the judge: load any transformers
image-text-to-text model, generate under a grammar constraint, score yes/no answers.

The constraint is a regular expression over the output text (:class:`RegexConstraint`), applied
per step by a logits processor: a token is allowed when the text so far plus that token is
still a prefix of some string the expression matches (the ``regex`` module's partial matching);
end-of-sequence is allowed only once the text matches in full, and then forced. Greedy decoding
only needs the best allowed token, so each step tests tokens in descending logit order and stops
at the first ``keep`` allowed ones — a few tests per step for a trained model, whatever the
vocabulary size.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Any

import numpy as np

from mcie import weights

log = logging.getLogger(__name__)


def load_vlm(name: str, device: str = "cpu", dtype: str = "float32"):
    """``(processor, model)`` from a hub name or local dir, via the Auto classes, in eval mode."""
    import torch
    from transformers import AutoModelForImageTextToText, AutoProcessor

    processor = AutoProcessor.from_pretrained(name)
    tok = getattr(processor, "tokenizer", processor)
    tok.padding_side = "left"  # decoder-only generation pads on the left
    load = AutoModelForImageTextToText.from_pretrained
    model = weights.from_pretrained(load, name, "VLM", dtype=getattr(torch, dtype))
    return processor, model.to(device).eval()


class RegexConstraint:
    """A compiled pattern and the decoded text of every token id (computed once)."""

    def __init__(self, pattern: str, tokenizer) -> None:
        import regex

        self.pattern = regex.compile(pattern, regex.DOTALL)
        self.eos_id = tokenizer.eos_token_id
        n = len(tokenizer)
        special = set(tokenizer.all_special_ids)
        texts: list[str | None] = []
        for i in range(n):
            t = None if i in special else tokenizer.decode([i], skip_special_tokens=False)
            # byte pieces of a multi-byte character decode to U+FFFD: never allowed
            texts.append(None if not t or "\ufffd" in t else t)
        self.token_text = texts
        self.valid_ids = None  # tensor of ids with text, made on the scores' device at first use

    def allows(self, text: str) -> bool:
        return self.pattern.fullmatch(text, partial=True) is not None

    def complete(self, text: str) -> bool:
        m = self.pattern.fullmatch(text)
        return m is not None and not m.partial


class ConstrainedLogits:
    """A transformers logits processor enforcing a :class:`RegexConstraint` on each row."""

    def __init__(
        self,
        constraint: RegexConstraint,
        prompt_len: int,
        keep: int = 1,
        row_seeds: list[int] | None = None,
        temperature: float = 1.0,
    ) -> None:
        self.c = constraint
        self.prompt_len = prompt_len
        self.keep = keep
        self.temperature = temperature
        self._text: dict[int, tuple[int, str]] = {}
        # per-row sampling with a generator per row: a row's tokens depend on its own seed, not
        # on which other rows share its batch (HF sampling draws from one global RNG)
        self._gens = None if row_seeds is None else [_cpu_generator(sd) for sd in row_seeds]

    def _row_text(self, row: int, ids) -> str:
        n, text = self._text.get(row, (0, ""))
        gen = ids[self.prompt_len :].tolist()
        for t in gen[n:]:
            piece = self.c.token_text[t] if t < len(self.c.token_text) else None
            text += piece or ""
        self._text[row] = (len(gen), text)
        return text

    def __call__(self, input_ids, scores):
        import torch

        if self.c.valid_ids is None or self.c.valid_ids.device != scores.device:
            self.c.valid_ids = torch.tensor(
                [i for i, t in enumerate(self.c.token_text) if t is not None], device=scores.device
            )
        valid = self.c.valid_ids[self.c.valid_ids < scores.shape[1]]
        out = torch.full_like(scores, float("-inf"))
        for row in range(scores.shape[0]):
            text = self._row_text(row, input_ids[row])
            eos = self.c.eos_id
            if self.c.complete(text) or not self.c.allows(text):
                out[row, eos] = 0.0  # done (or already off the grammar: stop)
                continue
            # only tokens with text are candidates (a model's vocabulary may be padded past the
            # tokenizer's); best first, test until `keep` are allowed
            order = valid[torch.argsort(scores[row, valid], descending=True)].tolist()
            allowed = []
            for t in order:
                if self.c.allows(text + self.c.token_text[t]):
                    allowed.append(t)
                    if len(allowed) >= self.keep:
                        break
            if not allowed:
                out[row, eos] = 0.0
            elif self._gens is None:
                out[row, allowed] = scores[row, allowed]
            else:  # sample among the allowed top-`keep`, then hand greedy search that one token
                probs = torch.softmax(scores[row, allowed].float().cpu() / self.temperature, dim=-1)
                pick = allowed[int(torch.multinomial(probs, 1, generator=self._gens[row]))]
                out[row, pick] = 0.0
        return out


def _cpu_generator(seed: int):
    import torch

    return torch.Generator("cpu").manual_seed(int(seed) % (2**63))


@dataclasses.dataclass
class Generation:
    """One generated answer: the text and whether it ended by the constraint or by the budget."""

    text: str
    finished: bool


def generate(
    processor,
    model,
    images: list[np.ndarray],
    prompts: list[str],
    *,
    max_new_tokens: int,
    constraint: RegexConstraint | None = None,
    row_seeds: list[int] | None = None,
    temperature: float = 1.0,
    keep: int = 8,
) -> list[Generation]:
    """Generate one answer per (image, prompt), batched. Greedy unless ``row_seeds`` is given:
    then each row samples (at ``temperature``) with its own seed — under a constraint among the
    ``keep`` best allowed tokens, reproducible whatever the batch; without one, with
    transformers' sampler seeded from the first row's seed."""
    import torch
    from PIL import Image
    from transformers import LogitsProcessorList

    texts = [_chat(processor, p) for p in prompts]
    pil = [Image.fromarray(im) for im in images]
    inputs = processor(images=pil, text=texts, return_tensors="pt", padding=True).to(model.device)
    if "pixel_values" in inputs:
        inputs["pixel_values"] = inputs["pixel_values"].to(model.dtype)
    prompt_len = inputs["input_ids"].shape[1]
    kw: dict[str, Any] = {"max_new_tokens": max_new_tokens, "do_sample": False}
    if constraint is not None:
        kw["logits_processor"] = LogitsProcessorList(
            [
                ConstrainedLogits(
                    constraint, prompt_len, 1 if row_seeds is None else keep, row_seeds, temperature
                )
            ]
        )
    elif row_seeds is not None:
        torch.manual_seed(row_seeds[0])
        kw.update(do_sample=True, top_k=0, top_p=1.0, temperature=temperature)
    tok = getattr(processor, "tokenizer", processor)
    with torch.inference_mode():
        out = model.generate(**inputs, pad_token_id=tok.pad_token_id, **kw)
    gens = []
    for row in out[:, prompt_len:].tolist():
        finished = tok.eos_token_id in row
        if finished:
            row = row[: row.index(tok.eos_token_id)]
        gens.append(Generation(tok.decode(row, skip_special_tokens=True), finished))
    return gens


def yes_probability(
    processor, model, images: list[np.ndarray], prompts: list[str], bias: float = 0.0
) -> list[float]:
    """P(yes) / (P(yes) + P(no)) of the first answer token, per (image, prompt), batched — a
    judge score that needs no parsing (VQAScore-style); ``bias`` is added to the yes-vs-no
    logit (calibration)."""
    import torch
    from PIL import Image

    texts = [_chat(processor, p) for p in prompts]
    inputs = processor(
        images=[Image.fromarray(im) for im in images], text=texts, return_tensors="pt", padding=True
    ).to(model.device)
    if "pixel_values" in inputs:
        inputs["pixel_values"] = inputs["pixel_values"].to(model.dtype)
    tok = getattr(processor, "tokenizer", processor)
    yes, no = _answer_ids(tok, "yes"), _answer_ids(tok, "no")
    with torch.inference_mode():
        logits = model(**inputs).logits[:, -1, :].float()  # (B, vocab), left padding: last is real
    lp = torch.log_softmax(logits, dim=-1)
    p_yes = torch.logsumexp(lp[:, yes], dim=-1)
    p_no = torch.logsumexp(lp[:, no], dim=-1)
    return torch.sigmoid(p_yes - p_no + bias).tolist()


def _answer_ids(tok, word: str) -> list[int]:
    """First token ids of the answer word in its usual spellings."""
    ids = set()
    for w in (word, word.capitalize(), " " + word, " " + word.capitalize()):
        enc = tok(w, add_special_tokens=False).input_ids
        if enc:
            ids.add(enc[0])
    return sorted(ids)


def _chat(processor, prompt: str) -> str:
    messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": prompt}]}]
    return processor.apply_chat_template(messages, add_generation_prompt=True)
