"""Encrypted dumps through the CLI: export --encrypt-key, read back with ?key=, refused
clearly without the key or with another, and the key never written, logged or printed."""

from __future__ import annotations

import hashlib
import json
import secrets
from pathlib import Path

import pytest

from tests.e2e.helpers import cli, json_of, make_dump, run_cli
from vecmigrate.connectors import connect
from vecmigrate.dump import crypto
from vecmigrate.verify.digest import collection_digest

KEY = secrets.token_hex(32)
OTHER = secrets.token_hex(32)


def _leaks(text: str | bytes) -> bool:
    raw = bytes.fromhex(KEY)
    if isinstance(text, str):
        return KEY in text or KEY.upper() in text
    return KEY.encode() in text or raw in text


@pytest.fixture()
def exported(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("VM_DUMP_KEY", KEY)
    monkeypatch.setenv("VM_OTHER_KEY", OTHER)
    make_dump(tmp_path / "src", 600)
    proc = run_cli(
        "export",
        f"dump://{tmp_path / 'src'}",
        "-c",
        "docs",
        "-o",
        "enc",
        "--encrypt-key",
        "env:VM_DUMP_KEY",
        "--batch-rows",
        "10",  # parts coalesce 16 source batches: 4 parts of 160 rows
        "-v",
        "--json",
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    assert json_of(proc)["verified"]
    assert not _leaks(proc.stdout + proc.stderr)
    return tmp_path / "enc"


def test_encrypted_parts_manifest_and_round_trip(exported: Path, tmp_path: Path) -> None:
    manifest = json.loads((exported / "manifest.json").read_text())
    entry = manifest["collections"]["docs"]
    assert entry["encryption"]["scheme"] == "aes-256-gcm"
    assert entry["encryption"]["key_fingerprint"] == crypto.fingerprint(bytes.fromhex(KEY))
    assert len(entry["files"]) >= 3
    for f in entry["files"]:
        stored = (exported / "docs" / f["file"]).read_bytes()
        assert stored.startswith(crypto.MAGIC) and b"PAR1" not in stored[:16]
        assert hashlib.sha256(stored).hexdigest() == f["sha256"]  # over the stored bytes
    pd = pytest.importorskip("pandas")
    with pytest.raises(Exception):  # noqa: B017 - any reader error: the bytes are ciphertext
        pd.read_parquet(exported / "docs")

    uri = f"dump://{exported}?key=env:VM_DUMP_KEY"
    checked = run_cli("check", uri, "--json", cwd=tmp_path)
    assert checked.returncode == 0 and json_of(checked)["ok"], checked.stderr
    lance = f"lancedb://{tmp_path / 'lance'}"
    imported = run_cli("import", uri, lance, "--json", "-v", cwd=tmp_path)
    assert imported.returncode == 0, imported.stderr
    assert json_of(imported)["verified"] and json_of(imported)["rows_written"] == 600
    keyfile = tmp_path / "dump.key"
    keyfile.write_text(KEY + "\n")
    with (
        connect(f"dump://{tmp_path / 'src'}") as src,
        connect(f"dump://{exported}?key=file:{keyfile}") as enc,
        connect(lance) as dst,
    ):
        want = collection_digest(src, "docs")
        assert want.compare(collection_digest(enc, "docs")).equal
        assert want.compare(collection_digest(dst, "docs")).equal
    keyfile.unlink()
    for f in tmp_path.rglob("*"):
        if f.is_file():
            assert not _leaks(f.read_bytes()), f"key found in {f}"
    for p in (checked, imported):
        assert not _leaks(p.stdout + p.stderr)


def test_missing_wrong_and_literal_keys_are_refused_by_name(
    exported: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    part = json.loads((exported / "manifest.json").read_text())["collections"]["docs"]["files"][0]
    name = f"docs/{part['file']}"

    missing = cli("check", str(exported))
    assert missing.returncode == 2 and "Traceback" not in missing.stderr
    assert "is encrypted and no key was given" in missing.stderr and name in missing.stderr

    wrong = cli(
        "import", f"dump://{exported}?key=env:VM_OTHER_KEY", f"lancedb://{tmp_path / 'l'}"
    )  # fmt: skip
    assert wrong.returncode == 2 and "wrong key for part" in wrong.stderr
    assert "docs/part-" in wrong.stderr and OTHER not in wrong.stderr

    literal = cli("export", f"dump://{tmp_path / 'src'}", "-o", "x", "--encrypt-key", KEY)
    assert literal.returncode == 2 and "env:NAME or file:/path" in literal.stderr
    not_a_key = cli("check", f"dump://{exported}?key=env:VM_NOT_A_KEY")
    assert not_a_key.returncode == 2  # unset variable: named, no value printed

    # Altered ciphertext whose checksum was "fixed" up: decryption names the part.
    path = exported / name
    data = bytearray(path.read_bytes())
    data[-5] ^= 1
    path.write_bytes(bytes(data))
    manifest = json.loads((exported / "manifest.json").read_text())
    manifest["collections"]["docs"]["files"][0]["sha256"] = hashlib.sha256(data).hexdigest()
    (exported / "manifest.json").write_text(json.dumps(manifest))
    altered = cli("check", f"dump://{exported}?key=env:VM_DUMP_KEY")
    assert altered.returncode == 2 and f"cannot decrypt part {name}" in altered.stderr
    for p in (missing, wrong, literal, not_a_key, altered):
        assert not _leaks(p.stdout + p.stderr) and "Traceback" not in p.stderr


def test_records_refused_from_an_encrypted_dump_stay_encrypted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import numpy as np
    import pyarrow as pa

    from vecmigrate.errors import ConfigError
    from vecmigrate.pipeline import CopyOptions, copy_collection
    from vecmigrate.pipeline.deadletter import read_dead_letters
    from vecmigrate.records import vectors_to_numpy
    from vecmigrate.testing.data import sample_batch, sample_ids, sample_schema

    monkeypatch.setenv("VM_DUMP_KEY", KEY)
    schema = sample_schema("docs")
    batch = sample_batch(schema)
    vec = vectors_to_numpy(batch.column("vector")).copy()
    vec[7] = np.nan
    batch = batch.set_column(
        batch.schema.get_field_index("vector"),
        "vector",
        pa.FixedSizeListArray.from_arrays(pa.array(vec.reshape(-1)), vec.shape[1]),
    )
    src = connect(f"dump://{tmp_path / 'enc'}?key=env:VM_DUMP_KEY")
    src.create(schema)
    src.upsert("docs", batch)
    src.finalize("docs")
    dst = connect(f"dump://{tmp_path / 'plain'}")
    opts = CopyOptions(job_path=tmp_path / "job.sqlite", dead_letter_dir=tmp_path / "dead")
    result = copy_collection(src, dst, "docs", options=opts)

    assert result.dead_letters == 1
    refused_id = sample_ids(schema.id_type)[7]
    files = list((tmp_path / "dead").iterdir())
    assert files and all(f.name.endswith(".parquet.enc") for f in files)
    assert not any(refused_id.encode() in f.read_bytes() for f in files)
    with pytest.raises(ConfigError, match="encrypted"):
        read_dead_letters(tmp_path / "dead")
    table = read_dead_letters(tmp_path / "dead", key=bytes.fromhex(KEY))
    assert table.column("id").to_pylist() == [refused_id]
    assert table.column("_reason").to_pylist() == ["vector contains NaN or Inf"]
