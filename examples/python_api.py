"""The Python API in one script: build a small set, read its index, look at two samples with
their masks, audit it.

    python examples/python_api.py out/api-demo            # 20 candidates at 64 px
    python examples/python_api.py out/api-demo --samples 200 --image-size 128

The same jobs as ``mcie build``, ``mcie audit`` and a look at the shards; see ``help(mcie)``.
"""

from __future__ import annotations

import argparse
from collections import Counter

import mcie


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("out", help="build folder to write (must not exist yet)")
    p.add_argument("--samples", type=int, default=20, help="candidates to make (default 20)")
    p.add_argument("--image-size", type=int, default=64, help="image side in pixels (default 64)")
    args = p.parse_args(argv)

    # 1. build: every keyword is a flag of `mcie build`, underscores for dashes
    summary = mcie.build(args.out, samples=args.samples, image_size=args.image_size, seed=0, shard_size=10)
    print(f"built {summary['candidates']} candidates: {summary['by_status']}")

    # 2. the index: one row per candidate, accepted or not (pyarrow; .to_pandas() for pandas)
    index = mcie.read_index(args.out, columns=["key", "status", "reason", "num_sub_edits"])
    statuses = Counter(index.column("status").to_pylist())
    print(f"index: {index.num_rows} rows, {dict(sorted(statuses.items()))}")

    # 3. samples with their masks: numpy arrays, one bool mask per sub-edit
    for sample in mcie.iter_samples(args.out, limit=2):
        h, w, _ = sample.source.shape
        areas = [round(float(m.mean()), 3) for m in sample.masks]  # bool masks: share of the image
        print(f"sample {sample.key}: {w}x{h}, {len(sample.masks)} masks (area {areas}): {sample.instruction}")

    # 4. the audit: shards, index and masks checked; the filter against the synthetic truth
    report = mcie.audit_build(args.out)
    print(f"audit ok: {report['ok']}" + "".join(f"\n  problem: {p}" for p in report["problems"]))
    return 0 if report["ok"] else 2


if __name__ == "__main__":
    raise SystemExit(main())
