"""A listener's bind error is one line naming the config key and what to do."""

from __future__ import annotations

import errno
import socket

import pytest

from bridge.adapters.listen import ListenError, bind_problem


def test_a_taken_port_is_one_line_naming_the_key():
    taken = OSError(errno.EADDRINUSE, "Address already in use")
    assert str(ListenError("smtp", "127.0.0.1", 2525, taken)) == (
        "smtp.port: 127.0.0.1:2525 is already in use (another process is listening); "
        "choose a free port or stop the other process"
    )


@pytest.mark.parametrize(
    ("cause", "start"),
    [
        (OSError(errno.EACCES, "Permission denied"), "http.port: 0.0.0.0:80 may not be bound"),
        (OSError(errno.EADDRNOTAVAIL, "Cannot assign"), "http.host: 0.0.0.0 is not an address"),
        (socket.gaierror(-2, "Name or service not known"), "http.host: '0.0.0.0' does not"),
        (OSError(errno.EMFILE, "Too many open files"), "http.port: cannot listen on 0.0.0.0:80"),
    ],
)
def test_other_bind_errors_name_the_key_too(cause: OSError, start: str):
    line = bind_problem("http", "0.0.0.0", 80, cause)
    assert line.startswith(start)
    assert "\n" not in line
