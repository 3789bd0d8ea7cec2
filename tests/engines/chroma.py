"""Chroma's HTTP server (``chroma run``), as shipped in the chromadb wheel."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from tests.engines.common import free_port, stop_group, wait_until


@dataclass
class ChromaServer:
    """A running ``chroma run`` on 127.0.0.1, its data and log in ``workdir``."""

    host: str
    port: int
    process: subprocess.Popen[bytes]
    workdir: Path

    @property
    def uri(self) -> str:
        """vecmigrate URI of this server."""
        return f"chroma+http://{self.host}:{self.port}"

    def stop(self) -> None:
        """Stop the server (safe to call twice)."""
        stop_group(self.process)

    def kill(self) -> None:
        """SIGKILL the server's process group (a crash, not a shutdown) and reap it."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=30)

    def restart(self) -> float:
        """Start ``chroma run`` again on the same port and data; seconds until it answers."""
        started = time.monotonic()
        self.process = _launch(self.workdir, self.port)
        wait_until(lambda: chroma_up(self.port), 120, "chroma run (restart)", self.log)
        return time.monotonic() - started

    @property
    def log(self) -> Path:
        """The server's log file (appended to across restarts)."""
        return self.workdir / "chroma.log"


def chroma_up(port: int) -> bool:
    """The Chroma server on ``port`` answers its heartbeat."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v2/heartbeat", timeout=1) as r:
            return bool(r.status == 200)
    except OSError:
        return False


def _launch(workdir: Path, port: int) -> subprocess.Popen[bytes]:
    exe = Path(sys.executable).parent / "chroma"
    args = ["run", "--path", str(workdir / "data"), "--host", "127.0.0.1", "--port", str(port)]
    with (workdir / "chroma.log").open("ab") as out:
        return subprocess.Popen(
            [str(exe), *args], stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )


def start_chroma_server(workdir: Path) -> ChromaServer:
    """Start ``chroma run`` with its data in ``workdir``; ready when the heartbeat answers."""
    port = free_port()
    server = ChromaServer("127.0.0.1", port, _launch(workdir, port), workdir)
    try:
        wait_until(lambda: chroma_up(port), 60, "chroma run", server.log)
    except BaseException:
        server.stop()
        raise
    return server
