"""Framework code that cannot be installed beside the engine clients, run from the tests.

``langchain-postgres`` pins pgvector<0.4 and ``langchain-redis`` its own redisvl, so they
live in a side virtualenv, ``.venv-fw2`` (``make .venv-fw2/.installed``; ``make test``
builds it). A test drives them through a *side script*, a file of ``tests/frameworks``
run by that venv's Python with one JSON request on stdin, answering one JSON reply on
stdout. This module has both halves:

Main venv (the tests):

* :func:`side_python` - the side venv's Python, or ``pytest.skip`` with the make command
  (``pytest.fail`` under ``VECMIGRATE_REQUIRE_ENGINES=1``, as ``require_module`` does);
* :func:`run_side` - run a side script with a request and return its reply; a failing or
  hanging script fails the test with the script's stderr;
* :func:`vectors_for` - the MiniLM vectors of texts (from ``kit``), to put in a request:
  the side venv has no model (no torch), so every text it embeds comes with its vector.

Side venv (the scripts; only the standard library and ``langchain_core`` there):

* :func:`serve` - read the request, call the handler named by its ``"op"``, write the reply;
* :class:`GivenEmbeddings` - a LangChain ``Embeddings`` that looks vectors up by text in
  the request's ``"vectors"``, and names any text it was not given.

A side script imports this file as ``side`` (its own folder is first on ``sys.path``), so
nothing here may import pytest, pyarrow or the project at module level.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import traceback
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
SIDE_VENV = ROOT / ".venv-fw2"
MAKE = "make .venv-fw2/.installed"
#: Seconds a side script may run before the test fails.
TIMEOUT = 300.0

Request = dict[str, Any]
Reply = dict[str, Any]


# --------------------------------------------------------------------------- main venv


def side_python() -> Path:
    """The side venv's Python; skips the test (fails it in CI) when the venv is missing."""
    python = SIDE_VENV / "bin" / "python"
    # make touches .installed only after importing the packages: a venv without it is
    # half built.
    if python.exists() and (SIDE_VENV / ".installed").exists():
        return python
    import pytest

    reason = f"the side virtualenv {SIDE_VENV} is missing or incomplete: run `{MAKE}`"
    if os.environ.get("VECMIGRATE_REQUIRE_ENGINES") == "1":
        pytest.fail(reason, pytrace=False)
    pytest.skip(reason)


class SideScriptError(AssertionError):
    """A side script failed, hung or answered something that is not a JSON object."""


def run_side(script: str, request: Request, timeout: float = TIMEOUT) -> Reply:
    """Run ``tests/frameworks/<script>`` in the side venv with ``request`` (JSON) on stdin
    and return the JSON object it printed; :class:`SideScriptError` with its stderr when
    it exits non-zero, runs over ``timeout`` seconds or prints no JSON object."""
    path = HERE / script
    if not path.is_file():
        raise FileNotFoundError(f"no side script {path}")
    python = side_python()
    env = {
        k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")
    }
    # The side venv must never reach for a model or the network.
    env.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", PYTHONDONTWRITEBYTECODE="1")
    op = request.get("op", "?")
    try:
        proc = subprocess.run(
            [str(python), str(path)],
            input=json.dumps(request),
            capture_output=True,
            text=True,
            env=env,
            cwd=HERE,
            timeout=timeout,
        )
    except subprocess.TimeoutExpired as exc:
        raise SideScriptError(
            f"side script {script} (op {op}) ran over {timeout:.0f}s; its stderr:\n"
            + _tail(exc.stderr)
        ) from None
    if proc.returncode != 0:
        raise SideScriptError(
            f"side script {script} (op {op}) exited {proc.returncode}; its stderr:\n"
            + _tail(proc.stderr)
        )
    try:
        reply = json.loads(proc.stdout)
    except json.JSONDecodeError:
        reply = None
    if not isinstance(reply, dict):
        raise SideScriptError(
            f"side script {script} (op {op}) printed no JSON object:\n"
            f"{_tail(proc.stdout)}\nits stderr:\n{_tail(proc.stderr)}"
        )
    return reply


def _tail(text: str | bytes | None, limit: int = 6000) -> str:
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    text = text or ""
    return text if len(text) <= limit else "...\n" + text[-limit:]


def vectors_for(texts: Iterable[str]) -> dict[str, list[float]]:
    """``{text: MiniLM vector}`` for a request's ``"vectors"``: the corpus' cached vectors,
    the offline model for any other text (main venv only)."""
    from tests.frameworks import kit

    unique = list(dict.fromkeys(texts))
    return dict(zip(unique, kit.EMBED(unique), strict=True))


# --------------------------------------------------------------------------- side venv


try:  # present in both venvs; guarded so that a bare interpreter can still import this
    from langchain_core.embeddings import Embeddings as _Embeddings
except ImportError:  # pragma: no cover
    _Embeddings = object  # type: ignore[assignment,misc]


class GivenEmbeddings(_Embeddings):
    """LangChain embeddings answering from ``{text: vector}``; a text without a vector is
    an error naming it (the caller must compute it in the main venv and send it)."""

    def __init__(self, vectors: Mapping[str, list[float]]) -> None:
        self.vectors = dict(vectors)

    def _get(self, text: str) -> list[float]:
        try:
            return list(self.vectors[text])
        except KeyError:
            raise KeyError(
                f"no vector was sent for the text {text[:80]!r}: add it to the request's "
                "'vectors' (side.vectors_for in the test)"
            ) from None

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        """The given vectors of ``texts``."""
        return [self._get(t) for t in texts]

    def embed_query(self, text: str) -> list[float]:
        """The given vector of ``text``."""
        return self._get(text)


Handler = Callable[[Request], Reply]


def serve(handlers: Mapping[str, Handler]) -> None:
    """The main of a side script: read a JSON request from stdin, run
    ``handlers[request["op"]]`` and print its JSON reply; exit 1 with the traceback on
    stderr if it raises. Anything the handler prints goes to stderr, so stdout carries
    the reply alone."""
    request = json.load(sys.stdin)
    op = request.get("op")
    if op not in handlers:
        print(f"unknown op {op!r}: this script takes {sorted(handlers)}", file=sys.stderr)
        raise SystemExit(2)
    out = sys.stdout
    try:
        with contextlib.redirect_stdout(sys.stderr):
            reply = handlers[op](request)
    except Exception:
        traceback.print_exc()
        raise SystemExit(1) from None
    json.dump(reply, out, default=str)
    out.write("\n")
    out.flush()
