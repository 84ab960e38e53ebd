"""Process exit codes shared by every ``mcie`` command (see DESIGN.md, "Exit codes")."""

from __future__ import annotations

import enum


class ExitCode(enum.IntEnum):
    """What a command's exit status means. Rejected samples are outcomes, not errors."""

    OK = 0
    #: bad arguments, a missing or non-empty output directory, an invalid config
    USAGE = 1
    #: the run failed: an exception, or more failed samples than ``--max-failed-fraction``, or
    #: ``mcie edit --decomposer mllm``'s VLM gave no valid decomposition in all its attempts
    #: (without ``--fallback grammar``)
    FAILED = 2
    #: an external service (Label Studio) is unreachable or refuses us
    SERVICE = 3


class UsageError(Exception):
    """A usage or configuration error; the CLI exits with :attr:`ExitCode.USAGE`."""


class RunFailed(Exception):
    """The run failed as a whole; the CLI exits with :attr:`ExitCode.FAILED`."""


class ServiceError(Exception):
    """An external service is down or refuses; the CLI exits with :attr:`ExitCode.SERVICE`."""
