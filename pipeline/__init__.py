"""Pipelines: ``mcie build`` (all stages fused per unit), each stage alone over record tables,
options, the runner and their commands (:mod:`.cli`). Runs on Beam's ``FnApiRunner`` locally."""
