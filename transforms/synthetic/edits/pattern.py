"""``pattern``: an object becomes plain, striped or dotted (its colour kept)."""

from __future__ import annotations

import dataclasses

import numpy as np

from mcie.transforms.synthetic.scene import PATTERNS, tint_of

from . import register
from .base import PATTERN_ASKS, JudgeCrop, TargetEdit


@register
class Pattern(TargetEdit):
    name = "pattern"
    order = 70
    weight = 1.0
    default = True
    templates = (
        "make {ref} {pattern_adj}",
        "give {ref} {pattern_noun}",
        "cover {ref} with {pattern_noun}",
        "change the pattern of {ref} to {pattern_noun}",
    )
    failures = ("missed", "partial", "wrong_object")

    def plan_target(self, ctx, i, o, ref, template, params, rng):
        to = str(rng.choice([p for p in PATTERNS if p != o.pattern]))
        params.update(to_pattern=to)
        adj, noun = PATTERN_ASKS[to]
        return template.format(ref=ref, pattern_adj=adj, pattern_noun=noun)

    def apply(self, objs, edit, target, rgb) -> None:
        objs[target] = dataclasses.replace(objs[target], pattern=edit.params["to_pattern"])

    def distractor_ok(self, d, edit) -> bool:
        return d.pattern != edit.params["to_pattern"]

    def check(self, c: JudgeCrop) -> float:
        """The colour is kept and every part of the object shows the new pattern as the
        renderer draws it (so a partly done edit fails)."""
        j, p = c.judge, c.p
        inside = j.inside(c.g)
        if not c.g.any():
            return 0.0
        agreement = j.pattern_agreement(c.tgt, inside, p["rgb"], p["to_pattern"], p["r"])
        if agreement is None:
            # a few pixels wide: too small to show a pattern (a dot every 5 px at least); only
            # that base and tint swapped places, and nothing else changed, is judged
            swap = np.subtract(tint_of(tuple(p["rgb"])), p["rgb"])
            score = j.change_consistent(c.src[c.g], c.tgt[c.g], [swap, -swap])
            if p["to_pattern"] == "striped" and not _changed_in_every_half(j, c):
                return 0.0  # stripes (2 px bands) cross every half: a half left as it was is undone
            return score
        purity = j.purity(c.tgt[inside], j.colours(p["rgb"], "striped"), c.bg)
        return purity * agreement


def _changed_in_every_half(j, c: JudgeCrop) -> bool:
    """Whether each half of the object (cut through its centre in 4 directions) has a pixel
    whose colour moved: a partial edit of a few-pixel object leaves one half unchanged, which
    the colour-change check alone (it counts only changed pixels) cannot see."""
    ys, xs = np.nonzero(c.g)
    diff = np.abs(c.tgt[c.g].astype(np.int16) - c.src[c.g].astype(np.int16)).max(axis=1)
    changed = diff > j.config.colour_tol
    for angle in np.arange(4) * (np.pi / 4):
        proj = xs * np.cos(angle) + ys * np.sin(angle)
        mid = np.median(proj)
        if not changed[proj < mid].any() or not changed[proj > mid].any():
            return False
    return True
