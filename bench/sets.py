"""Benchmark sets: ``mcie bench build``.

A benchmark is a folder with ``bench.parquet`` (one row per set, sorted by ``set_id``) and
``bench.json`` (how it was made). A synthetic set keeps the exact expected target and, per
sub-instruction, its region and expected outcome; it also keeps the scene graph and plan so the
``corrupt`` editor can re-run the synthetic failure injector with known outcomes.

Sets from a validated build (``--from OUT``) form a held-out split by source-image hash: every
sample of a held-out photo goes to the benchmark, none to training. Their ``kind`` is where the
sample came from: ``synthetic`` for a synthetic build's (scored by the exact checker against
the build's target: no scene graph travels in a shard), ``real`` for real images (the VLM judge).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from mcie import storage
from mcie.exitcodes import UsageError
from mcie.images import PNG_LEVEL_FAST, encode_png
from mcie.layout import INDEX_FILE, SHARDS_DIR
from mcie.progress import track
from mcie.shards import image_ext, read_tar, shard_paths
from mcie.tables import read_table, write_table
from mcie.transforms.synthetic.generator import GENERATOR_NAME, SyntheticConfig, SyntheticSource
from mcie.transforms.synthetic.ladder import ladder_config
from mcie.transforms.synthetic.planner import EDIT_TYPES, PlannedEdit
from mcie.transforms.synthetic.scene import Scene, SceneObject
from mcie.validate import check_sample

BENCH_SCHEMA = pa.schema(
    [
        ("set_id", pa.int32()),
        ("key", pa.string()),
        ("kind", pa.string()),  # "synthetic" | "real"
        ("source_hash", pa.string()),
        ("num_sub_edits", pa.int32()),
        ("edit_types", pa.list_(pa.string())),
        ("instruction", pa.string()),
        ("sub_instructions", pa.list_(pa.string())),
        ("src_png", pa.binary()),
        ("expected_png", pa.binary()),
        ("regions_png", pa.list_(pa.binary())),
        ("scene_json", pa.string()),  # synthetic only
        ("plan_json", pa.string()),  # synthetic only
    ]
)

#: seeds of benchmark scenes live in their own namespace, away from any build seed
BENCH_SEED_OFFSET = 1_000_003


def scene_to_json(scene: Scene) -> str:
    return json.dumps(dataclasses.asdict(scene), sort_keys=True)


def scene_from_json(text: str) -> Scene:
    d = json.loads(text)
    objs = [SceneObject(**{**o, "rgb": tuple(o["rgb"]) if o["rgb"] else None}) for o in d.pop("objects")]
    return Scene(**d, objects=objs)


def plan_from_json(text: str) -> list[PlannedEdit]:
    return [PlannedEdit(**e) for e in json.loads(text)]


def synthetic_config(
    image_size: int = 256,
    task: str | None = None,
    edit_types: list[str] | None = None,
    min_edits: int | None = None,
    max_edits: int | None = None,
    object_scale: float | None = None,
) -> SyntheticConfig:
    """The generator settings of a synthetic benchmark: a task-ladder rung (``task``, see
    :mod:`mcie.transforms.synthetic.ladder`; default: the full demo mix) with optional
    overrides of its edit types, sub-edits per sample and object size. Failures are off."""
    try:
        return ladder_config(
            task,
            image_size,
            edit_types=edit_types,
            min_edits=min_edits,
            max_edits=max_edits,
            object_scale=object_scale,
            equal_weights=True,
        )
    except ValueError as exc:
        raise UsageError(str(exc)) from exc


def build_synthetic(
    out: str, sets: int = 400, seed: int = 0, image_size: int = 256, config: SyntheticConfig | None = None
) -> dict[str, Any]:
    """``sets`` synthetic sets stratified by number of sub-instructions (equal shares of the
    config's range) and by edit type (set i must contain the config's edit type i mod n);
    expected targets are exact. ``config``: the generator settings (:func:`synthetic_config`;
    default the full demo mix at ``image_size``)."""
    if sets < 1:
        raise UsageError(f"--sets must be >= 1, got {sets}")
    cfg = config or synthetic_config(image_size)
    os.makedirs(out, exist_ok=True)
    if os.path.exists(os.path.join(out, "bench.parquet")):
        raise UsageError(f"{out!r} already holds a benchmark; pick a new directory")
    ks = list(range(cfg.plan.min_edits, cfg.plan.max_edits + 1))
    types = [t for t in EDIT_TYPES if t in {t for t, w in cfg.plan.edit_weights if w > 0}]
    sources = {
        k: SyntheticSource(
            dataclasses.replace(cfg, plan=dataclasses.replace(cfg.plan, min_edits=k, max_edits=k))
        )
        for k in ks
    }
    rows = []
    for set_id in track(range(sets), "bench build", "sets"):
        k = ks[set_id % len(ks)]
        want = types[(set_id // len(ks)) % len(types)]
        src = sources[k]
        for attempt in range(200):  # rejection sampling, deterministic in (seed, set_id, attempt)
            index = set_id * 1000 + attempt
            try:
                scene, edits, sample, truth = src.generate_with_scene(BENCH_SEED_OFFSET + seed, index)
            except ValueError:  # no plan fits this draw's scenes: the next attempt draws anew
                continue
            if want in {e.edit_type for e in edits}:
                break
        rows.append(
            {
                "set_id": set_id,
                "key": sample.key,
                "kind": "synthetic",
                "source_hash": sample.source_hash,
                "num_sub_edits": len(edits),
                "edit_types": [e.edit_type for e in edits],
                "instruction": sample.instruction,
                "sub_instructions": [e.instruction for e in edits],
                "src_png": encode_png(sample.src, PNG_LEVEL_FAST),
                "expected_png": encode_png(sample.tgt, PNG_LEVEL_FAST),
                "regions_png": truth["masks_png"],
                "scene_json": scene_to_json(scene),
                "plan_json": json.dumps([dataclasses.asdict(e) for e in edits], sort_keys=True),
            }
        )
    manifest = {
        "kind": "synthetic",
        "sets": sets,
        "seed": seed,
        "image_size": cfg.image_size,
        "generator": {
            "edit_types": types,
            "min_edits": cfg.plan.min_edits,
            "max_edits": cfg.plan.max_edits,
            "min_objects": cfg.min_objects,
            "max_objects": cfg.max_objects,
            "object_scale": cfg.object_scale,
            "pattern_rate": cfg.pattern_rate,
            "overlap_rate": cfg.overlap_rate,
        },
    }
    return _write(out, rows, manifest)


def _holdout(source_hash: str, fraction: float) -> bool:
    """Deterministic split by source-image hash: the same photo always lands on the same side."""
    h = int(hashlib.blake2b(source_hash.encode(), digest_size=8).hexdigest(), 16)
    return (h % 10_000) / 10_000 < fraction


def build_from_output(out: str, build_dir: str, fraction: float = 0.1) -> dict[str, Any]:
    """Held-out sets from the accepted samples of a (validated) build: every sample whose
    source-image hash falls in the held-out ``fraction``; the reference target and masks are
    the validated ones."""
    if not 0 < fraction < 1:
        raise UsageError(f"--holdout must be in (0, 1), got {fraction}")
    paths = shard_paths(build_dir)  # a local folder, gs:// or s3:// (mcie.storage)
    if not paths:
        raise UsageError(f"{build_dir!r} has no {SHARDS_DIR}/*.tar")
    os.makedirs(out, exist_ok=True)
    rows = []
    for path in track(paths, "bench build", "shards"):
        for key, m in read_tar(path):
            meta = check_sample(key, m, path)  # wrong-size or non-PNG masks never reach a benchmark
            if not _holdout(meta["source_hash"], fraction):
                continue
            ext = image_ext(m)
            k = len(meta["sub_edits"])
            rows.append(
                {
                    "set_id": 0,
                    "key": key,
                    "kind": sample_kind(meta),
                    "source_hash": meta["source_hash"],
                    "num_sub_edits": k,
                    "edit_types": [s["edit_type"] for s in meta["sub_edits"]],
                    "instruction": meta["instruction"],
                    "sub_instructions": [s["instruction"] for s in meta["sub_edits"]],
                    "src_png": m[f"src.{ext}"],
                    "expected_png": m[f"tgt.{ext}"],
                    "regions_png": [m[f"mask{i}.png"] for i in range(k)],
                    "scene_json": None,
                    "plan_json": None,
                }
            )
    rows.sort(key=lambda r: r["key"])
    for i, r in enumerate(rows):
        r["set_id"] = i
    where = build_dir if storage.is_remote(build_dir) else os.path.abspath(build_dir)
    kinds = sorted({r["kind"] for r in rows})
    kind = kinds[0] if len(kinds) == 1 else "mixed"
    return _write(out, rows, {"kind": kind, "from": where, "holdout": fraction})


def sample_kind(meta: dict[str, Any]) -> str:
    """``synthetic`` for a sample the synthetic generator made (its provenance says so), else
    ``real``. A synthetic hold-out keeps no scene graph, so it is scored by the exact checker
    against the build's accepted target; a real one needs the VLM judge."""
    generator = (meta.get("provenance") or {}).get("generator")
    return "synthetic" if generator == GENERATOR_NAME else "real"


def training_split(build_dir: str, fraction: float) -> set[str]:
    """Source hashes a trainer must leave out to keep the held-out split clean."""
    hashes = read_table(storage.join(build_dir, INDEX_FILE), columns=["source_hash"]).column(0).to_pylist()
    return {h for h in hashes if h and _holdout(h, fraction)}


def bench_source_hashes(bench_dir: str) -> set[str]:
    """The source-image hashes of a benchmark's sets (what training data must leave out)."""
    path = os.path.join(bench_dir, "bench.parquet")
    if not os.path.exists(path):
        raise UsageError(f"{bench_dir!r} is not a benchmark (no bench.parquet); run `mcie bench build`")
    return set(pq.read_table(path, columns=["source_hash"]).column(0).to_pylist())


def check_no_overlap(bench_dir: str, train_globs: list[str]) -> None:
    """Refuse a benchmark whose source images appear in the given training shards (globs,
    local or storage URLs)."""
    bench_hashes = bench_source_hashes(bench_dir)
    clash = set()
    for pattern in train_globs:
        paths = storage.glob(pattern)  # local or gs:// / s3:// shards, sorted
        if not paths:
            raise UsageError(f"--train-shards {pattern!r} matches no file")
        for path in paths:
            for _, m in read_tar(path):
                h = json.loads(m["json"]).get("source_hash")
                if h in bench_hashes:
                    clash.add(h)
    if clash:
        raise UsageError(
            f"{len(clash)} benchmark source image(s) also appear in the training shards "
            f"(e.g. {sorted(clash)[0]}); the benchmark must be held out by source image"
        )


def _write(out: str, rows: list[dict[str, Any]], manifest: dict[str, Any]) -> dict[str, Any]:
    table = pa.Table.from_pylist(rows, schema=BENCH_SCHEMA)
    write_table(os.path.join(out, "bench.parquet"), table)  # atomic, zstd
    counts = {
        "sets": len(rows),
        "by_num_sub_edits": {str(k): sum(r["num_sub_edits"] == k for r in rows) for k in range(1, 6)},
        "by_edit_type": {t: sum(t in r["edit_types"] for r in rows) for t in EDIT_TYPES},
    }
    manifest = {**manifest, **counts}
    storage.write_json(os.path.join(out, "bench.json"), manifest)
    return manifest


def load_bench(bench_dir: str) -> list[dict[str, Any]]:
    """The rows of a benchmark, sorted by ``set_id``."""
    path = os.path.join(bench_dir, "bench.parquet")
    if not os.path.exists(path):
        raise UsageError(f"{bench_dir!r} is not a benchmark (no bench.parquet); run `mcie bench build`")
    return pq.read_table(path, schema=BENCH_SCHEMA).to_pylist()


__all__ = [
    "bench_source_hashes",
    "build_synthetic",
    "build_from_output",
    "check_no_overlap",
    "load_bench",
    "np",
]
