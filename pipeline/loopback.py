"""Keep the local runner's gRPC servers on loopback.

What listens during ``mcie build --workers 2`` (measured with ``ss -ltnp``, Beam 2.77): the
driver process opens six TCP servers on every interface (``*:PORT``), the SDK worker
subprocesses none. Four belong to the FnApiRunner's
``worker_handlers.GrpcServer`` (control, data, state and logging of the Fn API), and one per
worker is the logging server of ``local_job_service.SubprocessSdkWorker``. Both call
``add_insecure_port('[::]:0')``, fixed in Beam's code: no pipeline option binds them elsewhere.
Anyone who can reach the machine could then talk to the Fn API (the control plane hands out
work; the state API serves side inputs).

The workers are told to reach those servers at ``localhost:PORT``, so loopback is all they
need. :func:`bind_local_servers_to_loopback` wraps the ``grpc`` module those two Beam modules
use so that a server asked for ``[::]:N`` / ``0.0.0.0:N`` binds ``localhost:N`` instead
(127.0.0.1 and ::1). Nothing else changes: same ports, same addresses handed to the workers.
Remote runners (Dataflow) start none of these servers on the launcher.
"""

from __future__ import annotations

import re
from typing import Any

#: an address on every interface, as Beam writes it
_ANY_INTERFACE = re.compile(r"^(\[::\]|0\.0\.0\.0):")


class _LoopbackServer:
    """A ``grpc.Server`` whose insecure ports bind loopback instead of every interface."""

    def __init__(self, server: Any) -> None:
        self._server = server

    def add_insecure_port(self, address: str) -> int:
        return self._server.add_insecure_port(_ANY_INTERFACE.sub("localhost:", address))

    def __getattr__(self, name: str) -> Any:
        return getattr(self._server, name)


class _LoopbackGrpc:
    """The ``grpc`` module, except that ``server()`` returns a :class:`_LoopbackServer`."""

    def __init__(self, grpc: Any) -> None:
        self._grpc = grpc

    def server(self, *args: Any, **kwargs: Any) -> _LoopbackServer:
        return _LoopbackServer(self._grpc.server(*args, **kwargs))

    def __getattr__(self, name: str) -> Any:
        return getattr(self._grpc, name)


def bind_local_servers_to_loopback() -> None:
    """Make the FnApiRunner's Fn API servers and its subprocess workers' logging servers bind
    loopback only (idempotent; affects those two Beam modules, not ``grpc`` elsewhere)."""
    from apache_beam.runners.portability import local_job_service
    from apache_beam.runners.portability.fn_api_runner import worker_handlers

    for module in (worker_handlers, local_job_service):
        if not isinstance(module.grpc, _LoopbackGrpc):
            module.grpc = _LoopbackGrpc(module.grpc)
