"""mcie: build, validate and train on complex-instruction image-editing datasets.

The Python API (:mod:`mcie.api`), for the jobs the command line does::

    import mcie

    mcie.build("out/set", samples=200, image_size=64)   # mcie build --out out/set ...
    index = mcie.read_index("out/set")                 # pyarrow.Table (.to_pandas())
    for sample in mcie.iter_samples("out/set", limit=2):
        sample.source, sample.target, sample.masks      # numpy arrays, a mask per sub-edit
    mcie.audit_build("out/set")                        # {"ok": ..., "problems": [...], ...}
    mcie.train(mcie.TrainConfig(shards="out/set/shards/*.tar", out="run", max_steps=50))

``import mcie`` imports none of it: each name is loaded on first use (PEP 562 module
``__getattr__``), and Beam, pyarrow and torch only when a function needs them.

The core package holds what every stage shares: the record types (:mod:`mcie.records`),
reason codes (:mod:`mcie.reasons`), exit codes (:mod:`mcie.exitcodes`), shards
(:mod:`mcie.shards`), metrics (:mod:`mcie.metrics`) and the command line (:mod:`mcie.cli`).
Stages live in :mod:`mcie.transforms`, pipelines in :mod:`mcie.pipeline`, MCIE-E1 in
:mod:`mcie.model`, CIE-Bench in :mod:`mcie.bench`.
"""

__version__ = "0.1.0"

#: the names :mod:`mcie.api` exports, loaded on first use; none is a submodule's name (importing
#: ``mcie.audit`` sets the attribute ``mcie.audit``, so the function is ``audit_build``)
API = (
    "Sample", "TrainConfig", "audit_build", "build", "build_option_names", "iter_samples", "read_index",
    "train",
)  # fmt: skip
__all__ = ["__version__", *API]


def __getattr__(name: str):
    if name in API:
        from mcie import api

        value = getattr(api, name)
        globals()[name] = value  # looked up once
        return value
    raise AttributeError(f"module 'mcie' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *API})
