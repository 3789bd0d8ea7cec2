"""Chroma's HTTP server (``chroma run``), as shipped in the chromadb wheel."""

from __future__ import annotations

import subprocess
import sys
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from tests.engines.common import free_port, stop_group, wait_until


@dataclass
class ChromaServer:
    """A running ``chroma run`` on 127.0.0.1."""

    host: str
    port: int
    process: subprocess.Popen[bytes]

    @property
    def uri(self) -> str:
        """vecmigrate URI of this server."""
        return f"chroma+http://{self.host}:{self.port}"

    def stop(self) -> None:
        """Stop the server (safe to call twice)."""
        stop_group(self.process)


def _heartbeat(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v2/heartbeat", timeout=1) as r:
            return bool(r.status == 200)
    except OSError:
        return False


def start_chroma_server(workdir: Path) -> ChromaServer:
    """Start ``chroma run`` with its data in ``workdir``; ready when the heartbeat answers."""
    port = free_port()
    log = workdir / "chroma.log"
    exe = Path(sys.executable).parent / "chroma"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [
                str(exe),
                "run",
                "--path",
                str(workdir / "data"),
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    server = ChromaServer("127.0.0.1", port, proc)
    try:
        wait_until(lambda: _heartbeat(port), 60, "chroma run", log)
    except BaseException:
        server.stop()
        raise
    return server
