"""Real services for the test suite, each started on loopback in a temporary directory.

The modules here hold the machinery; ``tests/conftest.py`` turns them into fixtures.
Every server binds 127.0.0.1 only and is stopped by its fixture.
"""

from __future__ import annotations

import os
import random
import socket
import time
from collections.abc import Callable
from typing import NoReturn

import pytest


class ServiceUnavailable(RuntimeError):
    """A service cannot run on this machine (binary missing, failed to start)."""


def in_ci() -> bool:
    """CI must never silently skip a real-service test, so it is told apart from a laptop."""
    return os.environ.get("CI", "").strip().lower() == "true"


def require_service(name: str, reason: str) -> NoReturn:
    """Give up on a service that cannot start: skip locally, fail under ``CI=true``."""
    message = f"{name} unavailable: {reason}"
    if in_ci():
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port the kernel just handed out; racy in theory, fine for one test run."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def stable_port(host: str = "127.0.0.1", low: int = 20_000, high: int = 32_000) -> int:
    """A free port *below* the kernel's ephemeral range (32768+ by default).

    A server that fault tests stop and start again (RabbitMQ, PostgreSQL) must get its
    port back: outgoing connections take ephemeral ports, and one of them can grab the
    port of a server that is down for a moment, so its restart fails with EADDRINUSE.
    """
    for _ in range(200):
        port = random.randint(low, high)
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind((host, port))
            except OSError:
                continue
            return port
    return free_port(host)


def wait_until(check: Callable[[], bool], timeout: float, interval: float = 0.05) -> bool:
    """Poll ``check`` until it is true or ``timeout`` seconds pass; returns the last result."""
    deadline = time.monotonic() + timeout
    while True:
        if check():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    """True when something accepts TCP connections on ``host:port``."""
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False
