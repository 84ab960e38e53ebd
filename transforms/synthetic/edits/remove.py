"""``remove``: an object disappears; its mask is its footprint in the source."""

from __future__ import annotations

from . import register
from .base import JudgeCrop, TargetEdit


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
        """The inside of the object no longer shows its colours."""
        j = c.judge
        if not c.g.any():
            return 0.0
        return float((~j.has(c.tgt[j.inside(c.g)], c.old)).mean())
