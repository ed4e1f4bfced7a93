"""Loopback TCP ports for the local stack's servers (and the tests' and benchmarks' servers)."""
from __future__ import annotations

import socket

LOOPBACK = "127.0.0.1"


def port_is_free(port: int, host: str = LOOPBACK) -> bool:
    """True when `port` can be bound on `host` now."""
    with socket.socket() as s:
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
