"""``swap``: two objects trade places (each keeps its look and size). Opt-in.

Its mask is the union of both objects' source and target footprints (like ``move``, for two
objects); the grounder is asked for both phrases, and the annotator finds the new footprints
as changed pixels in the planner's boxes at the two exchanged places. The two objects must
differ in colour (else the judge could not tell them apart, nor could a reader of the image),
and each place must be clear of every other object for the other one's size.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from mcie.transforms.synthetic.scene import clear_of

from . import register
from .base import JudgeCrop, PlanContext, PlannedEdit, TargetEdit, area_score, box_of, circle, expected_area


@register
class Swap(TargetEdit):
    name = "swap"
    order = 80
    weight = 1.0
    default = False  # opt-in (--edit-types): the default mix and its bytes stay as they were
    # Words the synthetic grammar already has (the MCIE-E1 tokenizer's vocabulary is built from
    # every template, so new words would change it), and none of replace's "swap {ref} for".
    templates = (
        "swap {ref} with {ref2}",
        "swap the place of {ref} with {ref2}",
        "swap {ref} over with {ref2}",
    )
    new_box_keys = ("to_box", "other_to_box")
    box_keys = ("box", "to_box", "other_box", "other_to_box")
    failures = ("missed", "partial")

    def plan(self, ctx: PlanContext, rng: np.random.Generator) -> PlannedEdit | None:
        edit = super().plan(ctx, rng)
        if edit is None:
            return None
        # the second object is a target too: no other sub-edit may touch it
        ctx.targets.append(edit.params["other"])
        return edit

    def plan_target(self, ctx, i, o, ref, template, params, rng):
        objs, size = ctx.scene.objects, ctx.scene.size
        j = ctx.take_target(exclude_colour=o.colour)
        if j is None:
            return None
        ctx.give_back(j)  # taken for real only once the swap fits (see plan)
        b = objs[j]
        others = [c for c in ctx.occupied if c not in (circle(o), circle(b))]
        if not (clear_of(b.cx, b.cy, o.r, size, others) and clear_of(o.cx, o.cy, b.r, size, others)):
            ctx.candidates.append(j)  # j may still serve another sub-edit
            return None
        params.update(
            other=j,
            other_phrase=ctx.refs[j],
            other_shape=b.shape,
            other_colour=b.colour,
            other_pattern=b.pattern,
            other_rgb=list(b.fill),
            other_r=b.r,
            other_box=box_of(b.cx, b.cy, b.r),
            to_box=box_of(b.cx, b.cy, o.r),
            other_to_box=box_of(o.cx, o.cy, b.r),
        )
        return template.format(ref=ref, ref2=ctx.refs[j])

    def apply(self, objs, edit, target, rgb) -> None:
        j = edit.params["other"]
        a, b = objs[target], objs[j]
        objs[target] = dataclasses.replace(a, cx=b.cx, cy=b.cy)
        objs[j] = dataclasses.replace(b, cx=a.cx, cy=a.cy)

    def targets(self, edit: PlannedEdit) -> list[int]:
        return [edit.target, edit.params["other"]]

    def ground(self, edit: PlannedEdit, src_fp: list[np.ndarray]) -> np.ndarray:
        return src_fp[edit.target] | src_fp[edit.params["other"]]

    def check(self, c: JudgeCrop) -> float:
        """Each exchanged place holds the other object at its size (area of its colours over
        the local background) and no longer shows the object that was there."""
        j, p = c.judge, c.p
        scores = []
        for me, gone, place in (("", "other_", "to_box"), ("other_", "", "other_to_box")):
            region = c.m & c.region(place)
            if not region.any():
                return 0.0
            # the background right around this place (the two places may lie far apart on a
            # gradient, and the old object's footprint left as background is large)
            bg = j.local_background(c.src, region)
            area = j.coverage(c.tgt, region, bg, p[me + "rgb"], p[me + "pattern"]).sum()
            # the base colour only: the anti-aliased rim of a light object can pass for the
            # light tint of a patterned one (a yellow rim read as orange's tint)
            left = (j.has(c.tgt, [tuple(p[gone + "rgb"])]) & region).sum()
            gone_area = expected_area(p[gone + "shape"], p[gone + "r"])
            scores += [
                area_score(area / expected_area(p[me + "shape"], p[me + "r"])),
                1.0 if left <= 0.15 * gone_area else 0.0,
            ]
        return min(scores)
