"""Building blocks of every ``mcie`` parser: help that shows defaults and examples, exit 1 on
bad usage, ``-v``, value checks, and deprecated spellings of renamed options.

The naming convention (README, "Command-line conventions"): a command's input is its first
positional argument (a build folder, a record table, a benchmark, a shard glob); what it
writes is ``--out``. Old spellings (``--in``, ``--bench``, ``--from``, ``--shards``, ...) still
work for one release through :func:`input_argument` / :func:`renamed_option`, with a one-line
note on stderr.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from mcie.exitcodes import ExitCode, UsageError

#: namespace prefixes: a value given under a deprecated spelling, and a required positional
_ALIAS = "_alias__"
_REQUIRED = "_required__"


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Descriptions and examples as written (line breaks kept); every option's default shown
    unless its help already says it (``default ...``) or it has none worth showing (None,
    False: a flag, a required option)."""

    def __init__(self, prog: str) -> None:
        super().__init__(prog, max_help_position=32, width=100)

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if "default" in text.lower() or action.required:
            return text
        if action.default is None or action.default is False or action.default in (argparse.SUPPRESS, []):
            return text
        if not action.option_strings and action.nargs not in (argparse.OPTIONAL, argparse.ZERO_OR_MORE):
            return text
        return f"{text} (default: %(default)s)"


class Parser(argparse.ArgumentParser):
    """``mcie``'s parsers: :class:`HelpFormatter`, ``-v/--verbose`` on every command, exit 1
    (not argparse's 2) on bad usage: 2 means the run failed (:mod:`mcie.exitcodes`)."""

    def __init__(self, *args: Any, **kw: Any) -> None:
        kw.setdefault("formatter_class", HelpFormatter)
        super().__init__(*args, **kw)
        self.add_argument(
            "-v",
            "--verbose",
            action="count",
            default=argparse.SUPPRESS,  # a subcommand's parser must not reset the top-level count
            help="show Apache Beam's log on the terminal (-vv: debug); by default it goes to "
            "OUT/logs/ when a run fails",
        )

    def error(self, message: str):
        self.print_usage(sys.stderr)
        print(f"{self.prog}: error: {message}", file=sys.stderr)
        sys.exit(ExitCode.USAGE)

    def parse_args(self, args=None, namespace=None):  # type: ignore[override]
        ns = super().parse_args(args, namespace)
        for name in [n for n in vars(ns) if n.startswith(_ALIAS)]:
            dest, value = name[len(_ALIAS) :], getattr(ns, name)
            delattr(ns, name)
            if value is None:
                continue
            current = getattr(ns, dest, None)
            if current is not None and current != value and getattr(ns, _REQUIRED + dest, None):
                self.error(f"{getattr(ns, _REQUIRED + dest)} given twice ({current!r} and {value!r})")
            setattr(ns, dest, value)
        for name in [n for n in vars(ns) if n.startswith(_REQUIRED)]:
            dest, metavar = name[len(_REQUIRED) :], getattr(ns, name)
            delattr(ns, name)
            if getattr(ns, dest, None) is None:
                self.error(f"the following arguments are required: {metavar}")
        ns.verbose = getattr(ns, "verbose", 0)
        return ns


def examples(*lines: str) -> str:
    """An ``examples:`` epilog, one command per line."""
    return "examples:\n" + "\n".join(f"  {line}" for line in lines)


class DeprecatedAlias(argparse.Action):
    """An old spelling of an option: stores its value and prints a one-line note."""

    def __init__(self, option_strings, dest, instead: str, **kw: Any) -> None:
        self.instead = instead
        super().__init__(option_strings, dest, **kw)

    def __call__(self, parser, namespace, values, option_string=None) -> None:
        if values is None:  # an optional positional that was not given
            return
        old = option_string or self.metavar or self.dest
        print(f"mcie: note: {old} is deprecated; {self.instead} (the old spelling goes in the next release)",
              file=sys.stderr)  # fmt: skip
        setattr(namespace, self.dest, values)


def input_argument(
    p: argparse.ArgumentParser,
    dest: str,
    metavar: str,
    help: str,
    aliases: tuple[str, ...] = (),
    required: bool = True,
) -> None:
    """The command's input as its first positional argument, with deprecated ``--option``
    spellings (``aliases``) that still work."""
    p.add_argument(dest, nargs="?", metavar=metavar, default=None, help=help)
    if aliases:
        p.add_argument(
            *aliases,
            dest=_ALIAS + dest,
            metavar=metavar,
            action=DeprecatedAlias,
            instead=f"give {metavar} as the first argument",
            default=None,
            help=f"deprecated spelling of {metavar}",
        )
    if required:
        p.set_defaults(**{_REQUIRED + dest: metavar})


def renamed_option(p: argparse.ArgumentParser, old: str, new: str, dest: str, **kw: Any) -> None:
    """``old`` as a deprecated spelling of the option ``new`` (stored in ``dest``)."""
    if "choices" not in kw:  # help shows `--png OUT`, not argparse's name for the hidden dest
        kw.setdefault("metavar", new.lstrip("-").replace("-", "_").upper())
    p.add_argument(
        old,
        dest=_ALIAS + dest,
        action=DeprecatedAlias,
        instead=f"use {new}",
        default=None,
        help=f"deprecated spelling of {new}",
        **kw,
    )


def check_min(args: argparse.Namespace, **lows: int) -> None:
    """Raise :class:`UsageError` (exit 1) unless each named option is at least its bound; an
    option not given (None) passes. ``--limit 0`` or ``-1`` must not quietly mean "all" or
    "all but one"."""
    for name, low in lows.items():
        value = getattr(args, name)
        if value is not None and value < low:
            raise UsageError(f"--{name.replace('_', '-')} must be >= {low}, got {value}")
