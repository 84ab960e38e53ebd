"""MCIE-E1, the editor trained on MCIE shards.

Modules by role: :mod:`~mcie.model.config` (presets), :mod:`~mcie.model.attention` (SACA/BCCA
processors), :mod:`~mcie.model.source` (BCCA's source tokens), :mod:`~mcie.model.editor` (the
model, checkpoints), :mod:`~mcie.model.tokenizer`, :mod:`~mcie.model.decompose` (and
:mod:`~mcie.model.decompose_vlm`, its real VLM),
:mod:`~mcie.model.data` (shard loader), :mod:`~mcie.model.training` (loss),
:mod:`~mcie.model.trainer` (``mcie train``), :mod:`~mcie.model.infer` (``mcie edit``),
:mod:`~mcie.model.cli`. Nothing is imported here, so ``mcie`` without the model extra works.
"""
