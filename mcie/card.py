"""The dataset card: ``README.md`` in an output directory, from the run's summary."""

from __future__ import annotations

import json
from typing import Any

import pyarrow.compute as pc

from mcie import storage
from mcie.hub import CONFIGS, MASK_SLOTS, front_matter, loading_snippets, read_shardlist, shard_table
from mcie.layout import BuildLayout
from mcie.reasons import DESCRIPTIONS, Reason
from mcie.records import SCHEMA_VERSION
from mcie.tables import read_table

CARD = """{front_matter}# MCIE dataset (built by mcie)

Complex-instruction image edits: each sample is a source image, an edited target image, one
complex instruction made of 2-5 sub-instructions, and a semantic-spatial mask per
sub-instruction. Built by `mcie build` (generator: {generator}, seed {seed}).

## Counts

| status | candidates |
|---|---|
{status_rows}

Total candidates: {candidates}. Accepted samples are in `shards/`, rejected ones (with their
reason) in `rejected/`, failed ones only in `index.parquet` (with the error text).

| outcome:reason | count | meaning |
|---|---|---|
{reason_rows}

## Language

{language}

## Files

- `shards/mcie-NNNNNN.tar` — accepted samples, WebDataset format (uncompressed tar, members
  sorted by key, `mtime=0`); `shards.json` is their wids descriptor (with each shard's
  size and SHA-256, also listed under Shards below).
- `rejected/mcie-NNNNNN.tar` — rejected samples, same layout; `rejected.json` for wids.
- `index.parquet` — one row per candidate, sorted by key: `key, shard, status, reason, error,
  instruction, num_sub_edits, edit_types, sub_instructions, sub_executed, sub_compliance,
  compliance, bg_ssim, bg_psnr, bg_l1, bg_changed, source_id, source_hash, unit, verdict_json,
  schema_version`.
- `truth.parquet` — synthetic sets only: what the generator really did (injected failures,
  per-sub-edit executed, intended masks). No pipeline stage reads it; `mcie audit` and
  CIE-Bench join it on `key`.
- `stats/mcie-NNNNNN.json` — per-unit counts; each is also that unit's done-marker for
  `--resume`. `parts/` holds the per-unit index and truth parts merged into the files above.
- `run.json` — the options that decided these bytes.

## Sample members

For key `K` (a content hash, hex, never containing a dot):

- `K.src.{ext}`, `K.tgt.{ext}` — source and target, same size, RGB.
- `K.mask{{k}}.png` for k = 0..K-1 — 8-bit, 0 or 255, image size, in the order of
  `sub_edits` in the JSON.
- `K.json` — schema version {schema_version}: `instruction`, `sub_edits` (each with
  `edit_type, instruction, target_phrase, label, params, ground_box, box, scores, executed`),
  `scores` (`compliance, bg_ssim, bg_psnr, bg_l1, bg_changed`), `status`, `reason`,
  `source_id`, `source_hash`, `width`, `height`, `provenance`, `verdict` (human, when reviewed).

Boxes are `[x0, y0, x1, y1]` in pixels, `x1`/`y1` exclusive.

## Mask semantics

A sub-edit's mask is the region it may change: `add` → its footprint in the target; `remove` →
its footprint in the source; `move`, `resize`, `replace`, `recolour`, `pattern` → the union of
its source and target footprints. The background is everything outside the union of all
sub-edit masks. Masks are annotated from evidence (source/target difference inside the
planner's box, and the grounder's footprint on the source), never copied from the generator.

## Scores (choices are ours; the MCIE paper's definitions are not public)

- `compliance`: share of sub-instructions the judge found executed (pixel judge: region checks).
- `bg_ssim`: SSIM of luma, 7x7 uniform window, over the background eroded by 3 px.
- `bg_psnr`: PSNR over RGB in the background, capped at 100 dB.
- `bg_l1`: mean absolute RGB difference in the background, 0..1.
- `bg_changed`: share of background pixels where a channel moved by more than 16 levels.

Filter thresholds of this build: `{thresholds}`.
{filter_measured}
## Loading

The YAML front matter above declares the configs (`default`: accepted shards, `rejected`: the
rejected ones) with their files and the features, so Hugging Face `datasets` loads this folder
as it is: every mask slot is typed as an 8-bit single-channel image and the slots a sample does
not use come back `None`. Snippets below name this build's real shards; run them in this folder.

{snippets}

## Shards

{shard_table}
"""


def _most_sub_edits(out: str) -> int:
    """The most sub-edits of any candidate in the build's index (0 without an index)."""
    path = BuildLayout(out).index
    if not storage.exists(path):
        return 0
    column = read_table(path, columns=["num_sub_edits"]).column("num_sub_edits")
    return int(pc.max(column).as_py() or 0)


def filter_measured(out: str) -> str:
    """The card's paragraph on the filter against the synthetic truth (empty without one):
    precision, recall, and recall by failure type, magnitude and strength (detection curves,
    :mod:`mcie.audit`)."""
    from mcie.audit import curve_line, truth_summary

    text = ""
    t = truth_summary(out)
    if t is not None:
        text += (
            "\nThe filter against the injected failures (`truth.parquet`; a positive is a candidate"
            f" with a failure): precision {t['filter_precision']}, recall {t['filter_recall']}."
            f" Recall by failure type and magnitude: {curve_line(t)}.\n"
        )
    path = storage.join(out, CALIBRATION_FILE)
    if storage.exists(path):
        c = storage.read_json(path)
        s, at = c["samples"], c["samples"]["at_target"]
        text += (
            f"\nThe judge against the reviewers (`mcie calibrate`, {s['n']} reviewed samples, bootstrap"
            f" 95% intervals): accuracy {s['accuracy']['value']} {s['accuracy']['ci95']}, precision"
            f" {s['precision']['value']} {s['precision']['ci95']}, recall {s['recall']['value']}"
            f" {s['recall']['ci95']}, Cohen's kappa {s['kappa']['value']} {s['kappa']['ci95']};"
            f" the sub-instruction score threshold for precision {c['target_precision']} is"
            f" {at['threshold']} (recall {at['recall']}).\n"
        )
    return f"{FILTER_BEGIN}{text}{FILTER_END}"


#: ``mcie calibrate``'s figures inside a build (:mod:`mcie.calibrate` writes it)
CALIBRATION_FILE = "calibration.json"
#: the card's filter paragraph lies between these, so ``mcie calibrate`` can renew it in place
FILTER_BEGIN, FILTER_END = "<!-- mcie:filter -->", "<!-- /mcie:filter -->\n"


def refresh_filter_measured(out: str) -> bool:
    """Renew the filter paragraph of ``out/README.md`` (after ``mcie calibrate``); False when
    the card is missing or has no such paragraph (a card written before it existed)."""
    path = storage.join(out, "README.md")
    if not storage.exists(path):
        return False
    card = storage.read_bytes(path).decode("utf-8")
    start, end = card.find(FILTER_BEGIN), card.find(FILTER_END)
    if start < 0 or end < start:
        return False
    storage.atomic_write(path, card[:start] + filter_measured(out) + card[end + len(FILTER_END) :])
    return True


def write_card(out: str, summary: dict[str, Any], meta: dict[str, Any]) -> None:
    """Write ``out/README.md`` (deterministic: no times, no host names)."""
    status_rows = "\n".join(f"| {k} | {v} |" for k, v in summary["by_status"].items())
    reason_rows = []
    for k, v in summary["by_reason"].items():
        code = k.split(":", 1)[1]
        try:
            desc = DESCRIPTIONS[Reason(code)]
        except ValueError:
            desc = ""
        reason_rows.append(f"| {k} | {v} | {desc} |")
    lang = summary.get("language") or {}
    language = (
        f"{lang.get('instructions', 0)} accepted instructions "
        f"({lang.get('distinct_instructions', 0)} distinct), "
        f"{lang.get('tokens', 0)} word tokens of {lang.get('types', 0)} types: type/token ratio "
        f"{lang.get('type_token_ratio')}, {lang.get('mean_words')} words per instruction."
    )
    if meta.get("templates"):
        language += (
            f" The synthetic grammar has {meta['templates']} sub-instruction templates and "
            f"{meta.get('connectives', '?')} ways to join sub-instructions; referring expressions name"
            " only what singles an object out (shape, colour, pattern, size, a relation, a position)."
        )
    ext = "png" if meta.get("lossless") else "jpg"
    shardlists = {name: read_shardlist(out, desc) for name, desc in CONFIGS}
    slots = max(MASK_SLOTS, _most_sub_edits(out))
    text = CARD.format(
        front_matter=front_matter(shardlists, ext, slots),
        snippets=loading_snippets(shardlists["default"], ext, slots),
        shard_table=shard_table(shardlists),
        language=language,
        generator=meta.get("generator", "?"),
        seed=meta.get("seed", "?"),
        status_rows=status_rows or "| (none) | 0 |",
        candidates=summary["candidates"],
        reason_rows="\n".join(reason_rows) or "| (none) | 0 | |",
        ext=ext,
        schema_version=SCHEMA_VERSION,
        thresholds=json.dumps(meta.get("thresholds", {}), sort_keys=True),
        filter_measured=filter_measured(out),
    )
    storage.atomic_write(BuildLayout(out).card, text)
