"""A command whose extra is not installed exits 1 naming the extra, before it writes anything.

Each case runs ``mcie`` in a fresh interpreter in which one module cannot be imported: a finder
at the head of ``sys.meta_path`` raises ``ModuleNotFoundError`` for it and its submodules, as
Python does for a package that is not installed, so the command meets the absence through its
real code path.
"""

import os
import subprocess
import sys

import pytest

from mcie import extras

#: the interpreter's program: hide the modules named in argv[1] (comma-separated; a package
#: with its submodules), run mcie on the rest of argv
HIDING = """
import sys

class Hidden:
    def __init__(self, names):
        self.names = set(names)

    def find_spec(self, name, path=None, target=None):
        if any(name == n or name.startswith(n + ".") for n in self.names):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None

hidden = sys.argv[1].split(",")
sys.meta_path.insert(0, Hidden(hidden))
from mcie.cli import main

sys.exit(main(sys.argv[2:]))
"""


def run_without(modules: str, *argv: str, cwd) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "LABEL_STUDIO_USER_TOKEN": "not-used"}
    return subprocess.run(
        [sys.executable, "-c", HIDING, modules, *argv],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


TRAIN = ["train", "shards/*.tar", "--out", "run", "--preset", "tiny", "--max-steps", "2"]
CASES = {
    # id: (hidden modules, argv, extra, a missing module the message names)
    "train-safetensors": ("safetensors", TRAIN,
                          "model", "safetensors"),
    "train-torch": ("torch", TRAIN, "model", "torch"),
    "train-tensorboard": ("tensorboard", TRAIN,
                          "model", "tensorboard"),
    "edit-diffusers": ("diffusers", ["edit", "--checkpoint", "ckpt", "--image", "in.png",
                                     "--instruction", "make it red", "--out", "edited.png"],
                       "model", "diffusers"),
    "edit-mllm-regex": ("regex", ["edit", "--checkpoint", "ckpt", "--image", "in.png", "--instruction", "x",
                                  "--decomposer", "mllm", "--vlm", "models.yaml", "--out", "edited.png"],
                        "model", "regex"),
    "bench-run-mcie-e1": ("transformers", ["bench", "run", "bench", "--editor", "mcie-e1:ckpt",
                                            "--out", "run"], "model", "transformers"),
    "build-models": ("transformers", ["build", "--models", "models.yaml", "--out", "run"], "model",
                     "transformers"),
    "models-tiny": ("yaml", ["models", "tiny", "--out", "run"], "model", "yaml"),
    "ls-export": ("label_studio_sdk", ["ls", "export", "bench", "--project", "demo"], "annotation",
                  "label_studio_sdk"),
    "ls-import": ("label_studio_sdk", ["ls", "import", "bench", "--project", "demo"], "annotation",
                  "label_studio_sdk"),
    "dask": ("distributed", ["build", "--out", "run", "--samples", "4", "--runner", "dask"], "dask",
             "distributed"),
    "gcs": ("google.cloud.storage", ["build", "--out", "gs://bucket/set", "--samples", "4"], "cloud",
            "google.cloud.storage"),
    "s3": ("boto3", ["build", "--out", "s3://bucket/set", "--samples", "4"], "cloud", "boto3"),
}  # fmt: skip


@pytest.mark.parametrize("case", sorted(CASES))
def test_a_missing_extra_exits_1_naming_it(case, tmp_path):
    hidden, argv, extra, module = CASES[case]
    (tmp_path / "bench").mkdir()  # an input folder where a command needs one
    (tmp_path / "ckpt").mkdir()
    (tmp_path / "models.yaml").write_text("")
    r = run_without(hidden, *argv, cwd=tmp_path)
    assert r.returncode == 1, r.stderr
    line = r.stderr.strip().splitlines()[-1]
    assert line.startswith("mcie: error: ") and f"pip install 'mcie[{extra}]'" in line, line
    assert f"missing: {module}" in line or f", {module}" in line, line
    assert "Traceback" not in r.stderr
    assert not (tmp_path / "run").exists()  # refused before anything was written


def test_the_hiding_finder_hides_what_a_real_absence_hides(tmp_path):
    # the premise of the cases above: the finder makes the module unimportable, others stay
    probe = "import importlib.util as u, sys; print(u.find_spec('json') is not None); import safetensors"
    code = HIDING.replace("from mcie.cli import main\n\nsys.exit(main(sys.argv[2:]))", probe)
    r = subprocess.run([sys.executable, "-c", code, "safetensors"], capture_output=True, text=True)
    assert r.stdout.strip() == "True"
    assert "ModuleNotFoundError: No module named 'safetensors'" in r.stderr


def test_require_lists_every_missing_module_of_an_extra():
    extras.require("model", "x")  # installed here
    with pytest.raises(extras.UsageError) as info:
        extras.require("model", "mcie thing", ["torch", "no_such_module_a", "no.such.b"])
    assert str(info.value) == (
        "mcie thing needs the model extra (missing: no_such_module_a, no.such.b): "
        "pip install 'mcie[model]' (in a clone: pip install -e '.[model]')"
    )
    with pytest.raises(ValueError, match="unknown extra 'gpu'"):
        extras.require("gpu", "x")
