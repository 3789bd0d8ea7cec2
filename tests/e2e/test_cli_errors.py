"""The error cases of the CLI and API layer (issue #18), run from one table.

Each case is a command line, the exit code it must end with and a substring of the first
line of stderr. Every case must print exactly one ``error:`` line first, then a ``hint:``
line; never "unexpected" and never a traceback. Each also runs with ``--json``: the same
exit code, the same lines on stderr, and on stdout exactly one JSON object
``{"error": {"type", "message", "hint"}}`` whose message is that first line.

The commands run in-process (``helpers.cli``: the console script's parsing, error
handling and streams without interpreter start-up); test_cli_streams.py runs the script.
"""

from __future__ import annotations

import json
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.helpers import cli, make_dump
from vecmigrate import api


@dataclass(frozen=True)
class Case:
    """A command line ({placeholders} filled from the store fixture), its exit code and
    a substring of the first line of stderr."""

    args: tuple[str, ...]
    code: int
    first_line: str


def _c(args: str, code: int, first_line: str) -> Case:
    return Case(tuple(args.split()), code, first_line)


S, L = "dump://{src}", "lancedb://{lance}"  # a source dump and a LanceDB copy of it
CYRILLIC = "chr\u043ema"  # chroma with a Cyrillic 'o'

CASES: dict[str, Case] = {
    # mapping and config files
    "mapping is []": _c(f"copy {S} lancedb://{{tmp}}/new -c docs --map {{empty}}", 2, "empty list"),
    "plan mapping is []": _c(f"plan {S} {L} -c docs --map {{empty}}", 2, "holds an empty list"),
    "mapping not YAML": _c(
        f"copy {S} lancedb://{{tmp}}/new -c docs --map {{broken}}", 2, "is not valid YAML (line 2"
    ),
    "mapping missing": _c(
        f"copy {S} lancedb://{{tmp}}/new -c docs --map {{tmp}}/nope.yaml", 2, "does not exist"
    ),
    "mapping unknown key": _c(
        f"copy {S} lancedb://{{tmp}}/new -c docs --map {{unknown_key}}", 2, "metadata"
    ),
    "mapping unknown field": _c(
        f"copy {S} lancedb://{{tmp}}/new -c docs --map {{unknown_field}}", 2, "'nosuchfield'"
    ),
    "verify config is []": _c(f"verify {S} {L} -c docs --config {{empty}}", 2, "empty list"),
    "verify config k 0": _c(f"verify {S} {L} -c docs --config {{k0}}", 2, "k: Input should be"),
    # option values
    "verify --k 0": _c(f"verify {S} {L} -c docs --k 0", 2, "'--k'"),
    "verify --queries 0": _c(f"verify {S} {L} -c docs --queries 0", 2, "'--queries'"),
    "copy --batch-rows 0": _c(
        f"copy {S} lancedb://{{tmp}}/new --batch-rows 0", 2, "'--batch-rows'"
    ),
    "copy --workers 0": _c(f"copy {S} lancedb://{{tmp}}/new --workers 0", 2, "'--workers'"),
    "export --workers 0": _c(f"export {L} -o {{tmp}}/out --workers 0", 2, "'--workers'"),
    "import --batch-rows 0": _c(f"import {{src}} {L}2 --batch-rows 0", 2, "'--batch-rows'"),
    "plan --sample 0": _c(f"plan {S} {L} -c docs --sample 0", 2, "'--sample'"),
    "sync --batch-rows 0": _c(f"sync {S} {L} -c docs --batch-rows 0", 2, "'--batch-rows'"),
    "bad --if-exists": _c(f"copy {S} {L} -c docs --if-exists bogus", 2, "'--if-exists'"),
    "bad --executor": _c(f"copy {S} {L} -c docs --executor bogus", 2, "--executor must be"),
    "bad sync --mode": _c(f"sync {S} {L} -c docs --mode bogus", 2, "'--mode'"),
    "--resume with --restart": _c(
        f"copy {S} {L} -c docs --resume --restart", 2, "--resume and --restart exclude"
    ),
    "--quiet with --verbose": _c(f"inspect {L} -q -v", 2, "--quiet and --verbose exclude"),
    "missing argument": _c("copy {src}", 2, "Missing argument 'target'"),
    "missing --collection": _c(f"verify {S} {L}", 2, "Missing option '--collection'"),
    "unknown option": _c(f"inspect {L} --bogus", 2, "No such option: --bogus"),
    "--target-collection, 2 collections": _c(
        f"copy {S} lancedb://{{tmp}}/new --target-collection x", 2, "needs a single --collection"
    ),
    "literal encrypt key": _c(f"export {L} -o {{tmp}}/out --encrypt-key abc", 2, "not a key"),
    # URIs
    "Cyrillic scheme": _c(f"inspect {CYRILLIC}:///tmp/x", 2, "is not ASCII: '\u043e' (CYRILLIC"),
    "Cyrillic scheme, check": _c(f"check {CYRILLIC}:///tmp/x", 2, "is not ASCII"),
    "unknown scheme": _c("inspect nosuch:///x", 2, "unknown engine scheme 'nosuch'"),
    "unknown URI parameter": _c(f"inspect {L}?bogus=1", 2, "does not take parameter(s) 'bogus'"),
    "mistyped URI parameter": _c(
        f"inspect {L}?id_feild=id", 2, "'id_feild': did you mean 'id_field'?"
    ),
    "host where a path goes": _c("inspect lancedb://MyLance", 2, "names a host ('MyLance')"),
    "literal password": _c(
        "inspect pgvector://u:hunter2@127.0.0.1:1/db", 2, "a literal password is not accepted"
    ),
    "secret env var unset": _c(
        "inspect pgvector://u@127.0.0.1:1/db?password=env:VM_TEST_UNSET_91", 2, "is not set"
    ),
    # local paths
    "inspect wrong path": _c("inspect lancedb://{tmp}/nope", 2, "does not exist"),
    "check wrong path": _c("check {tmp}/nope", 2, "does not exist"),
    "verify wrong path": _c(f"verify {S} lancedb://{{tmp}}/nope -c docs", 2, "does not exist"),
    "diff wrong path": _c(f"diff lancedb://{{tmp}}/nope {L} -c docs", 2, "does not exist"),
    "plan wrong path": _c(f"plan lancedb://{{tmp}}/nope {L} -c docs", 2, "does not exist"),
    "copy wrong path": _c("copy dump://{tmp}/nope lancedb://{tmp}/new", 2, "does not exist"),
    "inspect chroma a file": _c("inspect chroma://{file}", 2, "is a file ({file})"),
    "inspect lancedb a file": _c("inspect lancedb://{file}", 2, "not the directory of"),
    "copy below a file": _c(f"copy {S} lancedb://{{file}}/sub", 2, "{file} is a file"),
    "sqlite-vec a directory": _c("inspect sqlite-vec://{tmp}", 2, "is a directory"),
    "export -o a file": _c(f"export {L} -c docs -o {{file}}", 2, "is a file; an export writes"),
    "diff --output in no dir": _c(
        f"diff {S} {L} -c docs --output {{tmp}}/no/ids.parquet", 2, "does not exist"
    ),
    "verify --report-dir a file": _c(
        f"verify {S} {L} -c docs --report-dir {{file}}", 2, "--report-dir"
    ),
    "empty store": _c("inspect lancedb://{emptydir}", 1, "has no collections"),
    # collections
    "missing collection, inspect": _c(f"inspect {L} -c nosuch", 2, "has no collection 'nosuch'"),
    "missing collection, copy": _c(
        f"copy {S} lancedb://{{tmp}}/new -c nosuch", 2, "has no collection 'nosuch'"
    ),
    "missing collection, verify": _c(f"verify {L} {S} -c nosuch", 2, "no collection 'nosuch'"),
    "missing collection, check": _c("check {src} -c nosuch", 2, "has no collection 'nosuch'"),
    # writing
    "replace without --yes": _c(
        f"copy {S} {L} -c docs --if-exists replace", 2, "would drop 'docs' (120 records)"
    ),
    "target exists": _c(f"copy {S} {L} -c docs", 2, "already exists"),
    "copy into itself": _c(f"copy {S} {S} -c docs", 2, "same collection 'docs'"),
    # servers that are not there: one line, exit 1, for every engine
    "Chroma HTTP closed port": _c(
        "inspect chroma+http://127.0.0.1:{port}", 1, "cannot connect to chroma+http://127.0.0.1"
    ),
    "Qdrant closed port": _c("inspect qdrant://127.0.0.1:{port}", 1, "cannot connect"),
    "a path as a server host": _c("ls milvus://./store.db", 2, "'.' is not a host name"),
    "pgvector closed port": _c("inspect pgvector://u@127.0.0.1:{port}/db", 1, "cannot connect"),
    "Redis closed port": _c(f"copy {S} redis://127.0.0.1:{{port}} -c docs", 1, "cannot connect"),
    "Elasticsearch closed port": _c(
        f"verify {S} elasticsearch://127.0.0.1:{{port}} -c docs", 1, "cannot connect"
    ),
}

# Fixed outside this layer: the dump module reads a manifest that is not a JSON object.
CONNECTOR_CASES: dict[str, Case] = {
    "dump manifest is []": _c("check {badmanifest}", 2, "manifest.json"),
}


def _closed_port() -> int:
    """A local port nobody listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    base = tmp_path_factory.mktemp("errors")
    make_dump(base / "src", 120, dim=8)
    make_dump(base / "src", 10, dim=8, name="other")
    lance = base / "lance"
    api.copy(f"dump://{base / 'src'}", f"lancedb://{lance}", "docs", verify=False)
    (base / "a_file").write_text("not a store")
    (base / "emptydir").mkdir()
    (base / "empty.yaml").write_text("[]\n")
    (base / "broken.yaml").write_text("fields: [\n")
    (base / "unknown_key.yaml").write_text("metadata:\n  genre: {rename: kind}\n")
    (base / "unknown_field.yaml").write_text("fields:\n  nosuchfield: {rename: x}\n")
    (base / "k0.yaml").write_text("verify:\n  k: 0\n")
    bad = base / "badmanifest"
    make_dump(bad, 5, dim=8)
    (bad / "manifest.json").write_text("[]")
    return {
        "src": str(base / "src"),
        "lance": str(lance),
        "tmp": str(base),
        "file": str(base / "a_file"),
        "emptydir": str(base / "emptydir"),
        "empty": str(base / "empty.yaml"),
        "broken": str(base / "broken.yaml"),
        "unknown_key": str(base / "unknown_key.yaml"),
        "unknown_field": str(base / "unknown_field.yaml"),
        "k0": str(base / "k0.yaml"),
        "badmanifest": str(bad),
        "port": str(_closed_port()),
    }


def _run_case(case: Case, store: dict[str, str], json_out: bool) -> tuple[str, Any]:
    args = [a.format(**store) for a in case.args] + (["--json"] if json_out else [])
    ran = cli(*args)
    expected = case.first_line.format(**store)
    shown = f"vecmigrate {' '.join(args)} -> {ran.returncode}\n{ran.stderr}"
    assert ran.returncode == case.code, shown
    assert "Traceback" not in ran.stderr and "unexpected" not in ran.stderr, shown
    lines = ran.stderr.splitlines()
    assert lines and lines[0].startswith("error: "), shown
    assert expected in lines[0], f"{expected!r} not in the first line\n{shown}"
    assert len(lines) >= 2 and lines[1].startswith("hint: ") and len(lines[1]) > 10, shown
    assert ran.stderr.count("error:") == 1, shown
    assert "rerun with --verbose" not in ran.stderr, shown
    if not json_out:
        assert ran.stdout == "", shown
        return lines[0], None
    doc = json.loads(ran.stdout)  # exactly one JSON document
    return lines[0], doc


@pytest.mark.parametrize("name", list(CASES))
def test_error_case(
    name: str, store: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # job files and reports land here
    case = CASES[name]
    first, _ = _run_case(case, store, json_out=False)
    first_json, doc = _run_case(case, store, json_out=True)
    assert first_json == first
    assert set(doc) == {"error"} and set(doc["error"]) == {"type", "message", "hint"}
    assert f"error: {doc['error']['message']}" == first
    assert doc["error"]["hint"] and doc["error"]["type"].isidentifier()


@pytest.mark.parametrize("name", list(CONNECTOR_CASES))
def test_error_case_fixed_in_a_connector(
    name: str, store: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    _run_case(CONNECTOR_CASES[name], store, json_out=False)


def test_the_table_is_large_enough() -> None:
    assert len(CASES) >= 30


def test_verbose_never_asks_to_rerun_with_verbose(
    store: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A bug (an exception no layer expected) shows its traceback under -v, and the hint
    no longer says "rerun with --verbose"; without -v it does."""

    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("planted")

    monkeypatch.setattr(api, "inspect", broken)
    lance = f"lancedb://{store['lance']}"
    quiet = cli("inspect", lance)
    assert quiet.returncode == 1 and "Traceback" not in quiet.stderr
    assert "rerun with --verbose" in quiet.stderr.splitlines()[1]
    loud = cli("inspect", lance, "-v")
    assert loud.returncode == 1
    assert "planted" in loud.stderr and "RuntimeError" in loud.stderr
    hint = [line for line in loud.stderr.splitlines() if line.startswith("hint: ")]
    assert len(hint) == 1 and "--verbose" not in hint[0] and "traceback above" in hint[0]
    as_json = cli("inspect", lance, "-v", "--json")
    assert as_json.json()["error"]["type"] == "RuntimeError"
    # an ordinary error under -v: its own hint, nothing about --verbose
    ordinary = cli("check", f"{store['tmp']}/nope", "-v")
    assert ordinary.returncode == 2 and "--verbose" not in ordinary.stderr
