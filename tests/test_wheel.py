"""The wheel works outside the clone: built from pyproject.toml, installed into a fresh venv, and
run from another folder through build → report → bench build/run → train → edit → ls.

Offline, so nothing is downloaded: the wheel is built with this interpreter's setuptools
(``pip wheel --no-build-isolation``) and installed with ``--no-deps``; the fresh venv reaches the
dependencies through a ``.pth`` file naming this interpreter's site-packages folders (lines of a
``.pth`` only extend ``sys.path``: the ``.pth`` files inside those folders, such as the clone's
editable-install hook, are not run). The commands then find ``mcie`` in the venv's own
site-packages only, and the test checks that: no path of the clone is importable there.
"""

import glob
import json
import os
import pathlib
import re
import shutil
import subprocess
import sys
import sysconfig

import numpy as np
import pytest
from PIL import Image

ROOT = pathlib.Path(__file__).resolve().parent.parent
#: what the wheel is built from: pyproject.toml's package folders, its readme and itself
SOURCES = ("pyproject.toml", "README.md", "mcie", "pipeline", "transforms", "model", "annotation", "bench")
#: the first setuptools that takes ``project.license`` as an SPDX string
SETUPTOOLS_MIN = (77,)

pytestmark = pytest.mark.slow


def _version(text: str) -> tuple[int, ...]:
    return tuple(int(p) for p in re.findall(r"\d+", text)[:3])


def newest_setuptools() -> str:
    """The sys.path folder holding the newest setuptools this interpreter can see. A venv made
    with ``python -m venv`` carries its own (older) setuptools, which shadows a newer one on a
    later path entry; the build gets the newest first on its PYTHONPATH."""
    found = []
    for entry in sys.path:
        for info in glob.glob(os.path.join(glob.escape(entry or "."), "setuptools-*.dist-info")):
            found.append((_version(os.path.basename(info)[len("setuptools-") :]), entry))
    assert found, "no setuptools on sys.path: the wheel cannot be built offline"
    version, entry = max(found)
    assert version >= SETUPTOOLS_MIN, f"setuptools {version} is older than pyproject's build requirement"
    return entry


def dependency_paths() -> list[str]:
    """This interpreter's site-packages folders (its dependencies), never the clone itself."""
    paths = [p for p in sys.path if p and os.path.basename(p.rstrip("/")) == "site-packages"]
    paths.append(sysconfig.get_paths()["purelib"])
    out = []
    for p in paths:
        if os.path.isdir(p) and p not in out and pathlib.Path(p).resolve() != ROOT:
            out.append(p)
    return out


def run(argv: list[str], cwd, env, timeout: int = 600) -> subprocess.CompletedProcess:
    r = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert r.returncode == 0, f"{argv}\n{r.stdout}\n{r.stderr}"
    return r


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """A fresh venv with the wheel installed: (venv folder, the pip output of building it)."""
    tmp = tmp_path_factory.mktemp("wheel")
    src, dist, venv = tmp / "src", tmp / "dist", tmp / "venv"
    src.mkdir()
    skip = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info")
    for name in SOURCES:
        path = ROOT / name
        if path.is_dir():
            shutil.copytree(path, src / name, ignore=skip)
        else:
            shutil.copy2(path, src / name)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PIP_REQUIRE_VIRTUALENV")}
    build_env = {**env, "PYTHONPATH": newest_setuptools(), "PIP_NO_INDEX": "1"}
    built = run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-w",
            str(dist),
            str(src),
        ],
        cwd=tmp,
        env=build_env,
    )
    (wheel,) = glob.glob(str(dist / "mcie-*.whl"))
    run([sys.executable, "-m", "venv", "--without-pip", str(venv)], cwd=tmp, env=env)
    (site,) = glob.glob(str(venv / "lib" / "python*" / "site-packages"))
    pathlib.Path(site, "mcie-deps.pth").write_text("".join(p + "\n" for p in dependency_paths()))
    run(
        [sys.executable, "-m", "pip", "--python", str(venv / "bin" / "python"), "install", "--no-deps",
         "--no-index", wheel],
        cwd=tmp,
        env={**env, "PIP_NO_INDEX": "1"},
    )  # fmt: skip
    return venv, built.stdout + built.stderr


def test_the_wheel_builds_without_warnings_and_ships_its_data(installed):
    venv, build_output = installed
    assert "Successfully built mcie" in build_output or "Created wheel for mcie" in build_output
    assert "warning" not in build_output.lower(), build_output
    (site,) = glob.glob(str(venv / "lib" / "python*" / "site-packages"))
    for data in ("mcie/report/assets/page.css", "mcie/report/assets/gallery.js",
                 "mcie/transforms/models/prompts/planner.txt", "mcie/py.typed"):  # fmt: skip
        assert os.path.isfile(os.path.join(site, data)), data


def test_the_installed_commands_run_from_another_folder(installed, tmp_path):
    venv, _ = installed
    mcie = str(venv / "bin" / "mcie")
    work = tmp_path / "work"
    work.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", MCIE_DEBUG="")

    # the package comes from the venv, not the clone
    where = run([str(venv / "bin" / "python"), "-c", "import sys, mcie, mcie.pipeline, mcie.model; "
                 "print(mcie.__file__); print(mcie.pipeline.__file__); print(repr(sys.path))"],
                cwd=work, env=env).stdout.splitlines()  # fmt: skip
    assert all(line.startswith(str(venv)) for line in where[:2]), where
    assert str(ROOT) not in eval(where[2])  # noqa: S307 - our own repr of a list of str

    # build → audit → report
    built = run([mcie, "build", "--out", "set", "--samples", "24", "--image-size", "64", "--seed", "3",
                 "--shard-size", "12", "--no-progress", "--json"], cwd=work, env=env)  # fmt: skip
    summary = json.loads(built.stdout)
    assert summary["candidates"] == 24 and summary["by_status"].get("accepted", 0) > 0
    assert sum(summary["by_status"].values()) == 24
    run([mcie, "audit", "set"], cwd=work, env=env)
    said = run([mcie, "report", "set", "--no-audit", "--json"], cwd=work, env=env).stdout
    report = json.loads(said.strip().splitlines()[-1])
    assert report["candidates"] == 24 and report["by_status"] == summary["by_status"]
    assert report["gallery_items"] == 24 and report["problems"] == []
    page = (work / "set" / "report.html").read_text()
    assert "<style" in page and "<script" in page  # the packaged assets, inlined
    assert page.count("data:image/") >= 24  # every gallery sample's thumbnail

    # CIE-Bench: build sets, run the oracle (its output is the expected target)
    run([mcie, "bench", "build", "--out", "bench", "--sets", "4", "--image-size", "32", "--seed", "1"],
        cwd=work, env=env)  # fmt: skip
    run([mcie, "bench", "run", "bench", "--editor", "oracle", "--out", "runs/oracle", "--no-progress"],
        cwd=work, env=env)  # fmt: skip
    results = {p.name for p in (work / "runs" / "oracle").iterdir()}
    assert {"summary.json"} <= results, results
    bench = json.loads((work / "runs" / "oracle" / "summary.json").read_text())
    # the oracle's target is the truth: exact compliance 1, the background untouched
    assert bench["sets"] == 4 and bench["ic_exact"] == 1.0 and bench["background_l1"] == 0.0
    assert 0.0 < bench["instruction_compliance"] <= 1.0

    # MCIE-E1: train two steps of the tiny preset on the build, edit one of its samples
    trained = run(
        [
            mcie,
            "train",
            "set/shards/*.tar",
            "--out",
            "run",
            "--preset",
            "tiny",
            "--max-steps",
            "2",
            "--batch-size",
            "2",
            "--report-to",
            "none",
            "--no-progress",
            "--json",
        ],
        cwd=work,
        env=env,
    )
    train = json.loads(trained.stdout.strip().splitlines()[-1])
    assert train["steps_run"] == 2 and np.isfinite(train["final_loss"])
    assert (work / "run" / "checkpoint-2").is_dir() and (work / "run" / "train_config.json").is_file()
    shard = sorted(glob.glob(str(work / "set" / "shards" / "*.tar")))[0]
    run([mcie, "edit", "--checkpoint", "run", "--from-shard", shard, "--out", "edited.png", "--steps", "2",
         "--no-progress"], cwd=work, env=env)  # fmt: skip
    edited = np.asarray(Image.open(work / "edited.png"))
    assert edited.shape == (64, 64, 3) and edited.std() > 0

    # Label Studio: the SDK is imported and the server asked for; nobody listens there (exit 3)
    ls = subprocess.run(
        [mcie, "ls", "export", "set", "--project", "wheel-test", "--url", "http://127.0.0.1:9",
         "--document-root", str(work)],
        cwd=work, env={**env, "LABEL_STUDIO_USER_TOKEN": "t"}, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert ls.returncode == 3 and "unreachable" in ls.stderr, ls.stderr
