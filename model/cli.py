"""``mcie train`` and ``mcie edit``: the MCIE-E1 commands (registered by :mod:`mcie.cli`).

Each command registers its runner with ``set_defaults(run=...)`` and builds one typed options
object from the parsed arguments: :class:`~mcie.model.train_config.TrainConfig`
(:mod:`mcie.model.train_cli`, whose parser is generated from the config's fields) and
:class:`~mcie.model.edit_cli.EditOptions` (:mod:`mcie.model.edit_cli`).
"""

from __future__ import annotations

import argparse

from mcie.model import edit_cli, train_cli

COMMANDS = ("train", "edit")


def add_parsers(sub) -> None:
    """Add the ``train`` and ``edit`` subcommands to ``mcie``'s subparsers."""
    train_cli.add_parser(sub)
    edit_cli.add_parser(sub)


def run(args: argparse.Namespace) -> int:
    """Run ``mcie train`` or ``mcie edit`` (the runner their parser registered)."""
    return args.run(args)
