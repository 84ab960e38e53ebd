"""mcie: build, validate and train on complex-instruction image-editing datasets.

The core package holds what every stage shares: the record types (:mod:`mcie.records`),
reason codes (:mod:`mcie.reasons`), exit codes (:mod:`mcie.exitcodes`), formats
(:mod:`mcie.formats`), metrics (:mod:`mcie.metrics`) and the command line (:mod:`mcie.cli`).
Stages live in :mod:`mcie.transforms`, pipelines in :mod:`mcie.pipeline`.
"""

__version__ = "0.1.0"
