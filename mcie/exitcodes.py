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
    #: stdout was closed by its reader (``mcie audit X | head``): stopped quietly, with the
    #: status a Unix filter killed by SIGPIPE has (128 + 13)
    PIPE_CLOSED = 141


class UsageError(Exception):
    """A usage or configuration error; the CLI exits with :attr:`ExitCode.USAGE`."""


class RunFailed(Exception):
    """The run failed as a whole; the CLI exits with :attr:`ExitCode.FAILED`."""


class ServiceError(Exception):
    """An external service is down or refuses; the CLI exits with :attr:`ExitCode.SERVICE`."""


class UnitFailed(RuntimeError):
    """A unit of a pipeline failed: the message says which unit, which sample or input and
    what was raised. It starts with :attr:`MARKER` so the driver can find it inside the text
    of a worker's traceback (Beam's multi-process runner passes failures on as text)."""

    MARKER = "mcie-unit-failed:"

    def __init__(self, message: str, *args) -> None:
        if not message.startswith(self.MARKER):  # unpickling passes the marked text back in
            message = f"{self.MARKER} {message}"
        super().__init__(message, *args)
