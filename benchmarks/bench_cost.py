"""Per-sample CPU cost of the synthetic build next to a naive draw-and-encode of the same
scenes, and where the build's time goes.

* **naive**: for candidate i, the scene of (seed, i) — the build's own scene graph — drawn with
  plain PIL (one polygon per object: no anti-aliasing, no pattern, flat background), a target
  drawn the same way with one object left out, both encoded as JPEG as the shards encode them,
  and K masks (K from the plan's range, as many as the build's sub-edits on average) drawn and
  encoded as PNG. What a sample's images cost at the least.
* **pipeline**: the build's per-sample work in one process without Beam
  (``bench_build.plain_loop``: generate, annotate, score, encode, write shards and parts).
* **build** (``--build``): ``mcie build --workers 1`` as a command (FnApiRunner), CPU of the
  command and its worker processes.

Each is measured ``--repeats`` times, back to back in one run; the ratios (CPU ms per sample
over the naive's) are of one run, with the load average printed beside them. ``--profile``
adds a cProfile of the pipeline loop: the cumulative seconds of each stage.

    .venv/bin/python benchmarks/bench_cost.py --samples 300 --image-size 256 --repeats 3 --profile
"""

from __future__ import annotations

import argparse
import cProfile
import json
import os
import pstats
import shutil
import sys
import tempfile
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from bench_build import _children_cpu  # noqa: E402


def naive_loop(samples: int, seed: int, image_size: int) -> tuple[float, float]:
    """CPU seconds of the naive draw-and-encode of ``samples`` scenes (see the module
    docstring), and the part of it spent drawing the scene graphs (the build's own sampler)."""
    from PIL import Image, ImageDraw

    from mcie.images import PNG_LEVEL_FAST, encode_jpeg, encode_png
    from mcie.transforms.synthetic.generator import SyntheticConfig
    from mcie.transforms.synthetic.scene import BACKGROUND_COLOURS, _polygon, random_scene

    cfg = SyntheticConfig(image_size=image_size)
    c0 = time.process_time()
    scene_s = 0.0
    for i in range(samples):
        s0 = time.process_time()
        rng = np.random.default_rng([seed, i])
        scene = random_scene(rng, cfg.image_size, cfg.min_objects, cfg.max_objects, cfg.overlap_rate,
                             cfg.object_scale, cfg.pattern_rate)  # fmt: skip
        scene_s += time.process_time() - s0
        objs = scene.objects

        def shape(d, o, fill):
            if o.shape == "circle":
                d.ellipse((o.cx - o.r, o.cy - o.r, o.cx + o.r, o.cy + o.r), fill=fill)
            else:
                d.polygon(_polygon(o.shape, o.cx, o.cy, o.r), fill=fill)

        def draw(objs, bg=BACKGROUND_COLOURS[scene.background]):
            img = Image.new("RGB", (image_size, image_size), bg)
            d = ImageDraw.Draw(img)
            for o in objs:
                shape(d, o, o.fill)
            return np.asarray(img)

        encode_jpeg(draw(objs))
        encode_jpeg(draw(objs[:-1]))
        k = int(rng.integers(cfg.plan.min_edits, cfg.plan.max_edits + 1))
        for o in (objs * k)[:k]:
            m = Image.new("L", (image_size, image_size), 0)
            shape(ImageDraw.Draw(m), o, 255)
            encode_png(np.asarray(m) > 127, PNG_LEVEL_FAST)
    return time.process_time() - c0, scene_s


def pipeline_loop(out: str, samples: int, seed: int, image_size: int, shard_size: int) -> float:
    """CPU seconds of the build's per-sample work in this process, no Beam
    (:func:`bench_build.plain_loop`)."""
    from bench_build import plain_loop

    return plain_loop(out, samples, shard_size, seed, cpu=True, image_size=image_size)[1]


def build_cpu(out: str, samples: int, seed: int, image_size: int, shard_size: int) -> float:
    """CPU seconds of ``mcie build --workers 1`` (the command and its workers)."""
    import subprocess

    cmd = [sys.executable, "-m", "mcie.cli", "build", "--out", out, "--samples", str(samples),
           "--seed", str(seed), "--image-size", str(image_size), "--shard-size", str(shard_size),
           "--workers", "1", "--no-progress"]  # fmt: skip
    c0 = _children_cpu()
    subprocess.run(cmd, capture_output=True, check=True)
    return _children_cpu() - c0


#: stages of the profile: label -> function names (``file:function`` suffixes) whose cumulative
#: time is the stage's; the first match of each is reported
STAGES = {
    "generate (scene, plan, render, edit, truth)": ["generator.py:generate"],
    "  render (supersampled coverage + composite)": ["scene.py:render"],
    "  background texture": ["scene.py:background"],
    "  edit (target scene + failures)": ["editor.py:edit"],
    "  truth masks PNG": ["generator.py:<listcomp>"],
    "  content key (blake2b)": ["records.py:content_key"],
    "  source hash (blake2b)": ["images.py:pixel_hash"],
    "annotate": ["annotate.py:annotate"],
    "judge": ["judge.py:judge"],
    "unit writer add (members, tar, parts rows)": ["sink.py:add"],
    "  shard member encode (JPEG + mask PNGs)": ["shards.py:sample_members"],
    "    encode_jpeg": ["images.py:encode_jpeg"],
    "unit writer close (parts, stats, digests)": ["sink.py:close"],
    "all encode_png (truth, shard, parts)": ["images.py:encode_png"],
}


def profile_stages(out: str, samples: int, seed: int, image_size: int, shard_size: int) -> dict:
    """cProfile of :func:`pipeline_loop`: cumulative seconds per stage and the top functions."""
    # CPU time: cProfile's default clock is wall time, which a loaded machine inflates
    prof = cProfile.Profile(time.process_time)
    prof.enable()
    pipeline_loop(out, samples, seed, image_size, shard_size)
    prof.disable()
    stats = pstats.Stats(prof)
    total = sum(v[2] for v in stats.stats.values())  # tottime summed: the profiled CPU
    by_name: dict[str, float] = {}
    for (file, _, func), (_, _, _, cum, _) in stats.stats.items():
        name = f"{os.path.basename(file)}:{func}"
        by_name[name] = max(by_name.get(name, 0.0), cum)
    stages = {}
    for label, names in STAGES.items():
        for n in names:
            if n in by_name:
                stages[label] = round(by_name[n] / samples * 1000, 2)
                break
    tot = sorted(stats.stats.items(), key=lambda kv: -kv[1][2])[:15]
    top = [(f"{os.path.basename(f)}:{fn}", round(v[2] / samples * 1000, 2)) for (f, _, fn), v in tot]
    return {"profiled_ms_per_sample": round(total / samples * 1000, 2), "stages_ms_per_sample": stages,
            "top_tottime_ms_per_sample": top}  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--samples", type=int, default=300)
    ap.add_argument("--image-size", type=int, default=256)
    ap.add_argument("--shard-size", type=int, default=100)
    ap.add_argument("--seed", type=int, default=4242)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--build", action="store_true", help="also measure mcie build --workers 1")
    ap.add_argument("--profile", action="store_true", help="also profile the pipeline loop")
    args = ap.parse_args()
    n = args.samples
    tmp = tempfile.mkdtemp(prefix="mcie-bench-cost-")
    res: dict = {"samples": n, "image_size": args.image_size, "cores": os.cpu_count(), "runs": []}
    try:
        naive_loop(20, args.seed + 1000, args.image_size)  # imports first
        for rep in range(args.repeats):
            row = {"load_1min": round(os.getloadavg()[0], 2)}
            seed = args.seed + rep  # fresh scenes each run: no cache carries over from the last
            shape = (n, seed, args.image_size, args.shard_size)
            naive_s, scene_s = naive_loop(n, seed, args.image_size)
            row["naive_cpu_ms"] = 1000 * naive_s / n
            row["naive_scene_graph_cpu_ms"] = 1000 * scene_s / n
            row["pipeline_cpu_ms"] = 1000 * pipeline_loop(os.path.join(tmp, f"loop{rep}"), *shape) / n
            if args.build:
                row["build_cpu_ms"] = 1000 * build_cpu(os.path.join(tmp, f"build{rep}"), *shape) / n
            for k in ("pipeline", "build"):
                if f"{k}_cpu_ms" in row:
                    row[f"{k}_over_naive"] = round(row[f"{k}_cpu_ms"] / row["naive_cpu_ms"], 2)
            row = {k: round(v, 2) if isinstance(v, float) else v for k, v in row.items()}
            res["runs"].append(row)
            print(
                f"run {rep + 1}: naive {row['naive_cpu_ms']:.2f}, pipeline {row['pipeline_cpu_ms']:.2f}"
                + (f", build {row['build_cpu_ms']:.2f}" if args.build else "")
                + f" CPU ms/sample; pipeline/naive {row['pipeline_over_naive']:.2f}x"
                + (f", build/naive {row['build_over_naive']:.2f}x" if args.build else "")
                + f"; load {row['load_1min']:.2f}",
                flush=True,
            )
        if args.profile:
            res["profile"] = profile_stages(
                os.path.join(tmp, "prof"), n, args.seed + args.repeats, args.image_size, args.shard_size
            )
            for label, ms in res["profile"]["stages_ms_per_sample"].items():
                print(f"  {label:48s} {ms:8.2f} ms/sample")
            for name, ms in res["profile"]["top_tottime_ms_per_sample"]:
                print(f"  self {name:43s} {ms:8.2f} ms/sample")
        res["load_1min_end"] = round(os.getloadavg()[0], 2)
        print(json.dumps(res, sort_keys=True))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
