"""``move``: an object goes to free space in another cell of the 3x3 grid."""

from __future__ import annotations

import dataclasses

from mcie.transforms.synthetic.scene import find_free_spot

from . import register
from .base import CELL_WORDS, JudgeCrop, TargetEdit, box_of, cell_of, cell_region, expected_area


@register
class Move(TargetEdit):
    name = "move"
    order = 40
    weight = 1.0
    default = True
    templates = (
        "move {ref} {dest}",
        "shift {ref} {dest}",
        "relocate {ref} {dest}",
        "drag {ref} over {dest}",
    )
    new_box_keys = ("to_box",)

    def plan_target(self, ctx, i, o, ref, template, params, rng):
        size = ctx.scene.size
        here = cell_of(o.cx, o.cy, size)
        cells = [c for c in CELL_WORDS if c != here]
        rng.shuffle(cells)
        spot = None
        for cell in cells[:4]:
            spot = find_free_spot(rng, o.r, size, ctx.occupied, cell_region(cell, size), tries=15)
            if spot is not None:
                break
        if spot is None:
            return None
        ctx.occupied.append((spot[0], spot[1], o.r))
        params.update(to_center=list(spot), to_box=box_of(*spot, o.r))
        return template.format(ref=ref, dest=CELL_WORDS[cell_of(*spot, size)][1])

    def apply(self, objs, edit, target, rgb) -> None:
        to = edit.params["to_center"]
        objs[target] = dataclasses.replace(objs[target], cx=to[0], cy=to[1])

    def check(self, c: JudgeCrop) -> float:
        """The source is cleared and the destination holds the object at its size."""
        j, p, g, m = c.judge, c.p, c.g, c.m
        inside = j.inside(g)
        cleared = float((~j.has(c.tgt[inside], c.old)).mean()) if g.any() else 0.0
        new = m & ~g
        if not new.any():
            return 0.0
        purity = j.purity(c.tgt[j.inside(new)], c.old, c.bg)
        expected = expected_area(p["shape"], p["r"])
        size_ok = j.size_score(c.tgt, new, c.bg, p["rgb"], p["pattern"], expected, j.small(g))
        return min(cleared, purity, size_ok)
