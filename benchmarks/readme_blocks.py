"""Run the README's command blocks as written, at a small size.

Every shell line of the fenced blocks of ``README.md`` (or of ``--pages``) runs in order in a
scratch folder, with the venv's ``mcie`` first on the PATH (as after ``. .venv/bin/activate``)
and the sizes cut down: ``--samples``/``--size`` to ``--samples N``, ``--sets`` to a few,
``--max-steps`` (and the ``checkpoint-<step>`` it names) to a couple of steps. Lines that need
what a plain machine lacks — a bucket, a Label Studio server and its reviewers, a Dask cluster,
GPUs, your own files, a server that stays up — are skipped, each with its reason. One line per
command: ok / FAIL, seconds, the command; a failure's output goes to ``SCRATCH/readme-blocks.log``.

    .venv/bin/python benchmarks/readme_blocks.py                      # README.md, every section
    .venv/bin/python benchmarks/readme_blocks.py --section "Build a set" --keep /tmp/rb

Exit 0 when every command that ran succeeded, 2 otherwise. ``tests/test_readme.py`` imports
the block extraction from here and runs the "Build a set" section in its ``slow`` tier.
"""

from __future__ import annotations

import argparse
import os
import re
import shlex
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FENCE = re.compile(r"^```(\w*)\s*$")
#: fenced blocks in these languages are shell; an unlabelled block is read for commands (the
#: diagrams hold none) but never run
SHELL = ("bash", "sh", "shell", "console")
#: how a line calls mcie: bare (the venv activated), through the venv's script, or as a module
CALL = re.compile(r"(?:^|\s)(?:\S*/)?(?:mcie|-m mcie\.cli)(?=\s|$)")

#: (pattern, why the line cannot run here); the first match wins
SKIPS = (
    (r"gs://|s3://", "needs a bucket"),
    (r"--dask-address", "needs a running Dask cluster"),
    (r"\bmcie ls\b|LABEL_STUDIO", "needs a Label Studio server"),
    (r"\bcalibrate\b|thresholds\.json", "needs reviewers' verdicts imported from Label Studio"),
    (r"^tensorboard\b", "starts a server that stays up"),
    (r"^make\b|^\. \.venv/bin/activate", "the Makefile's targets and the venv: what this script stands on"),
    (r"accelerate launch|--device cuda|docker\b", "needs GPUs or docker"),
    (r"out/reviewed", "needs a build reviewed in Label Studio"),
    (r"/path/to|photo\.png|src\.png|d\.json|subs\.json|/models/|/shared/|--images", "needs your own files"),
    (r"(?<![\w/])models(\.baked)?\.yaml", "needs your own models file"),
    (r"^python benchmarks/", "a benchmark script of its own"),
    (r"^export\b", "sets the environment of a skipped line"),
)


@dataclass(frozen=True)
class Line:
    """One shell line of a page: where it is, and its text (continuations joined)."""

    page: str
    section: str
    text: str


def code_lines(text: str) -> list[str]:
    """Shell lines of the fenced blocks of a page (not ``python`` / ``yaml`` / ``json``),
    backslash continuations joined, comments dropped."""
    return [ln.text for ln in page_lines(text, langs=("", *SHELL))]


def page_lines(text: str, page: str = "", langs: tuple[str, ...] = SHELL) -> list[Line]:
    """The lines of the fenced blocks in ``langs`` of a page, with the ``## `` section each
    stands in."""
    out, lang, buf, section = [], None, "", ""
    for raw in text.splitlines():
        m = FENCE.match(raw.strip())
        if m:
            lang = None if lang is not None else (m.group(1) or "")
            continue
        if lang is None:
            if raw.startswith("## "):
                section = raw[3:].strip()
            continue
        if lang not in langs:
            continue
        if raw.rstrip().endswith("\\"):
            buf += raw.rstrip()[:-1] + " "
            continue
        line, buf = buf + raw, ""
        line = re.sub(r"(^|\s)#.*$", "", line).strip()
        if line:
            out.append(Line(page, section, line))
    return out


def mcie_calls(line: str) -> list[list[str]]:
    """The argument lists of every ``mcie`` call in a shell line (after ``mcie``; pipes,
    ``&&`` and ``;`` end a call; ``[...]`` optional parts are unwrapped)."""
    calls = []
    for part in re.split(r"\|\||&&|;|\|", line):
        m = CALL.search(part)
        if not m:
            continue
        rest = part[m.end() :].replace("[", " ").replace("]", " ")
        try:
            tokens = shlex.split(rest)
        except ValueError:  # an unbalanced quote in prose-like text
            tokens = rest.split()
        calls.append(tokens)
    return calls


def skip_reason(line: str) -> str | None:
    """Why ``line`` cannot run on a plain machine, or None."""
    for pattern, why in SKIPS:
        if re.search(pattern, line):
            return why
    return None


def shrink(line: str, samples: int, sets: int, steps: int) -> str:
    """``line`` at a small size."""
    line = re.sub(r"--size (demo|mcie)\b", f"--samples {samples}", line)
    line = re.sub(r"--samples \d+", f"--samples {samples}", line)
    line = re.sub(r"--sets \d+", f"--sets {sets}", line)
    line = re.sub(r"--max-steps \d+", f"--max-steps {steps}", line)
    line = re.sub(r"checkpoint-\d+", f"checkpoint-{steps}", line)
    line = re.sub(r"(^|\s)/tmp/", r"\1tmp/", line)  # inside the scratch folder
    return re.sub(r"--workers (\d+)", lambda m: f"--workers {min(int(m.group(1)), 2)}", line)


@dataclass
class Outcome:
    line: Line
    command: str
    skipped: str | None = None
    rc: int | None = None
    seconds: float = 0.0


def run_lines(lines: list[Line], scratch: str, samples=40, sets=8, steps=2, timeout=900) -> list[Outcome]:
    """Run ``lines`` in order in ``scratch``; one :class:`Outcome` each."""
    env = dict(
        os.environ, HF_HUB_OFFLINE="1", PATH=f"{ROOT / '.venv' / 'bin'}{os.pathsep}{os.environ['PATH']}"
    )
    log = os.path.join(scratch, "readme-blocks.log")
    outcomes = []
    for ln in lines:
        why = skip_reason(ln.text)
        if why:
            outcomes.append(Outcome(ln, ln.text, skipped=why))
            print(f"skip ({why}): {ln.text}", flush=True)
            continue
        cmd = shrink(ln.text, samples, sets, steps)
        t0 = time.perf_counter()
        try:
            r = subprocess.run(
                ["bash", "-c", cmd], cwd=scratch, env=env, capture_output=True, text=True, timeout=timeout
            )
            rc, output = r.returncode, r.stdout + r.stderr
        except subprocess.TimeoutExpired as exc:
            rc, output = 124, f"timed out after {timeout} s: {exc}"
        out = Outcome(ln, cmd, rc=rc, seconds=time.perf_counter() - t0)
        outcomes.append(out)
        print(f"{'ok' if rc == 0 else f'FAIL rc={rc}'} {out.seconds:.1f}s: {cmd}", flush=True)
        if rc != 0:
            with open(log, "a") as fh:
                fh.write(f"$ {cmd}\n{output}\n")
    return outcomes


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--pages", nargs="+", default=["README.md"], help="pages to run (default README.md)")
    ap.add_argument("--section", action="append", default=[], help="only this ## section, repeatable")
    ap.add_argument("--samples", type=int, default=40, help="candidates per build (default 40)")
    ap.add_argument("--sets", type=int, default=8, help="benchmark sets (default 8)")
    ap.add_argument("--steps", type=int, default=2, help="training steps (default 2)")
    ap.add_argument("--keep", default=None, help="scratch folder to use and keep (default: a temporary one)")
    args = ap.parse_args(argv)
    lines = [ln for p in args.pages for ln in page_lines((ROOT / p).read_text(), p)]
    if args.section:
        lines = [ln for ln in lines if ln.section in args.section]
    scratch = args.keep or tempfile.mkdtemp(prefix="readme-blocks-")
    os.makedirs(scratch, exist_ok=True)
    print(f"load average at start: {os.getloadavg()[0]:.2f}; scratch {scratch}", flush=True)
    t0 = time.perf_counter()
    outcomes = run_lines(lines, scratch, args.samples, args.sets, args.steps)
    ran = [o for o in outcomes if o.skipped is None]
    failed = [o for o in ran if o.rc != 0]
    print(
        f"{len(ran)} ran, {len(failed)} failed, {len(outcomes) - len(ran)} skipped in "
        f"{time.perf_counter() - t0:.0f} s; load average at end: {os.getloadavg()[0]:.2f}"
    )
    return 2 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
