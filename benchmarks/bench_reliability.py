"""What the reliability checks cost (issue 14): the training loader's per-sample validation and
whole-shard check, and the final step's cross-unit duplicate pass on a build without duplicates.

    .venv/bin/python benchmarks/bench_reliability.py --samples 300 --image-size 256 --baseline main

Builds a synthetic set (one worker), then times, over every accepted sample, the loader's
decode with the one sample validator (what ``mcie train`` runs now) against the validator alone
and against the loader's decoder at git ref ``--baseline`` (before the checks: no validation),
and the shard check and duplicate pass against reading the shards. Prints ratios from this one
run (the machine is shared: compare ratios, not seconds).
"""

from __future__ import annotations

import argparse
import glob
import os
import tempfile
import time


def _timed(fn, repeat: int = 3) -> float:
    best = float("inf")
    for _ in range(repeat):
        t0 = time.process_time()
        fn()
        best = min(best, time.process_time() - t0)
    return best


def _decoder_at(ref: str):
    """``SampleDecoder`` of ``model/data.py`` at git ``ref``, loaded as a module of its own."""
    import importlib.util
    import subprocess

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    text = subprocess.run(
        ["git", "show", f"{ref}:model/data.py"], cwd=root, capture_output=True, check=True
    ).stdout
    path = os.path.join(tempfile.mkdtemp(), "data_at_ref.py")
    with open(path, "wb") as fh:
        fh.write(text)
    spec = importlib.util.spec_from_file_location("data_at_ref", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.SampleDecoder


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--samples", type=int, default=300, help="candidates to build (default 300)")
    ap.add_argument("--image-size", type=int, default=256, help="image side (default 256)")
    ap.add_argument("--resolution", type=int, default=32, help="training resolution (default 32)")
    ap.add_argument("--baseline", default=None, help="git ref whose model/data.py decoder to compare with")
    args = ap.parse_args()

    import torch

    torch.set_num_threads(1)
    from mcie.cli import main as mcie
    from mcie.model.config import MCIEConfig
    from mcie.model.data import SampleDecoder, check_shards
    from mcie.model.editor import MCIEEditor
    from mcie.pipeline.duplicates import resolve_duplicates
    from mcie.shards import read_tar
    from mcie.validate import sample_problems

    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "out")
        print(f"building {args.samples} candidates at {args.image_size} px ...", flush=True)
        build = ["build", "--out", out, "--samples", str(args.samples), "--image-size", str(args.image_size)]
        assert mcie([*build, "--shard-size", "100", "--workers", "1", "--no-progress"]) == 0
        shards = sorted(glob.glob(os.path.join(out, "shards", "*.tar")))
        samples = [(k, m, p) for p in shards for k, m in read_tar(p)]
        cfg = MCIEConfig.preset_config("tiny")
        decoder = SampleDecoder(MCIEEditor.from_config(cfg).tokenizer, args.resolution, cfg.max_sub_edits)
        wds_samples = [{"__key__": k, "__url__": p, **m} for k, m, p in samples]

        t_decode = _timed(lambda: [decoder(s) for s in wds_samples])
        t_validate = _timed(lambda: [sample_problems(k, m) for k, m, _ in samples])
        t_read = _timed(lambda: [list(read_tar(p)) for p in shards])
        t_check = _timed(lambda: check_shards(shards))
        t_dups = _timed(lambda: resolve_duplicates(out))
        n = len(samples)
        print(f"accepted samples: {n} in {len(shards)} shards (process CPU time, best of 3)")
        print(f"loader decode incl. validation: {1000 * t_decode / n:.2f} ms/sample")
        print(f"  validation alone:             {1000 * t_validate / n:.2f} ms/sample "
              f"({t_validate / t_decode:.0%} of the loader's decode)")  # fmt: skip
        if args.baseline:
            old = _decoder_at(args.baseline)(decoder.tokenizer, args.resolution, cfg.max_sub_edits)
            t_old = _timed(lambda: [old(s) for s in wds_samples])
            print(f"loader decode at {args.baseline} (no checks): {1000 * t_old / n:.2f} ms/sample; "
                  f"now / then: {t_decode / t_old:.2f}")  # fmt: skip
        print(f"whole-shard check: {1000 * t_check:.1f} ms for {len(shards)} shards "
              f"({t_check / t_read:.1%} of reading them)")  # fmt: skip
        print(f"duplicate pass (no duplicates): {1000 * t_dups:.1f} ms for {args.samples} index rows")


if __name__ == "__main__":
    main()
