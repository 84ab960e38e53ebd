"""``mcie ls export``: send build samples to a Label Studio project for human review.

Steps: select samples from the index → create or reuse the project (our labeling config) and
find its parts (:mod:`mcie.annotation.parts`) → list the keys the parts already hold → for the
rest, in shard order: copy the image members out of the tars into the current part's folder
``{document_root}/mcie/{part}-{id}`` (the original bytes: no re-encoding; a local-files storage
on that folder) and import tasks with predictions in batches, filling each part up to its cap
→ mark the samples sent ``pending`` / ``sent_for_review`` in the index, written once at the end
(or when a batch fails: what landed is marked).

Idempotent by sample key: a re-run imports only keys no part holds, so an interrupted run
resumes where it stopped without duplicates (a batch is one request and one database
transaction on the server: it lands whole or not at all), and marks the samples that landed
before the interruption but were not marked.

Images are served by the server's local-files storage, so the server must run on this machine:
a remote server is refused with a clear message (cloud storage is not supported yet).
"""

from __future__ import annotations

import collections
import concurrent.futures
import contextlib
import json
import os
import random
import re
import sys
import time
from collections.abc import Callable
from typing import Any

from mcie import storage
from mcie.annotation import config as cfg
from mcie.annotation import parts as parts_mod
from mcie.annotation import review_index as ri
from mcie.annotation.client import (
    NO_RETRY,
    Connection,
    find_project,
    http,
    iter_tasks,
    json_of,
    require_project,
)
from mcie.annotation.limits import DEFAULT_BATCH_SIZE, DEFAULT_MAX_TASKS, MAX_REQUEST_BYTES, MAX_TITLE
from mcie.annotation.tasks import task_for
from mcie.annotation.verdicts import predicted_digests
from mcie.exitcodes import UsageError
from mcie.keys import check_shard_ref
from mcie.layout import INDEX_FILE, BuildLayout
from mcie.progress import Progress
from mcie.reasons import Reason, Status
from mcie.runlock import RunLock
from mcie.shards import read_tar
from mcie.validate import check_sample

ENV_DOCUMENT_ROOT = "LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT"
#: Margin on background SSIM around its threshold that makes a sample borderline.
BORDERLINE_SSIM_MARGIN = 0.02
#: Test seam: called after each imported batch with the number of batches done.
_after_batch: Callable[[int], None] | None = None


def project_folder(project: str, project_id: int | None = None) -> str:
    """The folder (relative to the document root) holding a project's images: the title's
    slug and the project's id, so two projects whose titles slug alike ("rev 1", "rev/1",
    "rev-1") never share a folder and never show each other's images. Without an id: the
    folder whose lock serialises exports into projects of that title."""
    slug = re.sub(r"[^A-Za-z0-9_-]+", "-", project).strip("-") or "project"
    return os.path.join("mcie", slug if project_id is None else f"{slug}-{project_id}")


def _thresholds(out: str) -> dict[str, float]:
    try:
        return storage.read_json(BuildLayout(out).run_manifest)["meta"]["thresholds"]
    except (OSError, KeyError, ValueError):
        return {"bg_ssim_min": 0.98}


def _borderline(row: dict[str, Any], th: dict[str, float]) -> bool:
    """A sample the filter decided by a small margin: rejected for exactly one sub-instruction
    not executed, or a background SSIM within :data:`BORDERLINE_SSIM_MARGIN` of its threshold
    (on either side)."""
    status, reason = ri.prior_status(row)
    if status == Status.REJECTED.value and reason == Reason.SUB_EDIT_NOT_EXECUTED.value:
        return sum(1 for c in row["sub_compliance"] or [] if c is not None and c < 1.0) == 1
    ssim, lo = row.get("bg_ssim"), th.get("bg_ssim_min", 0.98)
    return ssim is not None and abs(ssim - lo) <= BORDERLINE_SSIM_MARGIN


def select_keys(rows: dict[str, dict[str, Any]], select: str, out: str, seed: int = 0) -> list[str]:
    """Keys chosen by ``select``: ``all`` | ``accepted`` | ``rejected`` | ``borderline`` |
    ``random:N`` (a seeded audit sample of N among samples with images). Failed samples have
    no images and are never sent. The result is sorted and does not change when samples turn
    ``pending`` (selection reads the pipeline's prior status)."""
    with_images = sorted(k for k, r in rows.items() if r["shard"] and ri.prior_status(r)[0] != "failed")
    if select == "all":
        return with_images
    if select in ("accepted", "rejected"):
        return [k for k in with_images if ri.prior_status(rows[k])[0] == select]
    if select == "borderline":
        th = _thresholds(out)
        return [k for k in with_images if _borderline(rows[k], th)]
    if select.startswith("random:"):
        try:
            n = int(select.split(":", 1)[1])
        except ValueError:
            n = -1
        if n < 0:
            raise UsageError(f"--select {select!r}: random:N needs a count N >= 0")
        return sorted(random.Random(seed).sample(with_images, min(n, len(with_images))))
    raise UsageError(f"--select {select!r}: choose all, accepted, rejected, borderline or random:N")


def _ensure_project(ls, conn: Connection, name: str, log, project_id: int | None = None):
    p = find_project(ls, conn, name, project_id)
    if p is not None:
        needed = ('name="verdict"', 'name="slots"', 'name="mask0"', 'name="instruction_fix"')
        if not all(n in (p.label_config or "") for n in needed):
            raise UsageError(
                f"project {name!r} exists with a labeling config that is not mcie's; "
                "choose another --project name"
            )
        if p.label_config != cfg.labeling_config():
            p = _update_config(ls, conn, p)
            print(f"project {name!r}: labeling config updated to this mcie's", file=log, flush=True)
    else:
        with conn.errors(f"creating project {name!r}"):
            p = ls.projects.create(
                title=name,
                label_config=cfg.labeling_config(),
                description=parts_mod.part_description(name, 1),
                request_options=NO_RETRY,
            )
    return p


def _update_config(ls, conn: Connection, p):
    """Replace an mcie project's labeling config made by an earlier version (e.g. the one whose
    hidden ``slots`` view made Label Studio's labeling view blank) with the current one, in
    place: control names are unchanged, so Label Studio keeps its tasks and annotations."""
    with conn.errors(
        f"updating project {p.title!r} to the current labeling config (to start afresh instead, "
        "export to a new --project name)"
    ):
        return ls.projects.update(id=p.id, label_config=cfg.labeling_config())


def _ensure_storage(ls, conn: Connection, project_id: int, path: str) -> None:
    with conn.errors("listing the project's local-files storages"):
        for s in ls.import_storage.local.list(project=project_id):
            if os.path.normpath(s.path or "") == os.path.normpath(path):
                return
    with conn.errors(
        f"attaching local-files storage {path!r} (the server needs "
        "LABEL_STUDIO_LOCAL_FILES_SERVING_ENABLED=true and this folder under its "
        "LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT)"
    ):
        ls.import_storage.local.create(
            project=project_id, path=path, use_blob_urls=False, title="mcie images", regex_filter=r"^$"
        )


def existing_keys(h, conn: Connection, project_id: int) -> dict[str, int]:
    """``{sample key: task id}`` of the tasks the project holds (``h``: :func:`http`)."""
    keys: dict[str, int] = {}
    with conn.errors("listing the project's tasks"):
        for t in iter_tasks(h, project_id):
            k = (t.get("data") or {}).get("key")
            if k:
                keys[k] = t["id"]
    return keys


def _mark_pending(
    row: dict[str, Any], project: str, task_id: int | None, predicted: dict[str, str] | None = None
) -> bool:
    """Mark a sample sent to ``project`` (a part's title) as pending review; False when nothing
    changed (or a reviewer's verdict from that project is kept). A pending sample records the
    task it was last found in or sent as: import reads a part by those task ids. ``predicted``:
    the digests of the pre-annotations sent with it (:func:`~mcie.annotation.verdicts.
    predicted_digests`), so import need not read the predictions back."""
    rv = ri.review_of(row)
    extra = {"predicted": predicted} if predicted is not None else {}
    if row["status"] == Status.PENDING.value:
        if not rv or (rv.get("project"), rv.get("task_id")) == (project, task_id) or task_id is None:
            return False
        moved = {k: v for k, v in rv.items() if k != "predicted"}  # digests of the task it left
        ri.set_review(row, {**moved, "project": project, "task_id": task_id, **extra})
        return True
    if rv and rv.get("project") == project and rv.get("decision"):
        return False  # already reviewed in this project: keep the human verdict
    prior = (row["status"], row["reason"])
    ri.set_review(
        row,
        {"state": "pending", "project": project, "task_id": task_id, "prior_status": prior[0],
         "prior_reason": prior[1], **extra},
    )  # fmt: skip
    row["status"], row["reason"] = Status.PENDING.value, Reason.SENT_FOR_REVIEW.value
    return True


class PartSender:
    """Sends tasks into the review's parts (:mod:`mcie.annotation.parts`) in order, each part
    filled up to ``max_tasks``, a new part created when the last is full. Tasks go in batches:
    one import request per batch (its tasks already JSON, so a batch costs its bytes in memory,
    not a tree of Python objects), at most ``batch_size`` tasks and
    :data:`MAX_REQUEST_BYTES`, so a batch lands whole or not at all."""

    def __init__(self, ls, conn: Connection, http, parts: list, counts: list[int], root: str,
                 max_tasks: int, batch_size: int, log) -> None:  # fmt: skip
        self.ls, self.conn, self.http, self.root, self.log = ls, conn, http, root, log
        self.parts, self.counts = parts, counts
        self.max_tasks, self.batch_size = max_tasks, batch_size
        self.batch: list[tuple[str, bytes]] = []
        self.nbytes = 0
        self.current = -1
        self.sent_to: dict[str, tuple[str, int | None]] = {}  # key -> (part title, task id)
        self.predicted: dict[str, dict[str, str]] = {}  # key -> digests of its pre-annotations
        self.versions: set[str] = set()
        self.batches = 0
        self.checked = False
        self.on_flush: Callable[[int], None] = lambda sent: None
        self.pool = concurrent.futures.ThreadPoolExecutor(1)  # one request at a time
        self.inflight: tuple[concurrent.futures.Future, Any, list[str]] | None = None

    @property
    def title(self) -> str:
        return self.parts[0].title

    def _room(self) -> int:
        """Move to the first part with room (creating the next part when all are full); the
        room left in it."""
        if self.current < 0 or self.counts[self.current] + len(self.batch) >= self.max_tasks:
            self.flush()
            i = next((i for i, c in enumerate(self.counts) if c < self.max_tasks), None)
            if i is None:
                n = len(self.parts) + 1
                name = parts_mod.check_new_part(self.ls, self.conn, self.title, n)
                with self.conn.errors(f"creating project {name!r}"):
                    p = self.ls.projects.create(
                        title=name, label_config=cfg.labeling_config(),
                        description=parts_mod.part_description(self.title, n),
                        request_options=NO_RETRY,
                    )  # fmt: skip
                print(f"project {name!r}: part {n} of {self.title!r} created", file=self.log, flush=True)
                self.parts.append(p)
                self.counts.append(0)
                i = len(self.parts) - 1
            if i != self.current:
                self.current = i
                p = self.parts[i]
                self.rel = project_folder(p.title, p.id)
                self.folder = os.path.join(self.root, self.rel)
                os.makedirs(self.folder, exist_ok=True)
                _ensure_storage(self.ls, self.conn, p.id, self.folder)
        return self.max_tasks - self.counts[self.current] - len(self.batch)

    def add(self, key: str, meta: dict[str, Any], members: dict[str, bytes]) -> None:
        """Write the sample's images into the current part's folder and queue its task."""
        self._room()
        urls = []
        for role in ("src", "tgt"):
            name = next(n for n in members if n.startswith(f"{role}."))
            _write_once(_inside(self.folder, f"{key}.{name}"), members[name])
            urls.append(f"/data/local-files/?d={self.rel}/{key}.{name}")
        if not self.checked:
            _check_served(self.conn, urls[0], self.root)
            self.checked = True
        masks = [members[f"mask{i}.png"] for i in range(len(meta["sub_edits"]))]
        task = task_for(meta, masks, *urls)
        self.versions.add(task["predictions"][0]["model_version"])
        self.predicted[key] = predicted_digests(task["predictions"])
        body = json.dumps(task, separators=(",", ":")).encode()
        if self.batch and self.nbytes + len(body) > MAX_REQUEST_BYTES:
            self.flush()
        self.batch.append((key, body))
        self.nbytes += len(body) + 1
        if len(self.batch) >= self.batch_size:
            self.flush()

    def flush(self) -> None:
        """Send the queued tasks to the current part: one request, answered while the next
        batch is built (the tasks' JSON here, the database work there: on two cores they
        overlap). One request at a time: the previous one is collected first."""
        if not self.batch:
            return
        self.collect()
        p = self.parts[self.current]
        body = b"[" + b",".join(b for _, b in self.batch) + b"]"
        keys = [k for k, _ in self.batch]
        self.counts[self.current] += len(keys)  # the room left counts what is in flight
        self.batch, self.nbytes = [], 0
        self.inflight = (self.pool.submit(self._post, p, body, len(keys)), p, keys)

    def _post(self, p, body: bytes, n: int) -> dict[str, Any]:
        with self.conn.errors(f"importing a batch of {n} tasks into {p.title!r}"):
            return json_of(
                self.http.post(
                    f"/api/projects/{p.id}/import", params={"return_task_ids": "true"}, content=body,
                    headers={"Content-Type": "application/json"},
                )
            )  # fmt: skip

    def collect(self) -> None:
        """Wait for the request in flight and record its tasks; its failure is raised here."""
        if self.inflight is None:
            return
        future, p, keys = self.inflight
        self.inflight = None
        resp = future.result()
        ids = list(resp.get("task_ids") or [None] * len(keys))
        for k, tid in zip(keys, ids, strict=False):
            self.sent_to[k] = (p.title, tid)
        self.batches += 1
        self.on_flush(len(self.sent_to))
        if _after_batch is not None:
            _after_batch(self.batches)

    def close(self) -> None:
        """Send what is queued and wait for it."""
        self.flush()
        self.collect()
        self.pool.shutdown()

    def settle(self) -> None:
        """After a failure: record the request in flight if it landed, drop what is queued."""
        with contextlib.suppress(Exception):  # the failure being handled is the one to report
            self.collect()
        self.pool.shutdown()

    def set_model_version(self) -> None:
        """The annotators' pre-fill shows the predictions of the project's model version."""
        if len(self.versions) != 1:
            return
        version = next(iter(self.versions))
        for p in self.parts:
            if getattr(p, "model_version", None) != version:
                with self.conn.errors(f"setting the model version of {p.title!r}"):
                    self.ls.projects.update(id=p.id, model_version=version, show_collab_predictions=True)


def export_project(
    out: str,
    project: str,
    conn: Connection,
    document_root: str | None,
    select: str = "all",
    seed: int = 0,
    batch_size: int = DEFAULT_BATCH_SIZE,
    log=None,
    project_id: int | None = None,
    max_tasks_per_project: int = DEFAULT_MAX_TASKS,
) -> dict[str, Any]:
    """Export the selected samples of build output ``out``; returns a summary. Progress goes to
    ``log`` (default: the current ``sys.stderr``, looked up per call, not at import).

    A review larger than ``max_tasks_per_project`` goes into several projects, its parts
    (:mod:`mcie.annotation.parts`): ``project``, ``project-2``, ... Each sample is in one
    part; a re-run sends only the samples no part holds."""
    log = log if log is not None else sys.stderr
    if batch_size < 1:
        raise UsageError("--batch-size must be >= 1")
    if max_tasks_per_project < 1:
        raise UsageError("--max-tasks-per-project must be >= 1")
    if project_id is None and not 3 <= len(project or "") <= MAX_TITLE:
        raise UsageError("--project: Label Studio titles have 3 to 50 characters")
    document_root = document_root or os.environ.get(ENV_DOCUMENT_ROOT)
    if not conn.is_local:
        raise UsageError(
            f"Label Studio at {conn.url} is not on this machine: it could not read the images mcie writes "
            "under its local-files document root. Run the server here (`mcie ls serve`); images in cloud "
            "storage reachable by URL are not supported yet."
        )
    if not document_root:
        raise UsageError(
            f"set --document-root or {ENV_DOCUMENT_ROOT} to the server's local-files document root"
        )
    select_keys(ri.read_index(out), select, out, seed)  # usage errors before any request
    t0 = time.monotonic()
    ls = conn.client()
    if project_id is not None:  # an existing project, named by id: its title names the folder
        project = require_project(ls, conn, project, project_id).title
    root = os.path.abspath(document_root)
    lock_folder = os.path.join(root, project_folder(project))  # RunLock creates it
    # Both locks before anything is created or written: the build's (the same as a build's and
    # every `mcie ls` command's, so the index is read, changed and written by one run at a
    # time) and the review's (two exports at once would both create the project, or both
    # import every missing key). A refused run has changed nothing.
    with (
        RunLock(out, "ls export"),
        RunLock(lock_folder, f"ls export into project {project!r}"),
        http(conn) as h,
    ):
        rows = ri.read_index(out)
        keys = select_keys(rows, select, out, seed)
        parts = parts_mod.find_parts(ls, conn, _ensure_project(ls, conn, project, log, project_id))
        for p in parts[1:]:
            _ensure_project(ls, conn, p.title, log, p.id)  # a part's config, checked as the first's
        have: dict[str, tuple[str, int]] = {}
        counts = []
        for p in parts:
            held = existing_keys(h, conn, p.id)
            counts.append(len(held))
            for k, tid in held.items():
                have.setdefault(k, (p.title, tid))
        marked = sum(_mark_pending(rows[k], *have[k]) for k in keys if k in have)
        if marked:
            ri.write_index(out, rows)
        todo = [k for k in keys if k not in have]
        sender = PartSender(ls, conn, h, parts, counts, root, max_tasks_per_project, batch_size, log)
        try:
            _send(out, rows, todo, sender, log)
        except BaseException:
            sender.settle()
            raise
        finally:
            # what landed is marked even when a batch failed; a re-run marks the rest
            if sum(_mark_pending(rows[k], *sender.sent_to[k], sender.predicted[k]) for k in sender.sent_to):
                ri.write_index(out, rows)
        sender.set_model_version()
    elapsed = time.monotonic() - t0
    sent = len(sender.sent_to)
    return {
        "project": project,
        "project_id": parts[0].id,
        "projects": [{"title": p.title, "id": p.id, "tasks": c} for p, c in zip(parts, counts, strict=True)],
        "selected": len(keys),
        "already_in_project": len(keys) - len(todo),
        "exported": sent,
        "batches": sender.batches,
        "elapsed_s": round(elapsed, 3),
        "request_s": round(h.request_s, 3),
        "tasks_per_s": round(sent / elapsed, 1) if elapsed > 0 else None,
    }


def _send(out: str, rows: dict[str, dict[str, Any]], todo: list[str], sender: PartSender, log) -> None:
    """Read the samples to send shard by shard (only their members) and hand them to ``sender``."""
    by_shard: dict[str, list[str]] = collections.defaultdict(list)
    for k in todo:
        by_shard[rows[k]["shard"]].append(k)
    # a bar on a terminal, else plain lines: the first batch gives the estimate in all
    bar = Progress(len(todo), "ls export", "tasks", stream=log, estimate_after=1)

    def landed(sent: int) -> None:
        bar.update(sent - bar.done)

    sender.on_flush = landed
    for shard in sorted(by_shard):
        wanted = set(by_shard[shard])
        for key, members in read_tar(storage.join(out, check_shard_ref(shard, INDEX_FILE)), keys=wanted):
            meta = check_sample(key, members, shard)  # never send a broken sample to reviewers
            sender.add(key, meta, members)
    sender.close()
    bar.close()


def _check_served(conn: Connection, path: str, document_root: str) -> None:
    """Fetch one exported image through the server as a browser would: the annotators see
    nothing when the server's document root is not the one we wrote under."""
    import httpx

    with conn.errors("fetching an exported image back"):
        r = httpx.get(conn.url + path, headers={"Authorization": f"Token {conn.token}"}, timeout=30)
    if r.status_code != 200:
        raise UsageError(
            f"Label Studio at {conn.url} does not serve the images written under {document_root!r} "
            f"(HTTP {r.status_code} for {path}): start it with LABEL_STUDIO_LOCAL_FILES_SERVING_ENABLED=true "
            f"and LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT={document_root} (`mcie ls serve` does)"
        )


def _inside(folder: str, name: str) -> str:
    """``folder/name``, refusing a name that would leave ``folder`` (keys and member names are
    checked before; this is the last line of defence for the document root)."""
    path = os.path.realpath(os.path.join(folder, name))
    if os.path.dirname(path) != os.path.realpath(folder):
        raise ValueError(f"refusing to write {name!r} outside {folder!r}")
    return path


def _write_once(path: str, data: bytes) -> None:
    """Write ``data`` unless a file with the same bytes is there (compared in full, not by size:
    another image of the same size must not be kept); atomic, so a re-run never sees half a
    file."""
    if os.path.isfile(path) and os.path.getsize(path) == len(data):
        with open(path, "rb") as fh:
            if fh.read() == data:
                return
    storage.atomic_write(path, data)
