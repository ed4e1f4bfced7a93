"""Loopback TCP ports for the local stack's servers (and the tests' and benchmarks' servers)."""
from __future__ import annotations

import socket

LOOPBACK = "127.0.0.1"


def port_is_free(port: int, host: str = LOOPBACK) -> bool:
    """True when a server can listen on `port` now. With SO_REUSEADDR, as our servers bind (aiohttp, uvicorn,
    http.server, node): connections of a stopped server left in TIME_WAIT do not make a port taken, a listener
    does."""
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def free_port(ports: range | None = None) -> int:
    """A free loopback port: the first free one in `ports`, or one the OS picks when `ports` is None."""
    if ports is None:
        with socket.socket() as s:
            s.bind((LOOPBACK, 0))
            return s.getsockname()[1]
    for port in ports:
        if port_is_free(port):
            return port
    raise RuntimeError(f"no free port in {ports.start}-{ports.stop - 1}")
