"""An in-memory CLIP tokenizer for the synthetic grammar (no download, no files to fetch).

Offline, ``CLIPTokenizer.from_pretrained("<hub id>")`` silently returns an empty tokenizer, so
models built from a config get a tokenizer built here: CLIP's byte-level alphabet (every text
still tokenises) plus whole-word tokens for the words of the synthetic grammar, reached through
left-to-right BPE merges. Checkpoints save it with ``save_pretrained`` and load it back from
their own ``tokenizer/`` folder.
"""

from __future__ import annotations

import logging
import re

import torch
from transformers import CLIPTokenizer

from mcie.transforms.synthetic import planner, scene

log = logging.getLogger(__name__)


def _bytes_to_unicode() -> list[str]:
    """CLIP's (GPT-2's) reversible byte → printable-character table, in byte order."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1))
    bs += list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return [chr(c) for c in cs]


def grammar_words() -> list[str]:
    """Every word the synthetic planner and composer can write, sorted."""
    texts: list[str] = []
    for group in planner.TEMPLATES.values():
        texts += list(group)
    texts += [phrase for phrases in planner.CELL_WORDS.values() for phrase in phrases]
    texts += [w for pair in planner.PATTERN_ASKS.values() for w in pair] + list(
        planner.PATTERN_WORDS.values()
    )
    texts += list(scene.COLOURS) + list(scene.SHAPES) + list(scene.SIZES)
    texts += ["first then finally and also while you a an the bigger smaller enlarge shrink up down"]
    texts += ["leftmost rightmost topmost lowest left right of above below so it sits to be"]
    words = set()
    for t in texts:
        words.update(w for w in re.findall(r"[a-z]+", t.lower()) if len(w) > 1)
    return sorted(words)


def build_tokenizer(max_length: int, words: list[str] | None = None) -> CLIPTokenizer:
    """A CLIP tokenizer over the byte alphabet plus whole-word tokens for ``words``.

    ``max_length`` becomes ``model_max_length`` (the text encoder's position count).
    """
    alphabet = _bytes_to_unicode()
    vocab: dict[str, int] = {}
    for tok in alphabet + [c + "</w>" for c in alphabet]:
        vocab.setdefault(tok, len(vocab))
    merges: list[tuple[str, str]] = []
    seen: set[tuple[str, str]] = set()
    for word in words if words is not None else grammar_words():
        # CLIP's BPE sees a word as its characters with "</w>" glued to the last one
        pieces = list(word[:-1]) + [word[-1] + "</w>"]
        acc = pieces[0]
        for p in pieces[1:]:
            pair = (acc, p)
            acc = acc + p
            if pair not in seen:
                seen.add(pair)
                merges.append(pair)
            vocab.setdefault(acc, len(vocab))
    for special in ("<|startoftext|>", "<|endoftext|>"):
        vocab.setdefault(special, len(vocab))
    return CLIPTokenizer(vocab=vocab, merges=merges, model_max_length=max_length)


def token_ids(tokenizer, texts: list[str], max_length: int | None = None) -> torch.Tensor:
    """(N,) strings → (N, L) ids, padded/truncated to ``max_length`` (default: the tokenizer's
    max length; the one tokenisation used by training data and the model alike). A longer text
    is cut (its last token kept as the end-of-text token, as the tokenizer's own truncation
    does) with a warning that names its length: its later sub-instructions would be unseen."""
    limit = min(max_length or tokenizer.model_max_length, tokenizer.model_max_length)
    rows = tokenizer(texts, truncation=False).input_ids
    for text, ids in zip(texts, rows, strict=True):
        if len(ids) > limit:
            log.warning("instruction of %d tokens truncated to %d: %r", len(ids), limit, text[:80])
    out = torch.full((len(rows), limit), tokenizer.pad_token_id, dtype=torch.long)  # (N, L)
    for i, ids in enumerate(rows):
        ids = ids if len(ids) <= limit else ids[: limit - 1] + ids[-1:]
        out[i, : len(ids)] = torch.tensor(ids)
    return out
