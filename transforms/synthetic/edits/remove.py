"""``remove``: an object disappears; its mask is its footprint in the source."""

from __future__ import annotations

from . import register
from .base import JudgeCrop, TargetEdit

#: pixels inside a removed object that may still show its colours: a clean removal leaves none
#: (1,071 of 2,000 subtle candidates at 256 px, seed 1), a part left behind leaves 20 and more
#: (the share alone passed 0.90 of a star whose tip stayed: its inside is mostly its body)
LEFT_MAX = 3


@register
class Remove(TargetEdit):
    name = "remove"
    order = 20
    weight = 1.5
    default = True
    templates = (
        "remove {ref}",
        "delete {ref}",
        "take away {ref}",
        "get rid of {ref}",
        "erase {ref}",
        "make {ref} disappear",
    )
    mask_from = "source"
    failures = ("missed", "partial", "wrong_object")

    def plan_target(self, ctx, i, o, ref, template, params, rng):
        return template.format(ref=ref)

    def apply(self, objs, edit, target, rgb) -> None:
        objs[target] = None

    def check(self, c: JudgeCrop) -> float:
        """The inside of the object no longer shows its colours (the share that does not; 0
        when more than :data:`LEFT_MAX` pixels still do)."""
        j = c.judge
        if not c.g.any():
            return 0.0
        left = j.has(c.tgt[j.inside(c.g)], c.old)
        return 0.0 if left.sum() > LEFT_MAX else float((~left).mean())
