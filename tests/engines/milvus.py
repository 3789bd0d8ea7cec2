"""Milvus 2.3 standalone (embedded etcd, rocksmq) from the ``milvus`` wheel's binary.

The wheel's ``milvus-server`` wrapper probes for free ports upwards from Milvus' defaults,
does not report the health port it picked (9091 or the next free one), and leaves the
embedded etcd on its fixed 2379/2380, so two servers on one machine collide. Here every
port is chosen up front: the wheel's own config writer gets them all, etcd gets an embed
config on free loopback ports, and the binary runs directly in its own process group.
"""

from __future__ import annotations

import contextlib
import hashlib
import lzma
import os
import shutil
import subprocess
import tempfile
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from tests.engines.common import free_port, stop_group, wait_until

# Every listening port in the wheel's config template, plus the two etcd ports.
_PORT_KEYS = (
    "proxy_port",
    "proxy_internal_port",
    "root_coord_port",
    "query_coord_port",
    "query_node_port",
    "index_coord_port",
    "index_node_port",
    "data_coord_port",
    "data_node_port",
    "etcd_port",
)
# Components advertise these addresses to each other: keep them on loopback.
_ADVERTISED = (
    "rootCoord",
    "proxy",
    "queryCoord",
    "queryNode",
    "indexNode",
    "dataCoord",
    "dataNode",
)
# Shorter housekeeping periods than Milvus' production defaults, so that loading a new
# collection and strongly consistent reads take a fraction of a second (tests create
# hundreds of small collections). Milvus reads any setting from the environment too:
# the key upper-cased, dots as underscores.
_TUNING = {
    "QUERYCOORD_CHECKINTERVAL": "100",  # ms between load-task scheduling rounds (1000)
    "QUERYCOORD_DISTPULLINTERVAL": "100",  # ms between segment distribution pulls (500)
    "QUERYCOORD_CHECKCHANNELINTERVAL": "100",  # ms between channel checks (1000)
    "QUERYCOORD_CHECKSEGMENTINTERVAL": "100",  # ms between segment checks (3000)
    "QUERYCOORD_LEADERVIEWUPDATEINTERVAL": "0.1",  # s between leader view syncs (1)
    "PROXY_TIMETICKINTERVAL": "50",  # ms between time ticks; Strong reads wait one (200)
}


@dataclass
class MilvusServer:
    """A running Milvus standalone on 127.0.0.1."""

    host: str
    port: int
    health_port: int
    version: str
    datadir: Path
    process: subprocess.Popen[bytes]

    @property
    def uri(self) -> str:
        """vecmigrate URI of this server."""
        return f"milvus://{self.host}:{self.port}"

    def stop(self) -> None:
        """Stop the process group (TERM, then KILL after 5 s) and delete the data folder
        and the server-id file Milvus 2.3 leaves in /tmp/milvus whatever it is told."""
        stop_group(self.process)
        shutil.rmtree(self.datadir, ignore_errors=True)
        Path("/tmp/milvus", f"server_id_{self.process.pid}").unlink(missing_ok=True)


def _bin_dir() -> tuple[Path, str]:
    """The wheel's xz-compressed binaries (~250 MB unpacked), unpacked once per version
    into the temp folder (about 4 s) and shared by later sessions; atomic, so concurrent
    sessions never run a half-written file."""
    import milvus

    packed = Path(milvus.__file__).parent / "data" / "bin"
    digest = hashlib.sha256()
    for f in sorted(packed.glob("*.lzma")):
        digest.update(f"{f.name}:{f.stat().st_size}".encode())
    cache = Path(tempfile.gettempdir()) / f"vecmigrate-milvus-{milvus.__version__}-bin"
    cache = cache.with_name(f"{cache.name}-{digest.hexdigest()[:10]}")
    if not (cache / "milvus").exists():
        tmp = Path(tempfile.mkdtemp(prefix="vecmigrate-milvus-bin-"))
        for f in packed.glob("*.lzma"):
            target = tmp / f.name[: -len(".lzma")]
            with lzma.open(f) as src, target.open("wb") as out:
                shutil.copyfileobj(src, out, 1 << 20)
            target.chmod(0o755)
        try:
            os.replace(tmp, cache)
        except OSError:  # another session unpacked it first
            shutil.rmtree(tmp, ignore_errors=True)
    return cache, str(milvus.__version__)


def _healthy(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1) as r:
            return b"OK" in r.read()
    except OSError:
        return False


def _write_config(datadir: Path, ports: dict[str, int], peer_port: int) -> Path:
    """The wheel's milvus.yaml with our ports, and an embedded-etcd config beside it."""
    from milvus import MilvusServerConfig

    config = MilvusServerConfig(data_dir=str(datadir), etcd_log_level="warn", **ports)
    for component in _ADVERTISED:
        config.set(f"{component}.ip", "127.0.0.1")
    config.resolve()  # raises if a chosen port was taken meanwhile
    etcd = datadir / "configs" / "embedEtcd.yaml"
    client = f"http://127.0.0.1:{ports['etcd_port']}"
    peer = f"http://127.0.0.1:{peer_port}"
    etcd.write_text(
        f"listen-client-urls: {client}\nadvertise-client-urls: {client}\n"
        f"listen-peer-urls: {peer}\ninitial-advertise-peer-urls: {peer}\n"
        f"initial-cluster: default={peer}\n"
    )
    return etcd


def _start_once(workdir: Path) -> MilvusServer:
    bin_dir, version = _bin_dir()
    datadir = Path(tempfile.mkdtemp(prefix="milvus-", dir=workdir))
    ports = {key: free_port() for key in _PORT_KEYS}
    peer_port, health_port = free_port(), free_port()
    if len({*ports.values(), peer_port, health_port}) != len(ports) + 2:
        shutil.rmtree(datadir, ignore_errors=True)
        raise OSError("free_port returned the same port twice")
    etcd_config = _write_config(datadir, ports, peer_port)
    env = {
        **os.environ,
        "DEPLOY_MODE": "STANDALONE",
        "METRICS_PORT": str(health_port),
        "MILVUS_RUN_DIR": str(datadir / "run"),
        "ETCD_CONFIG_PATH": str(etcd_config),
        **_TUNING,
        "LD_LIBRARY_PATH": ":".join(
            filter(None, [str(bin_dir), os.environ.get("LD_LIBRARY_PATH")])
        ),
    }
    log = datadir / "logs" / "milvus-stdout.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(  # reads configs/milvus.yaml from its working directory
            [str(bin_dir / "milvus"), "run", "standalone"],
            cwd=datadir,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    server = MilvusServer("127.0.0.1", ports["proxy_port"], health_port, version, datadir, proc)

    def ready() -> bool:
        if proc.poll() is not None:
            raise RuntimeError(f"milvus exited with {proc.returncode}:\n{_tail(log)}")
        return _healthy(health_port)

    try:
        wait_until(ready, 90, "milvus standalone", log)
    except BaseException:
        server.stop()
        raise
    return server


def _tail(log: Path) -> str:
    with contextlib.suppress(OSError):
        return log.read_text(errors="replace")[-2000:]
    return ""


def start_milvus_server(workdir: Path, attempts: int = 3) -> MilvusServer:
    """Start Milvus standalone under ``workdir``; ready when ``/healthz`` says OK (~6 s).

    A port taken by another process between choosing and binding makes the server exit
    at start; that is retried with fresh ports.
    """
    for attempt in range(attempts):
        try:
            return _start_once(workdir)
        except (OSError, RuntimeError):
            if attempt == attempts - 1:
                raise
    raise AssertionError("unreachable")
