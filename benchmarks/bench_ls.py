"""Label Studio at scale: ``mcie ls export`` of N tasks and ``mcie ls import`` of their
annotations against a real local server (``.venv-ls``), with throughput and memory.

    .venv/bin/python benchmarks/bench_ls.py --samples 10000 --image-size 64

Steps: build N samples (or reuse ``--build DIR``: its pristine index is kept beside it and put
back before each run) → start a server on a copy of the tests' migrated data dir
(tests/ls_server.py; migrated once) → ``mcie ls export`` as a child process (timed; its peak
RSS from ``wait4``) → reviewers' annotations (10% rejected, 5% with a repainted mask, 5% with a
second reviewer; not in the figures), made through the API in bulk or one POST at a time
(``--annotate``, see :func:`annotate`) → ``mcie ls import`` as a child process. The
server's peak RSS (its process tree, read from /proc every 0.25 s) is taken during export and
during import; the load average before and after each step is printed beside it. Prints one
line per step, a JSON summary, and a one-line note for benchmarks/notes/.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path[:0] = [HERE, os.path.join(ROOT, "tests")]

from bench_build import code_tree  # noqa: E402  (one home for running another revision)
from bench_scale import tree_rss_kib  # noqa: E402  (one home for the process-tree RSS)
from ls_server import CACHE_NAME, free_port, migrated_data_dir  # noqa: E402  (the tests' server)

PROJECT = "bench"


def _load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


class TreePeak:
    """Peak summed RSS (MiB) of a process tree while the ``with`` block runs."""

    def __init__(self, pid: int):
        self.pid, self.peak_kib, self._stop = pid, 0, threading.Event()

    def _poll(self) -> None:
        while not self._stop.is_set():
            self.peak_kib = max(self.peak_kib, tree_rss_kib(self.pid))
            self._stop.wait(0.25)

    def __enter__(self) -> TreePeak:
        self._t = threading.Thread(target=self._poll, daemon=True)
        self._t.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._t.join()

    @property
    def mib(self) -> float:
        return round(self.peak_kib / 1024, 1)


def run_mcie(args: list[str], env: dict[str, str], logdir: str) -> tuple[dict, float, float]:
    """``mcie ARGS --json`` in a child process: (its JSON summary, wall s, its peak RSS in MiB
    from ``wait4``: that process alone, not the bench)."""
    cmd = [sys.executable, "-m", "mcie.cli", *args, "--json", "--no-progress"]
    name = os.path.join(logdir, "-".join(args[:2]))
    with open(name + ".out", "w+") as out, open(name + ".err", "w+") as err:
        t0 = time.perf_counter()
        # run from logdir: from the repository root, ``-m`` would import the checkout's mcie first
        proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=err, cwd=logdir)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - t0
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0), err.seek(0)
        if proc.returncode != 0:
            raise SystemExit(f"mcie {' '.join(args[:2])} exited {proc.returncode}: {err.read()[-2000:]}")
        return json.loads(out.read().strip().splitlines()[-1]), wall, round(usage.ru_maxrss / 1024, 1)


def build(out: str, samples: int, image_size: int) -> None:
    pristine = os.path.join(out, "index.parquet.pristine")
    if os.path.exists(pristine):
        shutil.copyfile(pristine, os.path.join(out, "index.parquet"))
        shutil.rmtree(os.path.join(out, "review"), ignore_errors=True)
        print(f"build: reusing {out}", flush=True)
        return
    t0 = time.perf_counter()
    cmd = [sys.executable, "-m", "mcie.cli", "build", "--out", out, "--samples", str(samples),
           "--image-size", str(image_size), "--shard-size", "500", "--workers", "2",
           "--no-progress"]  # fmt: skip
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    shutil.copyfile(os.path.join(out, "index.parquet"), pristine)
    print(f"build: {samples} samples in {time.perf_counter() - t0:.1f} s", flush=True)


def _reviewer_ids(c) -> tuple[int, int]:
    me = c.get("/api/current-user/whoami").raise_for_status().json()["id"]
    other = c.post(
        "/api/users/", json={"username": "bench2", "email": "bench2@mcie.local", "password": "x" * 16}
    ).raise_for_status().json()["id"]  # fmt: skip
    return me, other


def _annotations(i: int, task: dict, me: int, other: int) -> list[dict]:
    """The reviewers' annotations of the i-th task: 10% rejected, 5% with slot 0 repainted
    (verdict fixed), 5% with a second reviewer agreeing; the rest accepted as pre-filled."""
    from mcie.annotation import config as cfg
    from mcie.annotation.tasks import brush_region

    result = [dict(r) for r in task["predictions"][0]["result"]]
    verdict = "reject" if i % 10 == 0 else "accept"
    if i % 20 == 1:  # a reviewer repaints slot 0
        w, h = task["data"]["width"], task["data"]["height"]
        m = np.zeros((h, w), bool)
        m[h // 4 : h // 2, w // 4 : w // 2] = True
        result = [r for r in result if r["from_name"] != cfg.mask_control(0)]
        result.append(brush_region(0, m, region_id="p0"))
        verdict = "fixed"
    v = {
        "id": "v",
        "type": "choices",
        "from_name": "verdict",
        "to_name": "tgt",
        "value": {"choices": [verdict]},
    }
    return [{"result": [*result, v], "completed_by": u} for u in ([me, other] if i % 20 == 2 else [me])]


def _orm_annotate(wanted: dict[int, list[dict]], ls_env: dict[str, str]) -> float:
    """``ls_orm_annotate.py`` on ``wanted`` with the Label Studio venv's Python; its seconds."""
    with tempfile.NamedTemporaryFile("w", suffix=".json") as fh:
        json.dump(wanted, fh)
        fh.flush()
        t0 = time.perf_counter()
        py = os.path.join(ls_env["venv"], "bin", "python")
        env = ls_env["env"]
        subprocess.run([py, os.path.join(HERE, "ls_orm_annotate.py"), fh.name], env=env, check=True,
                       stdout=subprocess.DEVNULL)  # fmt: skip
        return time.perf_counter() - t0


def annotate(url: str, token: str, project_ids: list[int], mode: str, threads: int,
             ls_env: dict[str, str] | None = None) -> tuple[str, int, float]:  # fmt: skip
    """Reviewers' annotations on every exported task; returns (the title to import, number of
    annotations, seconds).

    ``api``: one POST per annotation on the exported tasks, ``threads`` at a time, as reviewers'
    browsers send them (Label Studio has no bulk annotation endpoint; ~10/s here, so 10k tasks
    take half an hour). ``orm``: the same annotations on the exported tasks, written in bulk
    through Label Studio's models (``ls_orm_annotate.py``): what import meets after reviewers
    worked in the tasks mcie sent (export recorded their pre-annotations' digests).
    ``bulk``: the exported tasks with their predictions and these
    annotations imported, 500 per request, into a copy of the review (``bench-reviewed`` and its
    parts), which ``ls import`` then reads: the same tasks, predictions and annotations for the
    server to serve. An untimed ``ls export`` into the copy (nothing to send) then records the
    copy's task ids in the index, as a user's re-export would."""
    import httpx

    from mcie.annotation import config as cfg
    from mcie.annotation.client import iter_tasks
    from mcie.annotation.parts import part_description, part_title

    headers = {"Authorization": f"Token {token}"}
    t0 = time.perf_counter()
    n = 0
    with httpx.Client(base_url=url, headers=headers, timeout=600) as c:
        me, other = _reviewer_ids(c)
        if mode == "api":
            local = threading.local()

            def one(i_task) -> int:
                i, task = i_task
                if not hasattr(local, "c"):
                    local.c = httpx.Client(base_url=url, headers=headers, timeout=300)
                anns = _annotations(i, task, me, other)
                for a in anns:
                    local.c.post(f"/api/tasks/{task['id']}/annotations/", json=a).raise_for_status()
                return len(anns)

            tasks = [t for pid in project_ids for t in iter_tasks(c, pid, 500, fields="all")]
            with concurrent.futures.ThreadPoolExecutor(threads) as pool:
                n = sum(pool.map(one, enumerate(tasks)))
            return PROJECT, n, time.perf_counter() - t0
        if mode == "orm":
            wanted, i = {}, 0
            for pid in project_ids:
                for t in iter_tasks(c, pid, 500, fields="all"):
                    wanted[t["id"]] = _annotations(i, t, me, other)
                    i, n = i + 1, n + len(wanted[t["id"]])
            return PROJECT, n, _orm_annotate(wanted, ls_env)
        title = f"{PROJECT}-reviewed"
        i = 0
        for part, pid in enumerate(project_ids, 1):
            copy = c.post("/api/projects/", json={
                "title": part_title(title, part), "label_config": cfg.labeling_config(),
                "description": part_description(title, part)}).raise_for_status().json()["id"]  # fmt: skip
            batch = []
            for t in iter_tasks(c, pid, 500, fields="all"):
                anns = _annotations(i, t, me, other)
                batch.append({"data": t["data"], "meta": t.get("meta") or {}, "predictions": [
                    {k: t["predictions"][0][k] for k in ("result", "score", "model_version")}],
                    "annotations": anns})  # fmt: skip
                i, n = i + 1, n + len(anns)
                if len(batch) == 500:
                    c.post(f"/api/projects/{copy}/import", json=batch).raise_for_status()
                    batch = []
            if batch:
                c.post(f"/api/projects/{copy}/import", json=batch).raise_for_status()
        return title, n, time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--samples", type=int, default=2000, help="samples built and exported (default 2000)")
    ap.add_argument("--image-size", type=int, default=64, help="image side in pixels (default 64)")
    ap.add_argument("--batch-size", type=int, default=None, help="tasks per export request (default: mcie's)")
    ap.add_argument("--max-tasks-per-project", type=int, default=None, help="export's cap (default: mcie's)")
    ap.add_argument(
        "--annotate",
        choices=["bulk", "api", "orm"],
        default="bulk",
        help="how reviewers' annotations are made (see annotate(); default bulk)",
    )
    ap.add_argument("--annotate-threads", type=int, default=4, help="parallel requests of --annotate api")
    ap.add_argument("--build", default=None, help="build here, or reuse the build already here")
    ap.add_argument(
        "--ls-cache",
        default=os.path.join(ROOT, ".pytest_cache", "d", CACHE_NAME),
        help="migrated data dir cache, shared with the tests (default: the tests' own)",
    )
    ap.add_argument(
        "--code", metavar="REV", default=None, help="run export and import from git revision REV (a baseline)"
    )
    ap.add_argument("--keep", action="store_true", help="keep the temporary folder")
    ap.add_argument(
        "--read",
        default="list",
        help="comma-separated `ls import --read` modes, imported in this order on the same"
        " annotations (default list; `list,snapshot` compares both)",
    )
    args = ap.parse_args()

    from mcie.annotation.server import LabelStudioServer, ServerConfig

    tmp = tempfile.mkdtemp(prefix="bench-ls-")
    out = os.path.abspath(args.build) if args.build else os.path.join(tmp, "build")
    load = {"start": _load()}
    build(out, args.samples, args.image_size)
    data, creds = migrated_data_dir(args.ls_cache)
    shutil.copytree(data, os.path.join(tmp, "ls"))
    server = LabelStudioServer(ServerConfig(os.path.join(tmp, "ls"), port=free_port()), env=creds)
    server.start()
    try:
        token = creds["LABEL_STUDIO_USER_TOKEN"]
        env = {**os.environ, "LABEL_STUDIO_URL": server.url, "LABEL_STUDIO_USER_TOKEN": token,
               "LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT": server.config.document_root}  # fmt: skip
        if args.code:
            env["PYTHONPATH"] = (
                code_tree(args.code, os.path.join(tmp, "code")) + os.pathsep + env.get("PYTHONPATH", "")
            )
        extra = []
        if args.batch_size:
            extra += ["--batch-size", str(args.batch_size)]
        if args.max_tasks_per_project:
            extra += ["--max-tasks-per-project", str(args.max_tasks_per_project)]
        server_idle_mib = round(tree_rss_kib(server._proc.pid) / 1024, 1)

        load["export_before"] = _load()
        with TreePeak(server._proc.pid) as srv_exp:
            exp, exp_wall, exp_rss = run_mcie(["ls", "export", out, "--project", PROJECT, *extra], env, tmp)
        load["export_after"] = _load()
        print(f"export: {exp['exported']} tasks in {exp['elapsed_s']} s = {exp['tasks_per_s']} tasks/s "
              f"(process {exp_wall:.1f} s, peak RSS {exp_rss} MiB; server peak {srv_exp.mib} MiB; "
              f"load {load['export_before']} -> {load['export_after']})", flush=True)  # fmt: skip

        project_ids = [p["id"] for p in exp.get("projects", [])] or [exp["project_id"]]
        ls_env = {"venv": server.config.venv, "env": server._env()}  # the server's own settings
        reviewed, n_ann, ann_s = annotate(
            server.url, token, project_ids, args.annotate, args.annotate_threads, ls_env
        )
        print(
            f"annotate ({args.annotate}, not in the figures): {n_ann} annotations in {ann_s:.1f} s",
            flush=True,
        )
        if reviewed != PROJECT:  # the index learns where the reviewed tasks are, as a re-export does
            run_mcie(["ls", "export", out, "--project", reviewed, *extra], env, tmp)

        imports = {}
        for mode in args.read.split(","):
            load[f"import_{mode}_before"] = _load()
            server_before_import_mib = round(tree_rss_kib(server._proc.pid) / 1024, 1)  # kept from the copy
            # (list is the default: a --code baseline from before --read runs it too)
            argv = ["ls", "import", out, "--project", reviewed, *(["--read", mode] if mode != "list" else [])]
            with TreePeak(server._proc.pid) as srv_imp:
                imp, imp_wall, imp_rss = run_mcie(argv, env, tmp)
            load[f"import_{mode}_after"] = _load()
            print(f"import ({mode}): {imp['tasks']} tasks in {imp['elapsed_s']} s = "
                  f"{imp['tasks_per_s']} tasks/s "
                  f"{imp['by_decision']} (process {imp_wall:.1f} s, peak RSS {imp_rss} MiB; "
                  f"server peak {srv_imp.mib} MiB, {server_before_import_mib} MiB before; "
                  f"load {load[f'import_{mode}_before']} -> {load[f'import_{mode}_after']})",
                  flush=True)  # fmt: skip
            imports[mode] = {
                "import": {k: v for k, v in imp.items() if k != "disagreements"},
                "process_s": round(imp_wall, 1),
                "peak_rss_mib": imp_rss,
                "server_rss_before_mib": server_before_import_mib,
                "server_peak_rss_mib": srv_imp.mib,
            }
        summary = {
            "samples": args.samples,
            "code": args.code or "checkout",
            "image_size": args.image_size,
            "export": exp,
            "export_process_s": round(exp_wall, 1),
            "export_peak_rss_mib": exp_rss,
            "imports": imports,
            "server_idle_rss_mib": server_idle_mib,
            "server_peak_rss_mib_export": srv_exp.mib,
            "annotations": n_ann,
            "annotate_mode": args.annotate,
            "annotate_s": round(ann_s, 1),
            "load_average": load,
        }
        print(json.dumps(summary, sort_keys=True))
        last = list(imports)[-1]
        print(
            f"NOTE | {exp['exported']} | export {exp['tasks_per_s']} tasks/s"
            + "".join(f" | import ({m}) {v['import']['tasks_per_s']} tasks/s" for m, v in imports.items())
            + f" | mcie peak {exp_rss} / "
            + " / ".join(f"{v['peak_rss_mib']}" for v in imports.values())
            + f" MiB | server peak {srv_exp.mib} / "
            + " / ".join(f"{v['server_peak_rss_mib']}" for v in imports.values())
            + f" MiB | load {load['export_before'][0]}-{load[f'import_{last}_after'][0]} |"
        )
    finally:
        server.stop()
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
