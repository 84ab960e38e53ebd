"""The Python API (``mcie.build``, ``read_index``, ``iter_samples``, ``audit_build``, ``train``)
and its example, ``examples/python_api.py``, run as a user runs it."""

import os
import pathlib
import pkgutil
import subprocess
import sys

import numpy as np
import pytest

import mcie
from mcie.exitcodes import UsageError

ROOT = pathlib.Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "python_api.py"
ENV = {**os.environ, "HF_HUB_OFFLINE": "1"}


@pytest.fixture(scope="module")
def example_build(tmp_path_factory):
    """``examples/python_api.py`` run once at its default size (20 candidates, 64 px): its
    output and its build folder."""
    out = tmp_path_factory.mktemp("api") / "set"
    r = subprocess.run(
        [sys.executable, str(EXAMPLE), str(out)], capture_output=True, text=True, env=ENV, timeout=600
    )
    assert r.returncode == 0, r.stderr
    return r.stdout, out


def test_the_example_builds_reads_iterates_and_audits(example_build):
    stdout, out = example_build
    lines = stdout.splitlines()
    index = mcie.read_index(str(out))
    statuses = index.column("status").to_pylist()
    assert index.num_rows == 20 and index.column("key").to_pylist() == sorted(index.column("key").to_pylist())
    accepted = statuses.count("accepted")
    assert 0 < accepted < 20  # the filter rejects some injected failures, keeps the rest
    assert lines[0].startswith("built 20 candidates: ") and f"'accepted': {accepted}" in lines[0]
    assert lines[1].startswith("index: 20 rows, ")
    shown = [line for line in lines if line.startswith("sample ")]
    assert len(shown) == 2 and all(" 64x64, " in line for line in shown)
    assert lines[-1] == "audit ok: True"


def test_iter_samples_gives_images_and_one_mask_per_sub_edit(example_build):
    _, out = example_build
    samples = list(mcie.iter_samples(str(out)))
    index = mcie.read_index(str(out), columns=["key", "status", "num_sub_edits"]).to_pylist()
    accepted = {r["key"]: r["num_sub_edits"] for r in index if r["status"] == "accepted"}
    assert sorted(s.key for s in samples) == sorted(accepted)  # every accepted sample once
    for shard in {s.shard for s in samples}:  # shard by shard, in key order within each
        keys = [s.key for s in samples if s.shard == shard]
        assert keys == sorted(keys)
    for s in samples:
        assert s.source.shape == s.target.shape == (64, 64, 3) and s.source.dtype == np.uint8
        assert len(s.masks) == accepted[s.key] == len(s.meta["sub_edits"])
        for m in s.masks:
            assert m.shape == (64, 64) and m.dtype == bool and m.any()
        changed = np.abs(s.source.astype(int) - s.target.astype(int)).max(axis=2) > 40
        inside = np.logical_or.reduce(s.masks)
        assert changed[inside].any()  # the edit shows inside its masks
        assert s.instruction == s.meta["instruction"] and s.shard.endswith(".tar")
    assert [s.key for s in mcie.iter_samples(str(out), limit=2)] == [s.key for s in samples[:2]]
    rejected = list(mcie.iter_samples(str(out), rejected=True))
    assert len(rejected) == 20 - len(samples) and all(s.meta["status"] == "rejected" for s in rejected)


def test_audit_build_is_the_audit_report(example_build):
    _, out = example_build
    report = mcie.audit_build(str(out))
    assert report["ok"] is True and report["problems"] == []


def test_build_takes_the_commands_flags_as_keywords(tmp_path):
    names = mcie.build_option_names()
    assert {"samples", "image_size", "seed", "workers", "lossless", "size", "beam_arg"} <= set(names)
    assert not {"out", "json", "no_progress", "help", "verbose", "preset"} & set(names)
    with pytest.raises(TypeError, match=r"unknown options \['sample'\]; allowed: .*samples"):
        mcie.build(str(tmp_path / "a"), sample=3)
    with pytest.raises(UsageError, match="invalid int value: 'many'"):
        mcie.build(str(tmp_path / "b"), samples="many")
    with pytest.raises(UsageError, match="invalid choice: 'huge'"):
        mcie.build(str(tmp_path / "c"), size="huge")
    assert not any(tmp_path.iterdir())  # refused before anything was written


def test_importing_mcie_loads_no_heavy_library():
    code = (
        "import sys, mcie\n"
        "heavy = ('torch', 'apache_beam', 'pyarrow', 'diffusers', 'transformers', 'numpy')\n"
        "print(sorted(m for m in heavy if m in sys.modules))\n"
        "mcie.build, mcie.TrainConfig, mcie.train, mcie.read_index\n"
        "print(sorted(m for m in heavy if m in sys.modules))\n"
        "print(mcie.__all__)\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=ENV, cwd=ROOT)
    assert r.returncode == 0, r.stderr
    before, after, names = r.stdout.splitlines()
    assert before == after == "[]"
    assert "'build'" in names and "'train'" in names


def test_no_api_name_is_a_submodule_name():
    # `import mcie.X` sets the attribute mcie.X to the module, which would hide a function X
    submodules = {m.name for m in pkgutil.iter_modules(mcie.__path__)}
    assert "audit" in submodules and not set(mcie.API) & submodules
    with pytest.raises(AttributeError, match="no attribute 'nothing'"):
        mcie.nothing  # noqa: B018


@pytest.mark.usefixtures("one_torch_thread")
def test_train_from_a_config(example_build, tmp_path):
    _, out = example_build
    cfg = mcie.TrainConfig(
        shards=f"{out}/shards/*.tar", out=str(tmp_path / "run"), preset="tiny", max_steps=2, report_to="none"
    )
    summary = mcie.train(cfg)
    assert summary["steps_run"] == 2 and summary["step"] == 2 and np.isfinite(summary["final_loss"])
    assert os.path.isdir(summary["checkpoint"]) and (tmp_path / "run" / "train_config.json").is_file()
    with pytest.raises(TypeError, match="takes a TrainConfig"):
        mcie.train({"shards": "x"})
