"""The pixel judge measured in process, without Beam: the filter against injected failures, and
its ceiling (share of perfect edits it passes) on the task-ladder rungs.

    python benchmarks/bench_judge.py filter --magnitude subtle --samples 400 --seed 0
    python benchmarks/bench_judge.py ceiling --task mini-3 --image-size 32 --samples 200
    python benchmarks/bench_judge.py precheck --magnitude subtle --samples 400 --annotator region

``filter`` runs the synthetic backend's own steps (generate, annotate, judge, filter) on
(seed, 0..N-1) at 256 px and scores ``rejected`` against the truth as ``mcie audit`` does (its
figures equal a ``mcie build`` of the same options; the build is the reference, this is the
fast loop). ``ceiling`` judges failure-free candidates of a rung twice: with the annotated masks
(as a build does) and with the true regions (as CIE-Bench does), and prints the share of
sub-edits passed, per edit type, and the share of samples with every sub-edit passed.
``precheck`` runs the pixel check that precedes a model judge (:mod:`mcie.transforms.precheck`)
on the same candidates, annotated by the synthetic annotator or by the real backend's region
annotator, and scores its rejections against the truth on their own (precision, recall by
failure type, the clean candidates it rejects) and beside the pixel judge's (failures only it
catches). Prints one JSON object; the load average is printed beside it.
"""

from __future__ import annotations

import argparse
import collections
import dataclasses
import json
import os
import time

import numpy as np

from mcie.images import decode_mask
from mcie.transforms.annotate import AnnotateConfig, RegionAnnotateConfig, RegionAnnotator
from mcie.transforms.judge import FilterStep, FilterThresholds
from mcie.transforms.precheck import Precheck
from mcie.transforms.synthetic.editor import FailureConfig
from mcie.transforms.synthetic.generator import SyntheticConfig
from mcie.transforms.synthetic.judge import PixelJudgeConfig
from mcie.transforms.synthetic.ladder import task_config
from mcie.transforms.synthetic.planner import DEFAULT_EDIT_WEIGHTS, PlanConfig
from mcie.transforms.synthetic.steps import AnnotateStep, PixelJudgeStep, SceneSource


def _steps():
    return AnnotateStep(AnnotateConfig()), PixelJudgeStep(PixelJudgeConfig()), FilterStep(FilterThresholds())


def run_filter(magnitude: str, samples: int, seed: int, image_size: int) -> dict:
    cfg = SyntheticConfig(image_size=image_size, failures=FailureConfig(magnitude=magnitude))
    source = SceneSource(cfg, seed)
    annotate, judge, filt = _steps()
    tp = fp = fn = tn = 0
    pos = collections.Counter()
    hit = collections.Counter()
    fps = []
    misses = []
    for i in range(samples):
        sample, truth = source.make(i)
        sample = filt.process(judge.process(annotate.process(sample)))
        failures = json.loads(truth["failures_json"])
        positive = bool(failures)
        rejected = sample.status == "rejected"
        tp += positive and rejected
        fp += (not positive) and rejected
        fn += positive and not rejected
        tn += (not positive) and not rejected
        for f in failures:
            pos[f["type"]] += 1
            hit[f["type"]] += rejected
            if not rejected:
                misses.append({"index": i, **f})
        if rejected and not positive:
            bad = [(s.edit_type, s.scores.get("compliance")) for s in sample.sub_edits if not s.executed]
            fps.append({"index": i, "reason": sample.reason, "sub_edits": bad})
    return {
        "magnitude": magnitude,
        "samples": samples,
        "seed": seed,
        "image_size": image_size,
        **_confusion_figures(tp, fp, fn, tn, hit, pos),
        "false_positives": fps,
        "missed": misses,
    }


def _confusion_figures(tp: int, fp: int, fn: int, tn: int, hit, pos) -> dict:
    """Precision, recall, the confusion counts and recall per failure type (a positive is a
    candidate with an injected failure)."""
    return {
        "precision": round(tp / max(tp + fp, 1), 4),
        "recall": round(tp / max(tp + fn, 1), 4),
        "confusion": {"tp": tp, "fp": fp, "fn": fn, "tn": tn},
        "recall_by_failure": {k: round(hit[k] / pos[k], 4) for k in sorted(pos)},
        "positives_by_failure": dict(sorted(pos.items())),
    }


def run_ceiling(task: str, samples: int, seed: int, image_size: int) -> dict:
    cfg = task_config(task, image_size)
    source = SceneSource(cfg, seed)
    annotate, judge, _ = _steps()
    per_type = {"annotated": collections.defaultdict(list), "truth": collections.defaultdict(list)}
    whole = {"annotated": [], "truth": []}
    for i in range(samples):
        sample, truth = source.make(i)
        annotated = judge.process(annotate.process(sample))
        ok = [bool(s.executed) for s in annotated.sub_edits]
        for s, e in zip(annotated.sub_edits, ok, strict=True):
            per_type["annotated"][s.edit_type].append(e)
        whole["annotated"].append(all(ok))
        # CIE-Bench's way: the true regions as masks
        for s, m in zip(annotated.sub_edits, truth["masks_png"], strict=True):
            s.mask = decode_mask(m) > 0
        judged = judge.process(annotated)
        ok = [bool(s.executed) for s in judged.sub_edits]
        for s, e in zip(judged.sub_edits, ok, strict=True):
            per_type["truth"][s.edit_type].append(e)
        whole["truth"].append(all(ok))
    out = {"task": task, "image_size": image_size, "samples": samples, "seed": seed}
    for way in ("annotated", "truth"):
        allv = [v for vs in per_type[way].values() for v in vs]
        out[way] = {
            "sub_edits_passed": round(float(np.mean(allv)), 4),
            "sub_edits": len(allv),
            "samples_all_passed": round(float(np.mean(whole[way])), 4),
            "by_type": {k: round(float(np.mean(v)), 4) for k, v in sorted(per_type[way].items())},
        }
    return out


#: the edit types a real (inpainting) backend plans by default: one region each (the region
#: annotator has no evidence for a move's or resize's second place)
INPAINT_TYPES = ("add", "remove", "recolour", "replace", "pattern")


def run_precheck(magnitude: str, samples: int, seed: int, image_size: int, annotator: str) -> dict:
    plan = PlanConfig(
        edit_weights=tuple((t, w) for t, w in DEFAULT_EDIT_WEIGHTS.items() if t in INPAINT_TYPES)
    )
    cfg = SyntheticConfig(image_size=image_size, plan=plan, failures=FailureConfig(magnitude=magnitude))
    source = SceneSource(cfg, seed)
    annotate, judge, filt = _steps()
    region = RegionAnnotator(RegionAnnotateConfig())
    check = Precheck()
    tp = fp = fn = tn = only = 0
    pos = collections.Counter()
    hit = collections.Counter()
    fps = []
    for i in range(samples):
        sample, truth = source.make(i)
        sample = region.annotate(sample) if annotator == "region" else annotate.process(sample)
        refused = not check.passes(check.score(sample))
        judged = filt.process(judge.process(annotate.process(sample)))
        failures = json.loads(truth["failures_json"])
        positive = bool(failures)
        tp += positive and refused
        fp += (not positive) and refused
        fn += positive and not refused
        tn += (not positive) and not refused
        only += positive and refused and judged.status != "rejected"
        for f in failures:
            pos[f["type"]] += 1
            hit[f["type"]] += refused
        if refused and not positive:
            fps.append(
                {
                    "index": i,
                    "outside_changed": sample.scores["outside_changed"],
                    "changed_share": [(s.edit_type, s.scores["changed_share"]) for s in sample.sub_edits],
                }
            )
    return {
        "magnitude": magnitude,
        "annotator": annotator,
        "edit_types": list(INPAINT_TYPES),
        "samples": samples,
        "seed": seed,
        "image_size": image_size,
        **_confusion_figures(tp, fp, fn, tn, hit, pos),
        "caught_not_by_judge": only,
        "false_positives": fps,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("mode", choices=("filter", "ceiling", "precheck"), help="what to measure")
    p.add_argument("--magnitude", default="standard", help="failure magnitude (filter, precheck)")
    p.add_argument("--task", default="full", help="ladder rung (ceiling)")
    p.add_argument("--image-size", type=int, default=None, help="default 256 (filter), 32 (ceiling)")
    p.add_argument("--samples", type=int, default=400, help="candidates (default 400)")
    p.add_argument("--seed", type=int, default=0, help="seed (default 0)")
    p.add_argument(
        "--annotator", choices=("synthetic", "region"), default="region", help="masks for precheck"
    )
    p.add_argument("--brief", action="store_true", help="leave out the per-sample lists")
    a = p.parse_args()
    t0, c0 = time.perf_counter(), time.process_time()
    if a.mode == "filter":
        r = run_filter(a.magnitude, a.samples, a.seed, a.image_size or 256)
        if a.brief:
            r["false_positives"] = len(r["false_positives"])
            r["missed"] = collections.Counter(m["type"] for m in r["missed"])
    elif a.mode == "precheck":
        r = run_precheck(a.magnitude, a.samples, a.seed, a.image_size or 256, a.annotator)
    else:
        r = run_ceiling(a.task, a.samples, a.seed, a.image_size or 32)
    r["wall_s"] = round(time.perf_counter() - t0, 1)
    r["cpu_s"] = round(time.process_time() - c0, 1)
    r["load"] = [round(x, 2) for x in os.getloadavg()]
    print(json.dumps(r, sort_keys=True, default=dataclasses.asdict))


if __name__ == "__main__":
    main()
