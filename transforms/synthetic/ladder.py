"""The task ladder: synthetic presets for small models, rendered at the model's own resolution.

A 256 px scene downscaled to 32 px leaves objects 3.5-7 px wide; these presets render the scene
at the model's resolution with few, large, mostly solid objects instead, so that a small editor
can learn the task on a CPU. Rungs, easiest first:

- ``mini``: 2 recolours, 2-3 objects;
- ``mini-3``: 2-3 sub-edits of add / remove / recolour, 2-4 objects; render and judge it at
  64 px: at 32 px the pixel judge fails 38% of perfect ``add`` s (3-4 px objects), a ceiling of
  0.87 against 0.99 at 64 px (benchmarks/RESULTS.md, CIE-Bench bounds);
- ``full``: the demo mix (every edit type, 2-5 sub-edits, default object sizes).

:func:`task_config` gives a rung with injected failures off (every target exact: CIE-Bench
sets); :func:`ladder_config` is the one place a rung meets the user's overrides and a failure
rate, for ``mcie build --task`` (a training set is an MCIE set: failures, judge, filter) and for
``mcie bench build``.
"""

from __future__ import annotations

import dataclasses

from mcie.transforms.synthetic.editor import FailureConfig
from mcie.transforms.synthetic.edits import EDIT_TYPES, EDIT_WEIGHTS
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


def ladder_config(
    task: str | None = None,
    image_size: int = 256,
    *,
    edit_types: list[str] | None = None,
    min_edits: int | None = None,
    max_edits: int | None = None,
    object_scale: float | None = None,
    failure_rate: float = 0.0,
    failure_magnitude: str = "standard",
    equal_weights: bool = False,
) -> SyntheticConfig:
    """Rung ``task`` (default ``full``: the demo mix) at ``image_size`` px with the user's
    overrides: ``edit_types`` restricts the rung's types (each keeps its weight in the rung, or
    its default weight; all 1.0 with ``equal_weights``, as CIE-Bench stratifies), ``min_edits`` /
    ``max_edits`` / ``object_scale`` replace the rung's, ``failure_rate`` is the share of
    candidates with an injected failure, ``failure_magnitude`` how strong (standard, subtle).
    Raises ValueError naming the allowed values."""
    cfg = task_config(task or "full", image_size)
    plan = cfg.plan
    if edit_types is not None:
        unknown = sorted(set(edit_types) - set(EDIT_TYPES))
        if not edit_types or unknown:
            raise ValueError(
                f"--edit-types: unknown or no edit types {unknown}; allowed: {', '.join(EDIT_TYPES)}"
            )
        rung = dict(plan.edit_weights)
        if equal_weights:  # in the order given: the planner draws in this order (the bytes)
            weights = tuple((t, 1.0) for t in edit_types)
        else:
            weights = tuple((t, rung.get(t, EDIT_WEIGHTS[t])) for t in EDIT_TYPES if t in edit_types)
        plan = dataclasses.replace(plan, edit_weights=weights)
    plan = dataclasses.replace(
        plan,
        min_edits=plan.min_edits if min_edits is None else min_edits,
        max_edits=plan.max_edits if max_edits is None else max_edits,
    )
    over = {"plan": plan, "failures": FailureConfig(rate=failure_rate, magnitude=failure_magnitude)}
    if object_scale is not None:
        over["object_scale"] = object_scale
    return dataclasses.replace(cfg, **over)
