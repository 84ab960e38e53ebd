"""``mcie bench run`` and ``mcie bench compare``: run an editor over a benchmark and report.

Writes into the run folder: ``samples.jsonl`` (one line per set), ``summary.json``,
``summary.md``, ``summary.csv`` (overall, by number of sub-instructions, by edit type), PNG bar
charts and a contact sheet (source | expected | output).
"""

from __future__ import annotations

import collections
import csv
import io
import json
import os
import sys
import time
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from mcie import storage
from mcie.exitcodes import UsageError
from mcie.progress import lines, track

from .editors import BenchItem, make_editor
from .metrics import judge_executed, score_set
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
    steps: int = 20,
    judge: str | None = None,
    sampling: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Run ``editor_spec`` over the benchmark and write the reports; returns the summary.
    ``clip`` / ``dino``: local model directories for the MagicBrush CLIP-I/CLIP-T and DINO;
    ``sampling``: guidance/scheduler settings for diffusion editors (``guidance_scale``,
    ``image_guidance_scale``, ``scheduler``)."""
    if decomposition not in ("none", "oracle"):
        raise UsageError(f"--decomposition must be none or oracle, got {decomposition!r}")
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
    results, sheet = [], []
    t0 = time.perf_counter()
    with storage.atomic_open(os.path.join(out, "samples.jsonl")) as fh:
        for n, row in enumerate(track(rows_in, "bench run", "sets"), 1):
            item = BenchItem.from_row(row)
            output, info = editor.edit(item, decomposition == "oracle")
            res = {
                "set_id": item.set_id,
                "kind": item.kind,
                "num_sub_edits": len(item.sub_instructions),
                "edit_types": item.edit_types,
                "instruction": item.instruction,
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
            if len(sheet) < 8:
                sheet.append((item, output))
            if lines() and (n % 50 == 0 or n == len(rows_in)):  # a bar on a terminal
                rate = n / (time.perf_counter() - t0)
                print(
                    f"[bench {editor.name}] {n}/{len(rows_in)} sets, {rate:.1f} sets/s",
                    file=sys.stderr,
                    flush=True,
                )
    summary = summarize(
        results,
        editor_spec,
        {
            "bench": os.path.abspath(bench_dir),
            "decomposition": decomposition,
            "checker": ",".join(sorted({r["checker"] for r in results})),
            "steps": steps,
            "sampling": sampling or {},
            "seconds": round(time.perf_counter() - t0, 2),
        },
    )
    _write_reports(out, summary)
    _plot(
        os.path.join(out, "compliance_by_num_sub_edits.png"),
        "Instruction compliance by number of sub-instructions",
        {k: v["instruction_compliance"] for k, v in summary["by_num_sub_edits"].items()},
    )
    _plot(
        os.path.join(out, "compliance_by_edit_type.png"),
        "Sub-instruction compliance by edit type",
        {k: v["compliance"] for k, v in summary["by_edit_type"].items()},
    )
    _contact(os.path.join(out, "contact.png"), sheet)
    return summary


def _write_reports(out: str, s: dict[str, Any]) -> None:
    # every report is written atomically: a full disk never leaves a 0-byte summary
    storage.write_json(os.path.join(out, "summary.json"), s)
    lines = [
        f"# CIE-Bench: {s['editor']}",
        "",
        f"{s['sets']} sets, decomposition: {s['decomposition']}; compliance checker: {s.get('checker')}"
        " (IC exact: the exact-target checker)",
        "",
        "| group | sets | compliance | IC exact | all executed | bg SSIM | bg PSNR | bg L1 | L1 | L2 |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    table = [("overall", s)] + [(f"{k} sub-instructions", v) for k, v in s["by_num_sub_edits"].items()]
    for name, v in table:
        lines.append(
            f"| {name} | {v['sets']} | {v['instruction_compliance']} | {v['ic_exact']} | "
            f"{v['all_executed_rate']} | "
            f"{v['background_ssim']} | {v['background_psnr']} | {v['background_l1']} | "
            f"{v['l1']} | {v['l2']} |"
        )
    lines += ["", "| edit type | sub-instructions | compliance |", "|---|---|---|"]
    lines += [f"| {t} | {v['sub_instructions']} | {v['compliance']} |" for t, v in s["by_edit_type"].items()]
    lines += [
        "",
        f"CLIP-I {s['clip_i']}, CLIP-T {s['clip_t']}, DINO {s['dino']}, LPIPS {s['lpips']}"
        f" (null: not computed — {s['unavailable']}).",
    ]
    storage.atomic_write(os.path.join(out, "summary.md"), "\n".join(lines) + "\n")
    rows = [["group", "sets", *SUMMARY_KEYS]]
    rows += [[name, v["sets"], *[v.get(k) for k in SUMMARY_KEYS]] for name, v in table]
    rows += [
        [f"type:{t}", v["sub_instructions"], "", "", v["compliance"], "", "", "", "", "", ""]
        for t, v in s["by_edit_type"].items()
    ]
    storage.atomic_write(os.path.join(out, "summary.csv"), _csv(rows))


def _csv(rows: list[list[Any]]) -> str:
    buf = io.StringIO(newline="")
    csv.writer(buf).writerows(rows)
    return buf.getvalue()


def _save_png(img: Image.Image, path: str) -> None:
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    storage.atomic_write(path, buf.getvalue())


def _plot(path: str, title: str, values: dict[str, float]) -> None:
    """A plain bar chart (PIL; no plotting library needed)."""
    w, h, pad = 120 + 90 * len(values), 340, 40
    img = Image.new("RGB", (w, h), "white")
    d = ImageDraw.Draw(img)
    font = ImageFont.load_default(size=13)
    d.text((pad, 10), title, fill="black", font=font)
    base, top = h - pad, 50
    d.line((pad, base, w - 10, base), fill="black")
    for i, (k, v) in enumerate(values.items()):
        x = pad + 20 + i * 90
        y = base - (base - top) * float(v or 0)
        d.rectangle((x, y, x + 50, base), fill=(60, 110, 200))
        d.text((x, base + 5), str(k)[:10], fill="black", font=font)
        d.text((x, y - 16), f"{float(v or 0):.2f}", fill="black", font=font)
    _save_png(img, path)


def _contact(path: str, sheet: list[tuple[BenchItem, np.ndarray]]) -> None:
    if not sheet:
        return
    s = sheet[0][0].src.shape[0]
    font = ImageFont.load_default(size=12)
    img = Image.new("RGB", (3 * s + 8, len(sheet) * (s + 40)), "white")
    d = ImageDraw.Draw(img)
    for i, (item, out) in enumerate(sheet):
        y = i * (s + 40)
        for j, a in enumerate((item.src, item.expected, out)):
            img.paste(Image.fromarray(a), (j * (s + 4), y))
        d.text((2, y + s + 2), item.instruction[: 3 * s // 6], fill="black", font=font)
    _save_png(img, path)


def compare(runs: list[str], out: str) -> str:
    """One table (Markdown + CSV) over several runs; returns the Markdown path."""
    rows = []
    for r in runs:
        path = os.path.join(r, "summary.json")
        if not os.path.exists(path):
            raise UsageError(f"{r!r} is not a bench run (no summary.json)")
        with open(path) as fh:
            rows.append(json.load(fh))
    os.makedirs(out, exist_ok=True)
    head = ["editor", "sets", *SUMMARY_KEYS]
    md = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    md += ["| " + " | ".join(str(s.get(k)) for k in head) + " |" for s in rows]
    md_path = os.path.join(out, "comparison.md")
    storage.atomic_write(md_path, "# CIE-Bench comparison\n\n" + "\n".join(md) + "\n")
    storage.atomic_write(
        os.path.join(out, "comparison.csv"), _csv([head, *[[s.get(k) for k in head] for s in rows]])
    )
    return md_path
