"""``mcie calibrate BUILD``: the judge measured against the reviewers, and thresholds chosen
from their verdicts.

Input: a build whose index holds imported review verdicts (``mcie ls import`` writes them to
``verdict_json`` under ``review``: the resolved ``decision``, the judge's ``prior_status``,
and each reviewer's verdict and per-sub-instruction verdicts). Every reviewed candidate with a
decision (not a disagreement) is a labelled example: *good* when the reviewers accepted it
(``accept`` / ``fixed``), *bad* when they rejected it. Per sub-instruction, a label is the
majority of the reviewers' sub-verdicts for that slot (ties left out).

Figures (each with a bootstrap 95% interval: :data:`BOOTSTRAP` resamples of the labelled
examples, percentile method, seed 0), with the judge's *pass* as the positive class (what the
filter keeps): accuracy (share of equal calls), precision (share of passed that reviewers call
good), recall (share of good that the judge passed), Cohen's kappa. Per sample, the judge's
pass is its status before review; per sub-instruction, its ``executed``. Where two reviewers
saw the same task, their agreement (share of equal verdicts and kappa) per pair of reviewers;
and each reviewer's own verdicts against the judge's pass (agreement with its interval, and
kappa): where the judge is right, that is the reviewer's accuracy.
Then the threshold on the lowest sub-instruction score of a sample that reaches
``--target-precision`` with the most recall; it is written, with the build's other thresholds
(the background bounds stay as they were), as ``min_sub_score`` to a thresholds file (JSON of
:class:`~mcie.transforms.judge.FilterThresholds`) that ``mcie build`` and ``mcie score`` read
with ``--thresholds FILE``. The figures go to ``BUILD/calibration.json`` and the card.
"""

from __future__ import annotations

import argparse
import collections
import dataclasses
import json
from typing import Any

import numpy as np

from mcie import storage
from mcie.card import CALIBRATION_FILE, refresh_filter_measured
from mcie.cliargs import examples
from mcie.exitcodes import ExitCode, UsageError
from mcie.layout import BuildLayout
from mcie.tables import read_table

#: bootstrap resamples behind every interval
BOOTSTRAP = 1000
#: where ``mcie calibrate`` writes its thresholds inside the build (its figures:
#: :data:`mcie.card.CALIBRATION_FILE`, which the card reads)
THRESHOLDS_FILE = "thresholds.json"
POSITIVE = ("accept", "fixed")


@dataclasses.dataclass(frozen=True)
class CalibrateOptions:
    """``mcie calibrate``'s options."""

    out: str
    target_precision: float = 0.95
    thresholds_path: str | None = None  # default BUILD/thresholds.json
    bootstrap: int = BOOTSTRAP
    seed: int = 0

    def __post_init__(self) -> None:
        if not 0.0 < self.target_precision <= 1.0:
            raise UsageError(f"--target-precision must be in (0, 1], got {self.target_precision}")
        if self.bootstrap < 10:
            raise UsageError(f"--bootstrap must be >= 10, got {self.bootstrap}")


# -- figures ------------------------------------------------------------------------------
def confusion(judge: np.ndarray, human: np.ndarray) -> tuple[int, int, int, int]:
    """(tp, fp, fn, tn) with pass / good as the positive class."""
    return (
        int((judge & human).sum()),
        int((judge & ~human).sum()),
        int((~judge & human).sum()),
        int((~judge & ~human).sum()),
    )


def cohen_kappa(a: np.ndarray, b: np.ndarray) -> float | None:
    """Cohen's kappa of two boolean raters; None when chance agreement is total (one class)."""
    n = len(a)
    if n == 0:
        return None
    po = float((a == b).mean())
    pa, pb = float(a.mean()), float(b.mean())
    pe = pa * pb + (1 - pa) * (1 - pb)
    if pe >= 1.0:
        return None
    return (po - pe) / (1 - pe)


def _figures(judge: np.ndarray, human: np.ndarray) -> dict[str, float | None]:
    tp, fp, fn, tn = confusion(judge, human)
    return {
        "accuracy": (tp + tn) / len(judge) if len(judge) else None,
        "precision": tp / (tp + fp) if tp + fp else None,
        "recall": tp / (tp + fn) if tp + fn else None,
        "kappa": cohen_kappa(judge, human),
    }


def with_intervals(judge: np.ndarray, human: np.ndarray, n_boot: int, seed: int) -> dict[str, Any]:
    """Precision, recall and kappa of ``judge`` against ``human``, each with a bootstrap 95%
    interval (percentiles of ``n_boot`` resamples of the examples)."""
    point = _figures(judge, human)
    rng = np.random.default_rng(seed)
    draws: dict[str, list[float]] = collections.defaultdict(list)
    n = len(judge)
    for _ in range(n_boot if n else 0):
        i = rng.integers(0, n, n)
        for k, v in _figures(judge[i], human[i]).items():
            if v is not None:
                draws[k].append(v)
    out: dict[str, Any] = {"n": n, "positives": int(human.sum())}
    for k, v in point.items():
        lo_hi = [round(float(x), 4) for x in np.percentile(draws[k], [2.5, 97.5])] if draws[k] else None
        out[k] = {"value": None if v is None else round(v, 4), "ci95": lo_hi}
    return out


def threshold_for(scores: np.ndarray, human: np.ndarray, target: float) -> dict[str, Any]:
    """The lowest threshold on ``scores`` (pass when score >= threshold) whose precision
    against ``human`` reaches ``target``: the most recall at that precision. None when no
    threshold reaches it."""
    best = None
    for t in sorted(set(np.round(scores, 4).tolist())):
        passed = scores >= t
        tp, fp, fn, _ = confusion(passed, human)
        if tp + fp and tp / (tp + fp) >= target:
            best = {
                "threshold": t,
                "precision": round(tp / (tp + fp), 4),
                "recall": round(tp / max(tp + fn, 1), 4),
            }
            break
    return best or {"threshold": None, "precision": None, "recall": None}


# -- reading the index --------------------------------------------------------------------
def _majority(votes: list[bool]) -> bool | None:
    yes, no = sum(votes), len(votes) - sum(votes)
    return None if yes == no else yes > no


def labelled(out: str) -> dict[str, Any]:
    """The labelled examples of a reviewed build: per sample (judge pass, human good, lowest
    sub-score) and per sub-instruction (judge executed, human good, score), and every
    reviewer's verdicts by key (for agreement between reviewers)."""
    path = BuildLayout(out).index
    if not storage.exists(path):
        raise UsageError(f"{path} is missing: is {out!r} a build folder?")
    cols = ["key", "status", "sub_executed", "sub_compliance", "verdict_json"]
    rows = read_table(path, columns=cols).to_pylist()
    samples, subs, raters, judge = [], [], {}, {}
    for r in rows:
        review = (json.loads(r["verdict_json"]) or {}).get("review") if r["verdict_json"] else None
        if not isinstance(review, dict) or review.get("state") != "reviewed":
            continue
        decision = review.get("decision")
        scores = [float(s) if s is not None else 0.0 for s in (r["sub_compliance"] or [])]
        low = min(scores) if scores else 0.0
        judge[r["key"]] = review.get("prior_status") == "accepted"
        if decision in (*POSITIVE, "reject"):
            samples.append((judge[r["key"]], decision in POSITIVE, low))
        reviewers = review.get("reviewers") or []
        raters[r["key"]] = {
            str(v.get("user")): v.get("verdict") in POSITIVE
            for v in reviewers
            if v.get("verdict") in (*POSITIVE, "reject")
        }
        for k, (executed, score) in enumerate(zip(r["sub_executed"] or [], scores, strict=False)):
            votes = [
                (v.get("sub_verdicts") or {}).get(str(k))
                for v in reviewers
                if (v.get("sub_verdicts") or {}).get(str(k))
            ]
            good = _majority([x in POSITIVE for x in votes]) if votes else None
            if good is not None:
                subs.append((bool(executed), good, score))
    return {"samples": samples, "sub_edits": subs, "raters": raters, "judge": judge}


def reviewer_agreement(raters: dict[str, dict[str, bool]]) -> list[dict[str, Any]]:
    """Per pair of reviewers who saw the same tasks: how many, share of equal verdicts, kappa."""
    pairs: dict[tuple[str, str], list[tuple[bool, bool]]] = collections.defaultdict(list)
    for verdicts in raters.values():
        users = sorted(verdicts)
        for i, a in enumerate(users):
            for b in users[i + 1 :]:
                pairs[(a, b)].append((verdicts[a], verdicts[b]))
    out = []
    for (a, b), v in sorted(pairs.items()):
        x, y = np.array([p[0] for p in v]), np.array([p[1] for p in v])
        k = cohen_kappa(x, y)
        out.append(
            {
                "reviewers": [a, b],
                "tasks": len(v),
                "agreement": round(float((x == y).mean()), 4),
                "kappa": None if k is None else round(k, 4),
            }
        )
    return out


def reviewer_vs_judge(
    raters: dict[str, dict[str, bool]], judge: dict[str, bool], n_boot: int, seed: int
) -> list[dict[str, Any]]:
    """Per reviewer: how many tasks, and the share of them where the reviewer's own verdict
    equals the judge's pass, with its bootstrap 95% interval, and kappa. Where the judge is
    right, this is the reviewer's accuracy itself (a decision of several reviewers is not:
    two who agree are right more often than either)."""
    calls: dict[str, list[tuple[bool, bool]]] = collections.defaultdict(list)
    for key, verdicts in raters.items():
        for user, good in verdicts.items():
            calls[user].append((judge[key], good))
    out = []
    for user, v in sorted(calls.items()):
        j, h = np.array([x[0] for x in v]), np.array([x[1] for x in v])
        f = with_intervals(j, h, n_boot, seed)
        out.append({"reviewer": user, "tasks": len(v), "agreement": f["accuracy"], "kappa": f["kappa"]})
    return out


def calibrate(opts: CalibrateOptions) -> dict[str, Any]:
    """Measure the judge against the reviewers of ``opts.out``, choose the threshold for the
    target precision, write the calibration and thresholds files; returns the figures."""
    data = labelled(opts.out)
    if not data["samples"]:
        raise UsageError(f"{opts.out}: no reviewed candidates in the index (run `mcie ls import` first)")
    report: dict[str, Any] = {"target_precision": opts.target_precision, "bootstrap": opts.bootstrap}
    for level in ("samples", "sub_edits"):
        ex = data[level]
        judge = np.array([e[0] for e in ex], dtype=bool)
        human = np.array([e[1] for e in ex], dtype=bool)
        scores = np.array([e[2] for e in ex], dtype=float)
        report[level] = with_intervals(judge, human, opts.bootstrap, opts.seed)
        report[level]["at_target"] = threshold_for(scores, human, opts.target_precision)
    report["reviewer_agreement"] = reviewer_agreement(data["raters"])
    report["reviewer_vs_judge"] = reviewer_vs_judge(data["raters"], data["judge"], opts.bootstrap, opts.seed)
    # the build's own thresholds, with the sub-instruction bound replaced (the core does not
    # import the filter: the file is checked where it is read, FilterThresholds.from_file)
    run = BuildLayout(opts.out).run_manifest
    meta = storage.read_json(run).get("meta", {}) if storage.exists(run) else {}
    chosen = dict(meta.get("thresholds") or {})
    t = report["samples"]["at_target"]["threshold"]
    if t is not None:
        chosen["min_sub_score"] = float(t)
    report["thresholds"] = chosen
    path = opts.thresholds_path or storage.join(opts.out, THRESHOLDS_FILE)
    storage.write_json(path, chosen)
    report["thresholds_file"] = path
    storage.write_json(storage.join(opts.out, CALIBRATION_FILE), report)
    refresh_filter_measured(opts.out)
    return report


def format_report(r: dict[str, Any]) -> str:
    """Human-readable calibration report."""

    def fig(f: dict[str, Any]) -> str:
        return f"{f['value']} {f['ci95']}"

    lines = []
    for level in ("samples", "sub_edits"):
        x = r[level]
        t = x["at_target"]
        lines.append(
            f"{level}: n {x['n']} (good {x['positives']}): accuracy {fig(x['accuracy'])}, "
            f"precision {fig(x['precision'])}, "
            f"recall {fig(x['recall'])}, kappa {fig(x['kappa'])}; at precision >= "
            f"{r['target_precision']}: threshold {t['threshold']} "
            f"(precision {t['precision']}, recall {t['recall']})"
        )
    for a in r["reviewer_agreement"]:
        lines.append(f"reviewers {a['reviewers'][0]} / {a['reviewers'][1]}: {a['tasks']} tasks, "
                     f"agreement {a['agreement']}, kappa {a['kappa']}")  # fmt: skip
    for a in r.get("reviewer_vs_judge", []):
        lines.append(f"reviewer {a['reviewer']} against the judge: {a['tasks']} tasks, "
                     f"agreement {fig(a['agreement'])}, kappa {fig(a['kappa'])}")  # fmt: skip
    lines.append(f"thresholds written to {r['thresholds_file']}")
    return "\n".join(lines)


# -- command line -------------------------------------------------------------------------
def add_parsers(sub) -> None:
    """Register ``mcie calibrate``."""
    p = sub.add_parser(
        "calibrate",
        help="measure the judge against imported reviewer verdicts and choose thresholds",
        description="Join the reviewers' verdicts (imported by `mcie ls import`) to the judge's\n"
        "scores: precision, recall and Cohen's kappa with bootstrap 95% intervals, per sample and\n"
        "per sub-instruction; agreement between reviewers who saw the same task; the threshold\n"
        "reaching --target-precision, written to a thresholds file for mcie build / mcie score.",
        epilog=examples("mcie calibrate out/reviewed", "mcie calibrate out/reviewed --target-precision 0.98"),
    )
    p.add_argument("out", metavar="BUILD", help="build folder whose index holds imported verdicts")
    p.add_argument(
        "--target-precision",
        type=float,
        default=0.95,
        help="precision the threshold must reach (default 0.95)",
    )
    p.add_argument(
        "--thresholds-out",
        default=None,
        metavar="FILE",
        help=f"thresholds file to write (default BUILD/{THRESHOLDS_FILE})",
    )
    p.add_argument(
        "--bootstrap", type=int, default=BOOTSTRAP, help=f"bootstrap resamples (default {BOOTSTRAP})"
    )
    p.add_argument("--json", action="store_true", help="print the figures as one JSON object")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Run ``mcie calibrate``; returns the exit code."""
    storage.require_folder(args.out)
    opts = CalibrateOptions(args.out, args.target_precision, args.thresholds_out, args.bootstrap)
    report = calibrate(opts)
    print(json.dumps(report, sort_keys=True) if args.json else format_report(report))
    return ExitCode.OK
