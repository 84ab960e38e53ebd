"""Label Studio round-trip throughput: ``mcie ls export`` of N tasks (images copied, brush RLE
pre-annotations, batched imports) and ``mcie ls import`` of their annotations, against a real
local server started from ``.venv-ls`` in a temporary data dir.

    .venv/bin/python benchmarks/bench_ls.py --samples 2000 --image-size 256

Annotating (one API call per task, 10% rejected, 5% with a repainted mask, 5% with a second
reviewer) happens between the two and is not timed. Prints one line per measurement and a JSON
summary at the end.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import os
import secrets
import sys
import tempfile
import time

import numpy as np


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--samples", type=int, default=2000, help="samples built and exported (default 2000)")
    ap.add_argument("--image-size", type=int, default=256, help="image side in pixels (default 256)")
    ap.add_argument("--batch-size", type=int, default=100, help="tasks per import request (default 100)")
    ap.add_argument("--keep", action="store_true", help="keep the temporary folder")
    args = ap.parse_args()

    from mcie.annotation import config as cfg
    from mcie.annotation.client import Connection
    from mcie.annotation.export import export_project
    from mcie.annotation.importer import import_project
    from mcie.annotation.server import LabelStudioServer, ServerConfig
    from mcie.annotation.tasks import mask_to_rle
    from mcie.cli import main as mcie

    tmp = tempfile.mkdtemp(prefix="bench-ls-")
    out = os.path.join(tmp, "build")
    t0 = time.perf_counter()
    rc = mcie(
        [
            "build",
            "--out",
            out,
            "--samples",
            str(args.samples),
            "--image-size",
            str(args.image_size),
            "--shard-size",
            "500",
            "--workers",
            "2",
            "--no-progress",
        ]
    )
    assert rc == 0
    print(f"build: {args.samples} samples in {time.perf_counter() - t0:.1f} s", flush=True)

    creds = {
        "LABEL_STUDIO_USERNAME": "bench@mcie.local",
        "LABEL_STUDIO_PASSWORD": secrets.token_hex(12),
        "LABEL_STUDIO_USER_TOKEN": secrets.token_hex(20),
    }
    server = LabelStudioServer(ServerConfig(os.path.join(tmp, "ls"), port=18700), env=creds)
    t0 = time.perf_counter()
    server.start()
    print(f"server: first start (migrations) {time.perf_counter() - t0:.1f} s at {server.url}", flush=True)
    try:
        conn = Connection(server.url, creds["LABEL_STUDIO_USER_TOKEN"])
        devnull = open(os.devnull, "w")  # noqa: SIM115
        exp = export_project(
            out, "bench", conn, server.config.document_root, "all", batch_size=args.batch_size, log=devnull
        )
        print(
            f"export: {exp['exported']} tasks in {exp['elapsed_s']} s = {exp['tasks_per_s']} tasks/s",
            flush=True,
        )

        ls = conn.client()
        me = ls.users.whoami()
        other = ls.users.create(username="bench2", email="bench2@mcie.local", password=secrets.token_hex(8))
        tasks = list(ls.tasks.list(project=exp["project_id"], fields="all", page_size=500))
        t0 = time.perf_counter()

        def annotate(i_task):
            i, t = i_task
            pred = t.predictions[0]
            pred = pred if isinstance(pred, dict) else pred.model_dump()
            result = [dict(r) for r in pred["result"]]
            verdict = "reject" if i % 10 == 0 else "accept"
            if i % 20 == 1:  # repaint slot 0
                w, h = t.data["width"], t.data["height"]
                m = np.zeros((h, w), bool)
                m[h // 4 : h // 2, w // 4 : w // 2] = True
                result = [r for r in result if r["from_name"] != cfg.mask_control(0)]
                result.append(
                    {
                        "id": "p0",
                        "type": "brushlabels",
                        "from_name": cfg.mask_control(0),
                        "to_name": "tgt",
                        "original_width": w,
                        "original_height": h,
                        "image_rotation": 0,
                        "value": {"format": "rle", "rle": mask_to_rle(m), "brushlabels": [cfg.mask_label(0)]},
                    }
                )
                verdict = "fixed"
            v = {
                "id": "v",
                "type": "choices",
                "from_name": "verdict",
                "to_name": "tgt",
                "value": {"choices": [verdict]},
            }
            ls.annotations.create(id=t.id, result=[*result, v], completed_by=me.id)
            if i % 20 == 2:
                ls.annotations.create(id=t.id, result=[*result, v], completed_by=other.id)

        with concurrent.futures.ThreadPoolExecutor(4) as pool:
            list(pool.map(annotate, enumerate(tasks)))
        print(
            f"annotate (not timed in the figures): {len(tasks)} tasks in {time.perf_counter() - t0:.1f} s",
            flush=True,
        )

        imp = import_project(out, "bench", conn)
        print(
            f"import: {imp['tasks']} tasks in {imp['elapsed_s']} s = {imp['tasks_per_s']} tasks/s "
            f"{imp['by_decision']}",
            flush=True,
        )
        print(
            json.dumps(
                {
                    "samples": args.samples,
                    "image_size": args.image_size,
                    "export": exp,
                    "import": {k: v for k, v in imp.items() if k != "disagreements"},
                },
                sort_keys=True,
            )
        )
    finally:
        server.stop()
        if not args.keep:
            import shutil

            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
