"""What one ``sparkgate serve`` claims for its whole life: its port and its data folder.

Both are claimed before anything starts, so a second ``serve`` on a busy port or data folder
refuses having touched nothing: it never reaches the first one's embedded Redis or workers.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import socket
from collections.abc import Iterator
from pathlib import Path

from sparkgate.jobs.errors import Conflict

PID_FILE = "serve.pid"
LISTEN_BACKLOG = 128


def listen(host: str, port: int) -> list[socket.socket]:
    """Listening sockets for every address of ``host`` (``localhost``: IPv4 and IPv6), as
    aiohttp's own site would open them. They listen at once: a socket only bound would not
    keep a second process, which sets SO_REUSEADDR too, off the port."""
    sockets: list[socket.socket] = []
    try:
        for family, kind, proto, address in _addresses(host, port):
            sock = socket.socket(family, kind, proto)
            sockets.append(sock)
            # As asyncio does: a restart right after a stop need not wait out TIME_WAIT.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.bind(address)
            sock.listen(LISTEN_BACKLOG)
    except OSError as exc:
        for sock in sockets:
            sock.close()
        raise Conflict(_cannot_listen(host, port, exc)) from None
    return sockets


def _addresses(host: str, port: int) -> list[tuple]:
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM,
                                   flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise Conflict(f"cannot listen on {host}:{port}: {exc.strerror}") from None
    unique = dict.fromkeys((family, kind, proto, address)
                           for family, kind, proto, _, address in infos)
    return list(unique)


def _cannot_listen(host: str, port: int, exc: OSError) -> str:
    if exc.errno == errno.EADDRINUSE:
        return (f"port {port} on {host} is in use (another sparkgate serve?): stop it, "
                "or choose another port with --port")
    return f"cannot listen on {host}:{port}: {exc.strerror}"


@contextlib.contextmanager
def data_dir_held(data_dir: Path) -> Iterator[None]:
    """Hold ``data_dir`` while the block runs: one ``serve`` per data folder.

    The hold is an flock on ``serve.pid``, which the kernel releases when the process ends
    however it ends, so a file left by a killed ``serve`` is no obstacle; the pid in it names
    the holder in the refusal. The descriptor is not inherited: a child that outlived us
    must not keep the folder held.
    """
    data_dir.mkdir(parents=True, exist_ok=True)
    path = data_dir / PID_FILE
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)  # not truncated: the holder's pid
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise Conflict(_in_use(data_dir, os.pread(fd, 32, 0))) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield
    finally:
        os.close(fd)


def _in_use(data_dir: Path, pid_file: bytes) -> str:
    holder = pid_file.decode("ascii", "replace").strip()
    by = f"pid {holder}" if holder.isdigit() else "a sparkgate serve that is starting"
    return (f"data folder {data_dir.resolve()} is in use by {by}: stop it, or give this one "
            "another data_dir (SPARKGATE_DATA_DIR)")
