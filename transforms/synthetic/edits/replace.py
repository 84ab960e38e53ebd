"""``replace``: an object becomes another shape (colour and place kept)."""

from __future__ import annotations

import dataclasses

from mcie.transforms.synthetic.scene import SHAPES, shape_iou

from . import register
from .base import JudgeCrop, TargetEdit, article, box_of, expected_area


@register
class Replace(TargetEdit):
    name = "replace"
    order = 60
    weight = 1.0
    default = True
    templates = (
        "replace {ref} with {new_article} {new_shape}",
        "turn {ref} into {new_article} {new_shape}",
        "swap {ref} for {new_article} {new_shape}",
        "change {ref} into {new_article} {new_shape}",
    )
    new_box_keys = ("to_box",)

    def plan_target(self, ctx, i, o, ref, template, params, rng):
        shapes = [s for s in SHAPES if shape_iou(s, o.shape) < 0.8]
        to = str(rng.choice(shapes))
        params.update(to_shape=to, to_box=box_of(o.cx, o.cy, o.r))
        return template.format(ref=ref, new_article=article(to), new_shape=to)

    def apply(self, objs, edit, target, rgb) -> None:
        objs[target] = dataclasses.replace(objs[target], shape=edit.params["to_shape"])

    def check(self, c: JudgeCrop) -> float:
        """The object keeps its colour and place, has the new shape's area and no longer looks
        like the old shape."""
        j, p, g = c.judge, c.p, c.g
        region = c.region("to_box") | g
        now, before = j.object_pixels(c.src, c.tgt, region, g, c.old)
        others = j.has(c.src, c.old) & region & ~g
        expected = expected_area(p["to_shape"], p["r"])
        size_ok = j.size_score(c.tgt, region & ~others, c.bg, p["rgb"], p["pattern"], expected, j.small(g))
        overlap = (now & before).sum() / max((now | before).sum(), 1)
        return size_ok if overlap < 0.85 else 0.0
