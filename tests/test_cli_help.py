"""`mcie --help` teaches: every command and subcommand has a description, at least one example
and shows its defaults; `mcie --version` comes from the package metadata (issue 15 part 4)."""

from __future__ import annotations

import argparse
import importlib.metadata

import pytest

from mcie.cli import build_parser, main
from mcie.cliargs import HelpFormatter


def _parsers() -> list[tuple[str, argparse.ArgumentParser]]:
    """(prog, parser) for ``mcie`` and every command and subcommand below it."""
    out, todo = [], [build_parser()]
    while todo:
        p = todo.pop()
        out.append((p.prog, p))
        for a in p._actions:
            if isinstance(a, argparse._SubParsersAction):
                todo.extend(a.choices.values())
    return sorted(out, key=lambda t: t[0])


PARSERS = _parsers()


def test_every_command_is_walked():
    progs = {prog for prog, _ in PARSERS}
    assert {"mcie", "mcie build", "mcie bench run", "mcie ls shard", "mcie models tiny", "mcie edit"} <= progs
    assert len(progs) >= 23  # mcie, its 13 commands, bench's 4, ls's 4 and models' 1 subcommands


@pytest.mark.parametrize("prog,parser", PARSERS, ids=[p for p, _ in PARSERS])
def test_help_has_description_and_example(prog, parser):
    text = parser.format_help()
    assert parser.description and len(parser.description) > 30, prog
    assert parser.description.split("\n")[0][:40] in text
    assert "examples:\n  mcie " in text, prog
    # every example runs the command it documents (or, for a group, one of its subcommands)
    examples = [ln.strip() for ln in parser.epilog.splitlines()[1:] if ln.strip().startswith("mcie")]
    assert any(e == prog or e.startswith(prog + " ") for e in examples), (prog, examples)


@pytest.mark.parametrize("prog,parser", PARSERS, ids=[p for p, _ in PARSERS])
def test_help_shows_every_default(prog, parser):
    fmt = HelpFormatter(prog)
    missing = []
    for a in parser._actions:
        if a.help == argparse.SUPPRESS or a.required or not a.option_strings:
            continue
        if isinstance(a, (argparse._HelpAction, argparse._VersionAction, argparse._CountAction)):
            continue
        if isinstance(a, (argparse._StoreTrueAction, argparse._StoreFalseAction)):
            continue  # a flag: off unless given
        if a.help.startswith("deprecated spelling"):
            continue
        shown = fmt._get_help_string(a) % {"default": a.default, "prog": prog}
        if "default" not in shown.lower() and "required" not in shown:
            missing.append(a.option_strings[0])
        elif a.default not in (None, [], ()) and "%(default)" in fmt._get_help_string(a):
            assert str(a.default) in shown
    assert missing == [], f"{prog}: options without a default in their help: {missing}"


def test_train_preset_and_bench_defaults_are_shown():
    helps = dict(PARSERS)
    train = helps["mcie train"].format_help()
    assert "(default: tiny)" in " ".join(train.split())
    run = " ".join(helps["mcie bench run"].format_help().split())
    build = " ".join(helps["mcie bench build"].format_help().split())
    assert "--limit LIMIT only the first N sets (default: all)" in run
    assert "--seed SEED seed for stochastic editors (default: 0)" in run
    assert "(render size), 32-1024 (default: 256)" in build
    assert "(default: 0.1)" in build


def test_version_is_the_package_metadata(capsys):
    with pytest.raises(SystemExit) as e:
        main(["--version"])
    assert e.value.code == 0
    assert capsys.readouterr().out.strip() == f"mcie {importlib.metadata.version('mcie')}"


@pytest.mark.parametrize("prog,parser", PARSERS, ids=[p for p, _ in PARSERS])
def test_help_shows_no_internal_names(prog, parser):
    """A deprecated spelling shows its new option's metavar (``--png OUT``), never the hidden
    destination argparse would derive (``--png _ALIAS__PNG``)."""
    text = parser.format_help()
    assert "_ALIAS" not in text.upper() and "_REQUIRED" not in text.upper(), prog


def test_bench_run_help_names_the_pixel_judge_and_its_progress():
    run = " ".join(dict(PARSERS)["mcie bench run"].format_help().split())
    assert "synthetic sets are checked by the build's pixel judge" in run
    assert "the exact checker reported beside it as ic_exact" in run
    assert "into a pipe or log, plain lines with an ETA" in run
    assert "none when not a terminal" not in run


def test_edit_help_says_decomposition_boxes_are_pixels():
    edit = " ".join(dict(PARSERS)["mcie edit"].format_help().split())
    assert "--decomposition FILE" in edit and "boxes in pixels of the input image (not the 0-1000" in edit
