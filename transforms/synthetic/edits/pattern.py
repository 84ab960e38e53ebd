"""``pattern``: an object becomes plain, striped or dotted (its colour kept)."""

from __future__ import annotations

import dataclasses

import numpy as np

from mcie.metrics import erode
from mcie.transforms.synthetic.scene import PATTERNS, tint_of

from . import register
from .base import PATTERN_ASKS, JudgeCrop, TargetEdit

#: pixels of the old pattern's tint an edit to plain may leave as they were (a full pixel
#: inside the object): a clean one leaves none (all 144 such edits of 2,000 candidates at
#: 256 px, seed 1), a part left undone leaves its dots or stripes (22 pixels and more there);
#: the pattern's agreement alone misses it on a star's tip, whose core is a few pixels wide
OLD_TINT_LEFT_MAX = 3
#: pixels of the fitted stripes a few-pixel object may leave without them (see
#: :func:`_stripes_left_undone`): clean edits left none in 300 scenes of the full rung at 32
#: and at 64 px; a half left undone at 128 px left 10
STRIPES_UNDONE_MAX = 1


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
        if p["to_pattern"] == "solid" and _old_tint_left(j, c) > OLD_TINT_LEFT_MAX:
            return 0.0
        agreement = j.pattern_agreement(c.tgt, inside, p["rgb"], p["to_pattern"], p["r"])
        if agreement is None:
            # a few pixels wide: too small to show a pattern (a dot every 5 px at least); only
            # that base and tint swapped places, and nothing else changed, is judged
            swap = np.subtract(tint_of(tuple(p["rgb"])), p["rgb"])
            score = j.change_consistent(c.src[c.g], c.tgt[c.g], [swap, -swap])
            if p["to_pattern"] == "striped" and _stripes_left_undone(j, c) > STRIPES_UNDONE_MAX:
                return 0.0
            return score
        purity = j.purity(c.tgt[inside], j.colours(p["rgb"], "striped"), c.bg)
        return purity * agreement


def _stripes_left_undone(j, c: JudgeCrop) -> int:
    """On an object too small for :meth:`PixelJudge.pattern_agreement`: pixels a full pixel
    inside it and well inside a stripe (half a pixel from its edges) of the stripes that best
    explain where the target shows the tint, that do not show it (the fewest over equally good
    fits). A part left as it was by a
    partial edit keeps its old look where its stripes belong, which the colour-change check
    (it counts only changed pixels) cannot see; a clean edit paints every such pixel in the
    tint (the renderer's stripes are not anti-aliased)."""
    ys, xs = np.nonzero(c.g)
    tint = j.has(c.tgt[c.g], [tint_of(tuple(c.p["rgb"]))])
    inner = erode(c.g, 1)[ys, xs]
    fits = j.fit_stripes(xs, ys, tint, c.p["r"])
    return min(int((stripe & (margin >= 0.5) & inner & ~tint).sum()) for stripe, margin in fits)


def _old_tint_left(j, c: JudgeCrop) -> int:
    """Pixels a full pixel inside the object that show its pattern's tint and did not change
    (the renderer paints an object's inside exactly; its rim blends with the background and
    may look like the tint, so it is left out)."""
    core = erode(c.g, 1)
    tint = j.has(c.tgt[core], [tint_of(tuple(c.p["rgb"]))])
    same = np.abs(c.tgt[core].astype(np.int16) - c.src[core].astype(np.int16)).max(axis=1) <= 2
    return int((tint & same).sum())
