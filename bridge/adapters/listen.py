"""A listener that cannot bind its port says so in one line naming the config key."""

from __future__ import annotations

import errno
import socket


class ListenError(Exception):
    """Binding `section`'s host and port failed; `str()` is the line to show the operator."""

    def __init__(self, section: str, host: str, port: int, cause: OSError) -> None:
        super().__init__(bind_problem(section, host, port, cause))
        self.section = section
        self.host = host
        self.port = port


def bind_problem(section: str, host: str, port: int, cause: OSError) -> str:
    """What went wrong and what to do, e.g. `smtp.port: 127.0.0.1:2525 is already in use ...`."""
    where = f"{host}:{port}"
    if isinstance(cause, socket.gaierror):
        return f"{section}.host: {host!r} does not resolve; give an address of this machine"
    if cause.errno == errno.EADDRINUSE:
        return (
            f"{section}.port: {where} is already in use (another process is listening); "
            "choose a free port or stop the other process"
        )
    if cause.errno == errno.EACCES:
        return (
            f"{section}.port: {where} may not be bound by this user (permission denied); "
            "choose a port above 1023 or grant the process CAP_NET_BIND_SERVICE"
        )
    if cause.errno == errno.EADDRNOTAVAIL:
        return f"{section}.host: {host} is not an address of this machine; give one that is"
    return f"{section}.port: cannot listen on {where} ({cause.strerror or type(cause).__name__})"
