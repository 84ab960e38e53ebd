"""The task ladder: synthetic presets for small models, rendered at the model's own resolution.

A 256 px scene downscaled to 32 px leaves objects 3.5-7 px wide; these presets render the scene
at the model's resolution with few, large, mostly solid objects instead, so that a small editor
can learn the task on a CPU. Rungs, easiest first:

- ``mini``: 2 recolours, 2-3 objects;
- ``mini-3``: 2-3 sub-edits of add / remove / recolour, 2-4 objects; render and judge it at
  64 px: at 32 px the pixel judge fails 38% of perfect ``add`` s (3-4 px objects), a ceiling of
  0.87 against 0.99 at 64 px (benchmarks/RESULTS.md, issue 12);
- ``full``: the demo mix (every edit type, 2-5 sub-edits, default object sizes).

Injected failures are off: every sample's target is exact.
"""

from __future__ import annotations

import dataclasses

from mcie.transforms.synthetic.editor import FailureConfig
from mcie.transforms.synthetic.generator import SyntheticConfig
from mcie.transforms.synthetic.planner import PlanConfig

TASKS = ("mini", "mini-3", "full")


def task_config(name: str, image_size: int = 32, **overrides) -> SyntheticConfig:
    """The :class:`SyntheticConfig` of ladder rung ``name`` at ``image_size`` px; ``overrides``
    replace fields (e.g. ``plan=PlanConfig(...)``)."""
    if name == "mini":
        base = dict(
            min_objects=2,
            max_objects=3,
            overlap_rate=0.0,
            object_scale=2.4,
            pattern_rate=0.0,
            plan=PlanConfig(min_edits=2, max_edits=2, edit_weights=(("recolour", 1.0),)),
        )
    elif name == "mini-3":
        base = dict(
            min_objects=2,
            max_objects=4,
            overlap_rate=0.0,
            object_scale=2.0,
            pattern_rate=0.0,
            plan=PlanConfig(
                min_edits=2,
                max_edits=3,
                edit_weights=(("add", 1.0), ("remove", 1.0), ("recolour", 1.0)),
            ),
        )
    elif name == "full":
        base = {}
    else:
        raise ValueError(f"unknown task {name!r}; allowed: {', '.join(TASKS)}")
    cfg = SyntheticConfig(image_size=image_size, failures=FailureConfig(rate=0.0), **base)
    return dataclasses.replace(cfg, **overrides) if overrides else cfg
