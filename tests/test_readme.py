"""The README and the pages under ``docs/`` stay true to the code: the README is short, every
relative link leads to a file, and every ``mcie`` command they show names a real command with
flags its parser has, in their current (not deprecated) spelling."""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import io
import re
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from mcie.cli import build_parser
from mcie.cliargs import DeprecatedAlias

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
DOCS = sorted((ROOT / "docs").glob("*.md"))
#: the pages a user reads: the README, docs/, and the READMEs of the packages they link to
PAGES = [README, *DOCS, ROOT / "model" / "README.md", ROOT / "annotation" / "README.md"]
MAX_README_LINES = 300

LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
INLINE = re.compile(r"`(mcie [^`]+)`")


def _load_blocks():
    """``benchmarks/readme_blocks.py``, the one home of the pages' block extraction."""
    spec = importlib.util.spec_from_file_location("readme_blocks", ROOT / "benchmarks" / "readme_blocks.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


blocks = _load_blocks()
code_lines, mcie_calls = blocks.code_lines, blocks.mcie_calls


def _rel(page: Path) -> str:
    return str(page.relative_to(ROOT))


def _subparsers(p: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for a in p._actions:
        if isinstance(a, argparse._SubParsersAction):
            return dict(a.choices)
    return {}


def _sub_help(p: argparse.ArgumentParser, name: str) -> str:
    for a in p._actions:
        if isinstance(a, argparse._SubParsersAction):
            for c in a._choices_actions:
                if c.dest == name:
                    return c.help or ""
    return ""


def check_call(tokens: list[str], root: argparse.ArgumentParser, deprecated: bool = True) -> list[str]:
    """What is wrong with ``mcie`` + ``tokens``: an unknown command or flag, and (with
    ``deprecated``) a deprecated one. Upper-case words (``COMMAND``, ``OUT``) are placeholders."""
    parser, prog, problems = root, "mcie", []
    rest = list(tokens)
    while _subparsers(parser):
        words = [t for t in rest if not t.startswith("-")]
        if not words or words[0].isupper() or words[0] in ("...", "…"):
            return problems  # `mcie COMMAND --help`, `mcie ls ...`: a placeholder, nothing to check
        name = words[0]
        subs = _subparsers(parser)
        if name not in subs:
            return problems + [f"{prog} {name}: no such command"]
        if deprecated and _sub_help(parser, name).lower().startswith("deprecated"):
            problems.append(f"{prog} {name}: deprecated command")
        rest = rest[rest.index(name) + 1 :]
        parser, prog = subs[name], f"{prog} {name}"
    if deprecated:
        olds = _deprecated_positionals(tokens, root)
        problems += [f"{prog}: the positional {old} is a deprecated spelling" for old in olds]
    known = parser._option_string_actions
    for t in rest:
        if not t.startswith("--") or t == "--":
            continue
        flag = t.split("=", 1)[0]
        if flag not in known:
            problems.append(f"{prog}: no flag {flag}")
        elif deprecated and _is_deprecated(known[flag]):
            problems.append(f"{prog}: {flag} is a deprecated spelling")
    return problems


def _is_deprecated(action: argparse.Action) -> bool:
    return isinstance(action, DeprecatedAlias) or (action.help or "").startswith("deprecated")


def _deprecated_positionals(tokens: list[str], root: argparse.ArgumentParser) -> list[str]:
    """Positional arguments given in a deprecated place (``models tiny DIR``): the parser's own
    deprecation note says so (a placeholder value that does not parse ends the parse early)."""
    err = io.StringIO()
    quiet = contextlib.redirect_stdout(io.StringIO())
    with quiet, contextlib.redirect_stderr(err), contextlib.suppress(SystemExit):
        root.parse_known_args(tokens)
    notes = re.findall(r"mcie: note: (\S+) is deprecated", err.getvalue())
    return [old for old in notes if not old.startswith("-")]


@pytest.fixture(scope="module")
def parser() -> argparse.ArgumentParser:
    return build_parser()


def test_readme_is_short_and_links_the_docs():
    text = README.read_text()
    assert len(text.splitlines()) <= MAX_README_LINES
    linked = {Path(m).name for m in LINK.findall(text)}
    assert {p.name for p in DOCS} <= linked, "every docs/ page is linked from the README"
    assert len(DOCS) >= 5


def test_development_section_names_the_test_tiers():
    dev = README.read_text().split("## Development", 1)[1]
    assert "make test" in dev and "make test-fast" in dev


@pytest.mark.parametrize("page", PAGES, ids=_rel)
def test_relative_links_point_at_files(page):
    broken = []
    for target in LINK.findall(page.read_text()):
        if re.match(r"^[a-z]+:", target) or target.startswith("#"):
            continue  # a URL or an anchor on the same page
        path = (page.parent / target.split("#", 1)[0]).resolve()
        if not path.exists():
            broken.append(target)
    assert broken == []


@pytest.mark.parametrize("page", PAGES, ids=_rel)
def test_no_issue_numbers_in_user_docs(page):
    assert re.findall(r"\bissues? #?\d+", page.read_text(), flags=re.IGNORECASE) == []


@pytest.mark.parametrize("page", PAGES, ids=_rel)
def test_every_mcie_command_and_flag_exists(page, parser):
    text = page.read_text()
    blocks = [c for line in code_lines(text) for c in mcie_calls(line)]
    # prose may name an old spelling to say it is old: inline spans are checked for existence
    spans = [mcie_calls(span)[0] for span in INLINE.findall(text) if mcie_calls(span)]
    problems = {p for c in blocks for p in check_call(c, parser)}
    problems |= {p for c in spans for p in check_call(c, parser, deprecated=False)}
    problems = sorted(problems)
    assert problems == [], f"{_rel(page)}: {problems}"


def test_the_pages_show_commands():
    """The command check above reads real blocks (an empty extraction would pass it)."""
    blocks = {_rel(p): [c for ln in code_lines(p.read_text()) for c in mcie_calls(ln)] for p in PAGES}
    assert len(blocks["README.md"]) >= 20
    assert sum(len(c) for c in blocks.values()) >= 60
    commands = {c[0] for cs in blocks.values() for c in cs if c}
    assert {"build", "audit", "train", "edit", "bench", "ls", "calibrate"} <= commands


def test_the_checker_finds_what_is_wrong(parser):
    block = "\n".join(
        [
            "```bash",
            "mcie build --out x --no-such-flag 3 \\",
            "    --samples 10   # a comment --also-not-a-flag",
            ".venv/bin/mcie bench run bench/ --bench b --editor oracle --out r",
            "mcie bench nosuch --out y",
            "mcie bench train-set --out t",
            "mcie models tiny out/tiny",
            "accelerate launch --multi_gpu -m mcie.cli train 's/*.tar' --out r --max-steps 5",
            "mcie COMMAND --help | head",
            "```",
            "```python",
            "mcie build --python-is-not-checked",
            "```",
        ]
    )
    lines = code_lines(block)
    assert lines[0] == "mcie build --out x --no-such-flag 3      --samples 10"
    problems = [p for ln in lines for c in mcie_calls(ln) for p in check_call(c, parser)]
    assert problems == [
        "mcie build: no flag --no-such-flag",
        "mcie bench run: --bench is a deprecated spelling",
        "mcie bench nosuch: no such command",
        "mcie bench train-set: deprecated command",
        "mcie models tiny: the positional DIR is a deprecated spelling",
    ]


@pytest.mark.slow
def test_the_build_section_runs_as_written(tmp_path):
    """The README's "Build a set" commands, run as written at 40 candidates: every one exits 0,
    and the stage commands give the shards of `mcie build` (as the README says)."""
    lines = [ln for ln in blocks.page_lines(README.read_text(), "README.md") if ln.section == "Build a set"]
    outcomes = blocks.run_lines(lines, str(tmp_path), samples=40)
    ran = [o.command.split()[:2] for o in outcomes if o.skipped is None]
    assert [o.rc for o in outcomes] == [0] * len(outcomes)
    assert ran == [["mcie", c] for c in ("build", "audit", "report", "preview", "reasons")] + [
        ["mcie", c] for c in ("generate", "annotate", "score", "shard")
    ]
    assert pq.read_table(tmp_path / "out/set/index.parquet").num_rows == 40
    assert (tmp_path / "out/set/report.html").stat().st_size > 10_000
    assert (tmp_path / "out/set/preview.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    built, staged = tmp_path / "out/set/shards", tmp_path / "out/set2/shards"
    tars = sorted(p.name for p in built.glob("*.tar"))
    assert tars and tars == sorted(p.name for p in staged.glob("*.tar"))
    assert [n for n in tars if (built / n).read_bytes() != (staged / n).read_bytes()] == []
