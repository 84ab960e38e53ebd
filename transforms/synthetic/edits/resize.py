"""``resize``: an object grows by 1.5 or shrinks to 0.6 of its radius, in place."""

from __future__ import annotations

import dataclasses

from mcie.transforms.synthetic.scene import clear_of

from . import register
from .base import JudgeCrop, TargetEdit, area_score, box_of, circle, expected_area


@register
class Resize(TargetEdit):
    name = "resize"
    order = 50
    weight = 1.0
    default = True
    templates = (
        "make {ref} {bigger}",
        "{scale_verb} {ref}",
        "resize {ref} to be {bigger}",
        "scale {ref} {updown}",
    )
    new_box_keys = ("to_box",)

    def plan_target(self, ctx, i, o, ref, template, params, rng):
        others = [c for c in ctx.occupied if c != circle(o)]
        bigger = bool(rng.random() < 0.5)
        scale = 1.5 if bigger else 0.6
        if bigger:
            if not clear_of(o.cx, o.cy, o.r * scale, ctx.scene.size, others):
                return None
            ctx.occupied.append((o.cx, o.cy, o.r * scale))
        params.update(scale=scale, to_box=box_of(o.cx, o.cy, o.r * max(scale, 1.0)))
        return template.format(
            ref=ref,
            bigger="bigger" if bigger else "smaller",
            scale_verb="enlarge" if bigger else "shrink",
            updown="up" if bigger else "down",
        )

    def apply(self, objs, edit, target, rgb) -> None:
        o = objs[target]
        objs[target] = dataclasses.replace(o, r=o.r * edit.params["scale"])

    def check(self, c: JudgeCrop) -> float:
        """The object's area is ``scale**2`` times its expected area: measured as coverage
        over the local background, or, where the object sat on another one (a shrink reveals
        it, and the rim then blends into it, not into the background), as the count of pixels
        showing the object's colours. The only failure a resize gets is a missed one (area off
        by 2.25x or 2.8x), so taking the better of two estimates costs no recall."""
        j, p, g = c.judge, c.p, c.g
        region = c.region("to_box") | g
        others = j.has(c.src, c.old) & region & ~g
        expected = expected_area(p["shape"], p["r"], p["scale"])
        area = j.size_score(c.tgt, region & ~others, c.bg, p["rgb"], p["pattern"], expected, j.small(g))
        pure = (j.has(c.tgt, c.old) & region & ~others).sum()
        return max(area, area_score(pure / expected))
