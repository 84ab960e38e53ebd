"""Pipelines: ``mcie build`` (all stages fused per unit), each stage alone over record tables,
record-level PTransforms, options and the runner. Runs on Beam's ``FnApiRunner`` locally."""
