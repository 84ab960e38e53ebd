"""``recolour``: an object takes another named colour (its pattern kept)."""

from __future__ import annotations

import dataclasses

import numpy as np

from mcie.metrics import erode
from mcie.transforms.synthetic.scene import COLOURS

from . import register
from .base import JudgeCrop, TargetEdit


@register
class Recolour(TargetEdit):
    name = "recolour"
    order = 10
    weight = 2.0
    default = True
    templates = (
        "make {ref} {colour}",
        "change the colour of {ref} to {colour}",
        "paint {ref} {colour}",
        "turn {ref} {colour}",
        "recolour {ref} in {colour}",
        "colour {ref} {colour} instead",
    )
    failures = ("missed", "partial", "colour_off", "wrong_object")
    colour_key = "to_rgb"

    def plan_target(self, ctx, i, o, ref, template, params, rng):
        to = str(rng.choice([c for c in COLOURS if c != o.colour]))
        params.update(to=to, to_rgb=list(COLOURS[to]))
        return template.format(ref=ref, colour=to)

    def apply(self, objs, edit, target, rgb) -> None:
        objs[target] = dataclasses.replace(objs[target], colour=edit.params["to"], rgb=rgb)

    def distractor_ok(self, d, edit) -> bool:
        return d.colour != edit.params["to"]

    def check(self, c: JudgeCrop) -> float:
        """The inside of the object shows the new colour (and its pattern's tint)."""
        j, p = c.judge, c.p
        if not c.g.any():
            return 0.0
        inside = j.inside(c.g)
        new = j.colours(p["to_rgb"], p["pattern"])
        if erode(c.g, 1).sum() >= 8:
            return j.purity(c.tgt[inside], new, c.bg)
        # a few pixels wide: every pixel blends with the background or a neighbour; judge the
        # change itself, old colour to new in proportion, on every pixel of the footprint
        deltas = [np.subtract(n, o) for n, o in zip(new, c.old, strict=True)]
        # (colours differ by 65 levels and more, so a pixel a third covered changes visibly)
        return j.change_consistent(c.src[c.g], c.tgt[c.g], deltas, j.has(c.src[c.g], c.old), 0.3)
