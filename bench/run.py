"""``mcie bench run`` and ``mcie bench compare``: run an editor over a benchmark and report.

Writes into the run folder: ``samples.jsonl`` (one line per set), ``summary.json``,
``summary.md``, ``summary.csv`` (overall, by number of sub-instructions, by edit type), PNG bar
charts, a contact sheet (source | expected | output) and ``report.html`` (see
:mod:`mcie.bench.report`, which also holds ``compare``).
"""

from __future__ import annotations

import collections
import json
import os
import time
from typing import Any

import numpy as np

from mcie import storage
from mcie.exitcodes import UsageError
from mcie.progress import Progress

from .editors import BenchItem, make_editor
from .metrics import judge_executed, score_set
from .report import RunGallery, compare, write_run_reports  # noqa: F401 (compare: bench CLI)
from .sets import load_bench, plan_from_json, scene_from_json

SUMMARY_KEYS = (
    "instruction_compliance",
    "ic_exact",
    "sub_instruction_compliance",
    "all_executed_rate",
    "background_ssim",
    "background_psnr",
    "background_l1",
    "l1",
    "l2",
)


def _aggregate(rows: list[dict[str, Any]]) -> dict[str, Any]:
    subs = [e for r in rows for e in r["executed"]]
    return {
        "sets": len(rows),
        "instruction_compliance": round(float(np.mean([r["compliance"] for r in rows])), 4) if rows else None,
        # the exact checker (pixels equal the expected target), beside the judge's figure
        "ic_exact": round(float(np.mean([r["compliance_exact"] for r in rows])), 4) if rows else None,
        "sub_instruction_compliance": round(float(np.mean(subs)), 4) if subs else None,
        "all_executed_rate": round(float(np.mean([r["all_executed"] for r in rows])), 4) if rows else None,
        **{
            k: round(float(np.mean([r[k] for r in rows])), 4) if rows else None
            for k in ("background_ssim", "background_psnr", "background_l1", "l1", "l2")
        },
    }


def summarize(rows: list[dict[str, Any]], editor: str, extra: dict[str, Any]) -> dict[str, Any]:
    """Overall figures plus breakdowns by number of sub-instructions and by edit type (the
    compliance of the sub-instructions of that type)."""
    by_k = collections.defaultdict(list)
    by_type = collections.defaultdict(list)
    for r in rows:
        by_k[r["num_sub_edits"]].append(r)
        for t, e in zip(r["edit_types"], r["executed"], strict=True):
            by_type[t].append(e)
    return {
        "editor": editor,
        **_aggregate(rows),
        "by_num_sub_edits": {str(k): _aggregate(v) for k, v in sorted(by_k.items())},
        "by_edit_type": {
            t: {"sub_instructions": len(v), "compliance": round(float(np.mean(v)), 4)}
            for t, v in sorted(by_type.items())
        },
        "lpips": None,
        **{
            k: round(float(np.mean([r[k] for r in rows])), 4) if rows and k in rows[0] else None
            for k in ("clip_i", "clip_t", "dino")
        },
        "unavailable": "LPIPS needs torchvision and its weights; CLIP-I, CLIP-T, DINO need --clip, --dino",
        **extra,
    }


def run_bench(
    bench_dir: str,
    editor_spec: str,
    out: str,
    limit: int | None = None,
    decomposition: str = "none",
    seed: int = 0,
    device: str = "cpu",
    clip: str | None = None,
    dino: str | None = None,
    steps: int | None = None,
    judge: str | None = None,
    sampling: dict[str, Any] | None = None,
    colour_offset_tol: float | None = None,
) -> dict[str, Any]:
    """Run ``editor_spec`` over the benchmark and write the reports; returns the summary.
    ``clip`` / ``dino``: local model directories for the MagicBrush CLIP-I/CLIP-T and DINO;
    ``sampling``: guidance/scheduler settings for diffusion editors (``guidance_scale``,
    ``image_guidance_scale``, ``scheduler``); ``colour_offset_tol``: the pixel judge's colour-
    offset rule in levels (default the build's, :data:`~mcie.transforms.synthetic.judge.
    EXACT_TOL`; recorded in the summary)."""
    if decomposition not in ("none", "oracle"):
        raise UsageError(f"--decomposition must be none or oracle, got {decomposition!r}")
    if colour_offset_tol is not None and not 0 <= colour_offset_tol <= 255:
        raise UsageError(f"--colour-offset-tol must be 0 to 255 levels, got {colour_offset_tol}")
    from mcie.transforms.synthetic.judge import EXACT_TOL

    offset_tol = EXACT_TOL if colour_offset_tol is None else colour_offset_tol
    rows_in = load_bench(bench_dir)[:limit] if limit else load_bench(bench_dir)
    if os.path.exists(os.path.join(out, "summary.json")):
        raise UsageError(f"{out!r} already holds a run; pick a new directory")
    os.makedirs(out, exist_ok=True)
    if any(r["kind"] == "real" for r in rows_in) and not judge:
        raise UsageError("real sets have no exact expected outcome: give --judge MODELS_YAML (the VLM judge)")
    editor = make_editor(editor_spec, seed=seed, device=device, steps=steps, sampling=sampling)
    checker = None
    if judge:
        from .vlm_checker import VLMChecker

        checker = VLMChecker(judge)
    scorers = []
    if clip:
        from .embed import ClipScorer

        c = ClipScorer(clip, device)
        scorers.append(lambda it, o: c.score(o, it.expected, it.instruction))
    if dino:
        from .embed import DinoScorer

        d = DinoScorer(dino, device)
        scorers.append(lambda it, o: d.score(o, it.expected))
    results = []
    gallery = RunGallery(editor_spec)
    t0 = time.perf_counter()
    # an editor may take minutes per set: the first set's time gives the estimate in all
    progress = Progress(len(rows_in), "bench run", "sets", estimate_after=1)
    with storage.atomic_open(os.path.join(out, "samples.jsonl")) as fh, progress:
        for row in rows_in:
            item = BenchItem.from_row(row)
            output, info = editor.edit(item, decomposition == "oracle")
            res = {
                "set_id": item.set_id,
                "kind": item.kind,
                "num_sub_edits": len(item.sub_instructions),
                "edit_types": item.edit_types,
                "instruction": item.instruction,
                "sub_instructions": item.sub_instructions,
                **score_set(item.src, item.expected, output, item.regions),
                **info,
                **{k: v for f in scorers for k, v in f(item, output).items()},
            }
            res["executed_exact"], res["compliance_exact"] = res["executed"], res["compliance"]
            res["checker"] = "exact"
            if item.kind == "synthetic" and item.plan_json:
                # the build's pixel judge decides whether each sub-instruction was carried out
                done, scores = judge_executed(
                    item.src,
                    output,
                    plan_from_json(item.plan_json),
                    scene_from_json(item.scene_json),
                    item.regions,
                    offset_tol,
                )
                res.update(
                    executed=done,
                    judge_scores=scores,
                    compliance=float(np.mean(done)) if done else 1.0,
                    all_executed=all(done),
                    checker="pixel-judge",
                )
            if checker is not None:
                vlm = checker.check(item, output)
                res["vlm_executed"] = vlm
                if item.kind == "real":  # the VLM judge is the checker where no exact target exists
                    res.update(
                        executed=vlm,
                        compliance=float(np.mean(vlm)) if vlm else 1.0,
                        all_executed=all(vlm),
                        checker="vlm",
                    )
            fh.write((json.dumps(res, sort_keys=True) + "\n").encode())
            results.append(res)
            gallery.add(item, output, res)
            progress.update()
    summary = summarize(
        results,
        editor_spec,
        {
            "bench": os.path.abspath(bench_dir),
            "decomposition": decomposition,
            "checker": ",".join(sorted({r["checker"] for r in results})),
            "colour_offset_tol": offset_tol,  # the pixel judge's rule these verdicts used
            # what the editor used (a model editor's own defaults filled in)
            "steps": getattr(editor, "steps", steps),
            "sampling": getattr(editor, "sampling", None) or sampling or {},
            "seconds": round(time.perf_counter() - t0, 2),
        },
    )
    write_run_reports(out, summary, results, gallery)
    return summary
