"""``mcie calibrate`` against simulated reviewers of known accuracy: does the agreement it
measures recover theirs, within its interval?

    python benchmarks/bench_calibrate.py --accuracy 0.7 0.85 0.95 --seeds 0 1 2

One synthetic build (``mcie build``: --samples, 128 px, failure rate 0.4) is reviewed again
for every (accuracy, seed): reviewer 1 sees every candidate, reviewer 2 every third; each
calls a candidate right (good = no injected failure) with probability ``accuracy``; their
verdicts are resolved by the importer's own rule (:func:`mcie.annotation.verdicts.resolve`)
and stored in the index as ``mcie ls import`` stores them. Then ``mcie calibrate`` runs on it.

What the judge's agreement with the decisions should be: a task one reviewer saw is right
with probability q; a task two saw is decided only when they agree (q^2 + (1-q)^2 of them),
and then right with probability q^2 / (q^2 + (1-q)^2); the decisions are right with ``d``, the
mix of both, a little above q. The judge agrees with the truth on a share ``a`` of the
candidates (``judge_vs_truth``, measured on the build), so it agrees with a decision with
probability a*d + (1-a)*(1-d) (``expected``). Prints one JSON object per line (the load
average beside each); the last line sums up. Reviewer 1, who sees every task, against the
judge (``reviewer_1``) should give q itself: the judge is right on every candidate here.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time

import numpy as np
import pyarrow as pa

#: how often the second reviewer sees a task (every n-th)
SECOND_EVERY = 3


def simulate_reviews(out: str, accuracy: float, seed: int = 0) -> dict:
    """Rewrite ``out``'s index as if reviewers of ``accuracy`` had reviewed every candidate
    (reviewer 1 all, reviewer 2 every :data:`SECOND_EVERY`-th; the truth decides what is
    right: a candidate with an injected failure is bad, and its failing sub-edit gets the
    reject). Returns the truth rows by key."""
    from mcie.annotation import review_index as ri
    from mcie.annotation.verdicts import Review, resolve
    from mcie.tables import INDEX_SCHEMA, read_table, write_table

    rng = np.random.default_rng(seed)
    truth = {t["key"]: t for t in read_table(f"{out}/truth.parquet").to_pylist()}
    rows = read_table(f"{out}/index.parquet").to_pylist()
    for i, row in enumerate(rows):
        t = truth[row["key"]]
        bad_sub = next((k for k, e in enumerate(t["executed"]) if not e), None)
        good = t["num_failures"] == 0
        users = [1, 2] if i % SECOND_EVERY == 0 else [1]
        reviews = []
        for j, user in enumerate(users):
            call = good if rng.random() < accuracy else not good
            subs = {
                k: ("reject" if (not call and k == bad_sub) else "accept")
                for k in range(row["num_sub_edits"])
            }
            verdict, reason = ("accept", None) if call else ("reject", "sub_edit_not_executed")
            reviews.append(Review(10 * i + j, user, verdict, reason, subs, None, {}, {}))
        d = resolve(reviews)
        ri.set_review(
            row,
            {
                "state": "reviewed",
                "project": "p",
                "task_id": i,
                "prior_status": row["status"],
                "prior_reason": row["reason"],
                "decision": d.decision,
                "reason": d.reason,
                "resolution": "majority",
                "reviewers": [r.summary() for r in d.reviews],
            },
        )
        row["status"] = "accepted" if d.accepted else "rejected"
    write_table(f"{out}/index.parquet", pa.Table.from_pylist(rows, schema=INDEX_SCHEMA))
    return truth


def expected_accuracy(q: float, second_every: int = SECOND_EVERY) -> float:
    """The share of right decisions among the decided ones (see the module's docstring)."""
    one, two = 1 - 1 / second_every, 1 / second_every
    agree = q * q + (1 - q) * (1 - q)
    return (one * q + two * q * q) / (one + two * agree)


def _within(x: float, ci: list[float] | None) -> bool:
    return ci is not None and ci[0] <= x <= ci[1]


def judge_vs_truth(out: str) -> float:
    """Share of candidates the judge called as the truth has them (rejected = a failure)."""
    from mcie.tables import read_table

    truth = {t["key"]: t["num_failures"] > 0 for t in read_table(f"{out}/truth.parquet").to_pylist()}
    rows = read_table(f"{out}/index.parquet", columns=["key", "status"]).to_pylist()
    return float(np.mean([(r["status"] == "rejected") == truth[r["key"]] for r in rows]))


def main(argv: list[str] | None = None) -> list[dict]:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--accuracy", type=float, nargs="+", default=[0.7, 0.85, 0.95], help="reviewer accuracies")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="reviewer seeds")
    p.add_argument("--samples", type=int, default=160, help="candidates in the build (default 160)")
    p.add_argument("--image-size", type=int, default=128, help="default 128")
    p.add_argument("--keep", default=None, help="build here and keep it (default: a temporary folder)")
    a = p.parse_args(argv)
    from mcie.calibrate import CalibrateOptions, calibrate
    from mcie.cli import main as mcie

    root = a.keep or tempfile.mkdtemp(prefix="bench-calibrate-")
    out = os.path.join(root, "b")
    t0, c0 = time.perf_counter(), time.process_time()
    args = ["build", "--out", out, "--samples", str(a.samples), "--image-size", str(a.image_size)]
    if mcie([*args, "--failure-rate", "0.4", "--no-progress"]) != 0:
        raise SystemExit(2)
    shutil.copy(f"{out}/index.parquet", f"{root}/index.orig.parquet")
    a_judge = judge_vs_truth(out)
    rows = []
    for q in a.accuracy:
        for seed in a.seeds:
            shutil.copy(f"{root}/index.orig.parquet", f"{out}/index.parquet")
            simulate_reviews(out, q, seed)
            r = calibrate(CalibrateOptions(out))
            s = r["samples"]
            lo, hi = s["accuracy"]["ci95"]
            d = expected_accuracy(q)
            expected = a_judge * d + (1 - a_judge) * (1 - d)
            row = {
                "accuracy": q,
                "seed": seed,
                "decisions_right": round(d, 4),
                "judge_vs_truth": round(a_judge, 4),
                "expected": round(expected, 4),
                "measured": s["accuracy"]["value"],
                "ci95": [lo, hi],
                "q_in_ci": lo <= q <= hi,
                "expected_in_ci": lo <= expected <= hi,
                "n": s["n"],
                "reviewer_1": r["reviewer_vs_judge"][0]["agreement"],
                "reviewer_1_q_in_ci": _within(q, r["reviewer_vs_judge"][0]["agreement"]["ci95"]),
                "kappa": s["kappa"]["value"],
                "pair_agreement": [x["agreement"] for x in r["reviewer_agreement"]],
                "pair_expected": round(q * q + (1 - q) * (1 - q), 4),
                "threshold_at_0.95": s["at_target"],
                "load": [round(x, 2) for x in os.getloadavg()],
            }
            rows.append(row)
            print(json.dumps(row, sort_keys=True), flush=True)
    summary = {
        "runs": len(rows),
        "q_in_ci": sum(r["q_in_ci"] for r in rows),
        "expected_in_ci": sum(r["expected_in_ci"] for r in rows),
        "reviewer_1_q_in_ci": sum(r["reviewer_1_q_in_ci"] for r in rows),
        "samples": a.samples,
        "image_size": a.image_size,
        "wall_s": round(time.perf_counter() - t0, 1),
        "cpu_s": round(time.process_time() - c0, 1),
        "load": [round(x, 2) for x in os.getloadavg()],
    }
    print(json.dumps(summary, sort_keys=True))
    if not a.keep:
        shutil.rmtree(root, ignore_errors=True)
    return rows


if __name__ == "__main__":
    main()
