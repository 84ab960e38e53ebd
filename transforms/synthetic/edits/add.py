"""``add``: a new object in free space; its mask is its footprint in the target."""

from __future__ import annotations

from typing import Any

import numpy as np

from mcie.transforms.synthetic.scene import (
    COLOURS,
    PATTERNS,
    SHAPES,
    SIZES,
    SceneObject,
    find_free_spot,
    shape_centroid,
)

from . import register
from .base import (
    CELL_WORDS,
    PATTERN_WORDS,
    EditType,
    JudgeCrop,
    PlanContext,
    PlannedEdit,
    article,
    box_of,
    cell_of,
    expected_area,
)

#: the least tolerance (px) on a new object's centroid
PLACE_TOL_PX = 0.75


@register
class Add(EditType):
    name = "add"
    order = 30
    weight = 1.5
    default = True
    templates = (
        "add {new} {where}",
        "put {new} {where}",
        "place {new} {where}",
        "draw {new} {where}",
        "insert {new} {where}",
    )
    mask_from = "target"
    new_box_keys = ("box",)
    failures = ("missed", "partial", "colour_off")
    colour_key = "rgb"

    def plan(self, ctx: PlanContext, rng: np.random.Generator) -> PlannedEdit | None:
        size = ctx.scene.size
        t = str(rng.choice(self.templates))
        shape = str(rng.choice(SHAPES))
        colour = str(rng.choice(list(COLOURS)))
        size_word = str(rng.choice(list(SIZES)))
        pattern = str(rng.choice(PATTERNS, p=[0.6, 0.2, 0.2]))
        r = SIZES[size_word] * size * ctx.object_scale
        spot = find_free_spot(rng, r, size, ctx.occupied)
        if spot is None:
            return None
        ctx.occupied.append((spot[0], spot[1], r))
        where = CELL_WORDS[cell_of(*spot, size)][0]
        desc = " ".join(
            w for w in (size_word, PATTERN_WORDS[pattern] if pattern != "solid" else "", colour, shape) if w
        )
        new = f"{article(desc)} {desc}"
        params: dict[str, Any] = {
            "shape": shape,
            "colour": colour,
            "size": size_word,
            "pattern": pattern,
            "rgb": list(COLOURS[colour]),
            "center": list(spot),
            "r": r,
            "box": box_of(*spot, r),
        }
        return PlannedEdit(self.name, None, params, t.format(new=new, where=where), new, shape)

    def apply(self, objs, edit, target, rgb) -> None:
        p = edit.params
        objs.append(
            SceneObject(
                p["shape"], p["colour"], p["size"], p["center"][0], p["center"][1], p["r"], p["pattern"], rgb
            )
        )

    def changed_after(self, after, edit) -> list[int]:
        return [len(after.objects) - 1]  # the new object is drawn last

    def check(self, c: JudgeCrop) -> float:
        """The new footprint has the asked colour, pattern, place and the asked shape's area."""
        j, p, m = c.judge, c.p, c.m
        if not m.any():
            return 0.0
        inside = j.inside(m)
        purity = j.purity(c.tgt[inside], c.old, c.bg)
        # a half-drawn shape has its centroid off where the whole shape would have it
        ys, xs = np.nonzero(m)
        ox, oy = shape_centroid(p["shape"])
        x0, y0 = c.origin
        cx, cy = p["center"][0] - x0 + ox * p["r"], p["center"][1] - y0 + oy * p["r"]
        # (a small shape's pixel mask moves its centroid by up to ~0.7 px with its sub-pixel place)
        tol = max(0.1 * p["r"], PLACE_TOL_PX)
        placed = 1.0 if np.hypot(xs.mean() + 0.5 - cx, ys.mean() + 0.5 - cy) <= tol else 0.0
        # (an object too small to show a pattern is not judged on it)
        pattern_ok = j.pattern_agreement(c.tgt, inside, p["rgb"], p["pattern"], p["r"])
        pattern_ok = 1.0 if pattern_ok is None else pattern_ok
        expected = expected_area(p["shape"], p["r"])
        size_ok = j.size_score(c.tgt, m, c.bg, p["rgb"], p["pattern"], expected, j.small(inside))
        return min(purity, size_ok, placed, pattern_ok)
