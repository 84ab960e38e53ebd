"""Instruction Compliance on real sets: the real-model VLM judge asks, per sub-instruction,
"was this carried out?" of the editor's output (the exact checker needs a known target, which
only synthetic sets have). The judge is the ``judge`` stage of a models file (``mcie models
tiny`` writes a tiny one; users name real weights)."""

from __future__ import annotations

import numpy as np

from mcie.records import EditSample, SubEdit

from .editors import BenchItem


class VLMChecker:
    """Per-sub-instruction executed flags from the models file's VLM judge."""

    def __init__(self, models_yaml: str) -> None:
        from mcie.transforms.models.config import load_models_config
        from mcie.transforms.models.handlers import JudgeHandler

        self.judge = JudgeHandler(load_models_config(models_yaml).judge).load_model()

    def check(self, item: BenchItem, output: np.ndarray) -> list[bool]:
        subs = [
            SubEdit(edit_type=t, instruction=text, target_phrase="", mask=region)
            for t, text, region in zip(item.edit_types, item.sub_instructions, item.regions, strict=True)
        ]
        sample = EditSample(
            key=f"bench{item.set_id}",
            source_id="",
            source_hash="",
            src=item.src,
            tgt=output,
            instruction=item.instruction,
            sub_edits=subs,
        )
        self.judge.judge_batch([sample])
        return [bool(s.executed) for s in sample.sub_edits]
