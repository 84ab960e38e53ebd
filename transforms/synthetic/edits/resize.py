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
        """The object's area is ``scale**2`` times its expected area."""
        j, p, g = c.judge, c.p, c.g
        region = c.region("to_box") | g
        others = j.has(c.src, c.old) & region & ~g
        area = j.coverage(c.tgt, region & ~others, c.bg, p["rgb"], p["pattern"]).sum()
        return area_score(area / expected_area(p["shape"], p["r"], p["scale"]))
