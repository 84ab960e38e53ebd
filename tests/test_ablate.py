"""Smoke test of ``benchmarks/ablate_mcie_e1.py``: the four variants, trained and evaluated
through ``mcie train`` / ``mcie bench run`` at tiny sizes, give a table of the right shape."""

import importlib.util
import json
import os

import pytest
from PIL import Image

pytestmark = pytest.mark.model  # trains and samples four tiny MCIE-E1 variants

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _ablate():
    spec = importlib.util.spec_from_file_location(
        "ablate", os.path.join(ROOT, "benchmarks", "ablate_mcie_e1.py")
    )
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_ablation_table_plot_and_contact_sheet(tmp_path):
    ablate = _ablate()
    out = str(tmp_path / "ab")
    argv = [
        "--out", out, "--task", "mini", "--image-size", "32", "--train-samples", "24",
        "--bench-sets", "3", "--steps", "2", "--eval-every", "1", "--batch-size", "2",
        "--sample-steps", "2", "--average", "2", "--parallel", "0", "--contact-sets", "2",
    ]  # fmt: skip
    result = ablate.main(argv)
    rows = result["rows"]
    variants = list(ablate.VARIANTS)
    # 4 variants x 1 seed x 2 evaluated steps, in job order
    assert [(r["variant"], r["step"]) for r in rows] == [(v, s) for v in variants for s in (1, 2)]
    for r in rows:
        assert r["sets"] == 3 and r["checker"] == "pixel-judge"
        assert 0.0 <= r["ic"] <= 1.0 and 0.0 <= r["ic_exact"] <= 1.0
        assert -1.0 <= r["background_ssim"] <= 1.0 and r["background_l1"] >= 0.0
    assert [r["variant"] for r in result["runs"]] == variants
    assert all(r["train"]["cpu_s"] > 0 and r["train"]["load_mean"] >= 0 for r in result["runs"])
    # the JSON on disk is the returned result; the Markdown table has one line per row
    with open(os.path.join(out, "ablation.json")) as fh:
        assert json.load(fh)["rows"] == rows
    with open(os.path.join(out, "ablation.md")) as fh:
        md = fh.read().splitlines()
    assert sum(line.startswith("| mcie-e1 | 0 |") for line in md) == 2 + 1  # 2 steps + its cost row
    last = rows[-1]
    assert (
        f"| no-saca-no-bcca | 0 | 2 | {last['ic']:.3f} | {last['ic_exact']:.3f} | "
        f"{last['all_executed']:.3f} | {last['background_ssim']:.4f} | {last['background_l1']:.4f} |"
    ) in md
    # each run's checkpoints were scored by mcie bench run (its own summary per step)
    for v in variants:
        with open(os.path.join(out, "eval", f"{v}-s0-2", "summary.json")) as fh:
            s = json.load(fh)
        assert s["editor"].endswith(os.path.join(f"{v}-s0", "checkpoint-2"))
        assert (
            s["decomposition"] == "oracle"
            and s["instruction_compliance"] == rows[variants.index(v) * 2 + 1]["ic"]
        )
        # --sample-steps and --average given; the rest is the tiny-pixel checkpoint's own sampling
        assert s["steps"] == 2
        assert s["sampling"] == {
            "scheduler": "ddim",
            "guidance_scale": 1.0,
            "image_guidance_scale": 1.0,
            "average": 2,
        }
    assert "true decomposition, ddim 2 steps, guidance 1.0 / image 1.0, mean of 2 draws." in md[2]
    plot = Image.open(os.path.join(out, "ablation.png"))
    assert plot.size == (1100, 770)  # matplotlib: 10 x 7 inches at 110 dpi
    sheet = Image.open(os.path.join(out, "contact.png"))
    assert sheet.size == (6 * (128 + 6), 20 + 2 * (128 + 34))  # source, expected, 4 variants
    # --report-only trains nothing and reads the same evaluations back
    again = ablate.main([*argv, "--report-only"])
    assert again["rows"] == rows
    assert [r["train"] for r in again["runs"]] == [r["train"] for r in result["runs"]]
