"""The embedded default source: scene → plan → grounding → edit, one candidate per index.

Each candidate comes from its own RNG seeded with (seed, index), so a candidate's bytes never
depend on which worker made it or in which order.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import numpy as np

from mcie.images import PNG_LEVEL_FAST, encode_png, pixel_hash
from mcie.records import EditSample, SubEdit, content_key, mask_box
from mcie.transforms.synthetic.editor import FailureConfig, SceneEditor
from mcie.transforms.synthetic.edits import edit_type
from mcie.transforms.synthetic.planner import PlanConfig, ScenePlanner
from mcie.transforms.synthetic.scene import footprints, random_scene, render

GENERATOR_NAME = "synthetic-shapes-v1"
#: scenes drawn for one candidate before it is given up (then a ``failed`` row, never an abort)
REDRAWS = 64


@dataclasses.dataclass(frozen=True)
class SyntheticConfig:
    """Knobs of the synthetic domain."""

    image_size: int = 256
    min_objects: int = 3
    max_objects: int = 7
    #: chance that a new object is placed partly over an earlier one (occlusion)
    overlap_rate: float = 0.25
    #: multiplies object radii (scenes and added objects); presets for small models use > 1
    object_scale: float = 1.0
    #: share of striped or dotted objects
    pattern_rate: float = 0.4
    plan: PlanConfig = dataclasses.field(default_factory=PlanConfig)
    failures: FailureConfig = dataclasses.field(default_factory=FailureConfig)

    def __post_init__(self) -> None:
        if not 32 <= self.image_size <= 1024 or self.image_size % 8:
            raise ValueError(f"image_size must be a multiple of 8 in [32, 1024], got {self.image_size}")
        if not 0.0 <= self.overlap_rate <= 1.0:
            raise ValueError(f"overlap_rate must be in [0, 1], got {self.overlap_rate}")
        if not 0.25 <= self.object_scale <= 4.0:
            raise ValueError(f"object_scale must be in [0.25, 4], got {self.object_scale}")
        if not 0.0 <= self.pattern_rate <= 1.0:
            raise ValueError(f"pattern_rate must be in [0, 1], got {self.pattern_rate}")
        if not 2 <= self.min_objects <= self.max_objects <= 12:
            raise ValueError(
                f"need 2 <= min_objects <= max_objects <= 12, got {self.min_objects}, {self.max_objects}"
            )


class SyntheticSource:
    """Makes candidate :class:`EditSample` s and their truth rows for (seed, index)."""

    def __init__(self, config: SyntheticConfig | None = None) -> None:
        self.config = config or SyntheticConfig()
        plan = dataclasses.replace(self.config.plan, object_scale=self.config.object_scale)
        self.planner = ScenePlanner(plan)
        self.editor = SceneEditor(self.config.failures)

    def generate(self, seed: int, index: int) -> tuple[EditSample, dict[str, Any]]:
        """The candidate for ``index`` under ``seed`` and its truth row (for ``truth.parquet``)."""
        _, _, sample, truth = self.generate_with_scene(seed, index)
        return sample, truth

    def generate_with_scene(self, seed: int, index: int):
        """:meth:`generate` plus the source scene graph and the plan (for CIE-Bench)."""
        cfg = self.config
        rng = np.random.default_rng([seed, index])
        # a crowded scene may leave no room for a plan: draw another from the same stream (about 1
        # in 6,000 mini scenes needs more than 5 draws; after REDRAWS the candidate is a failed row)
        for attempt in range(REDRAWS):
            scene = random_scene(
                rng,
                cfg.image_size,
                cfg.min_objects,
                cfg.max_objects,
                cfg.overlap_rate,
                cfg.object_scale,
                cfg.pattern_rate,
            )
            try:
                edits, instruction = self.planner.plan(scene, rng)
                break
            except ValueError:
                if attempt == REDRAWS - 1:
                    raise
        src = render(scene)
        src_fp = footprints(scene)
        tgt, truth = self.editor.edit(scene, edits, rng, src_fp)
        subs = []
        for e in edits:
            # The grounder's answer: the visible footprint of the target phrase in the source.
            gmask = edit_type(e.edit_type).ground(e, src_fp)
            subs.append(
                SubEdit(
                    edit_type=e.edit_type,
                    instruction=e.instruction,
                    target_phrase=e.target_phrase,
                    label=e.label,
                    params=e.params,
                    ground_mask=gmask,
                    ground_box=mask_box(gmask),
                )
            )
        key = content_key(src.tobytes(), tgt.tobytes(), instruction)
        sample = EditSample(
            key=key,
            source_id=f"synthetic:{seed}:{index}",
            source_hash=pixel_hash(src),
            src=src,
            tgt=tgt,
            instruction=instruction,
            sub_edits=subs,
            provenance={"generator": GENERATOR_NAME, "seed": seed, "index": index},
        )
        truth_row = {
            "key": key,
            "source_id": sample.source_id,
            "num_failures": len(truth.failures),
            "failure_types": [f["type"] for f in truth.failures],
            "failures_json": json.dumps(truth.failures, sort_keys=True),
            "executed": truth.executed,
            "masks_png": [encode_png(m, PNG_LEVEL_FAST) for m in truth.masks],
        }
        return scene, edits, sample, truth_row

    def failed_key(self, seed: int, index: int) -> str:
        """Key of a candidate whose generation raised: a hash of where it came from."""
        return content_key(GENERATOR_NAME, str(seed), str(index))
