"""Encrypted dump parts: AES-256-GCM over each whole Parquet file.

A stored part is ``MAGIC || 96-bit random nonce || ciphertext+tag``; the associated data
is ``collection/file name``, so a part renamed or moved into another collection fails to
decrypt instead of being read as something else. The manifest records the scheme and a
key fingerprint (a salted hash, never the key); sha256 checksums cover the stored bytes.

The key is 32 random bytes given as 64 hex characters or base64, read from a secret
reference (``env:NAME`` / ``file:/path``) and held only in memory.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import hmac
import os
from typing import Any

from vecmigrate.errors import ConfigError

SCHEME = "aes-256-gcm"
MAGIC = b"VMENC\x01\x00\x00"
_NONCE = 12
_FINGERPRINT_SALT = b"vecmigrate-dump-key-fingerprint\x00"
KEY_HINT = (
    "the key is 32 random bytes as 64 hex characters or base64; make one with "
    "python -c 'import secrets; print(secrets.token_hex(32))'"
)


def parse_key(text: str) -> bytes:
    """The 32-byte key in ``text`` (hex or base64). The error never repeats the value."""
    text = text.strip()
    candidates: list[bytes] = []
    with contextlib.suppress(ValueError):
        candidates.append(bytes.fromhex(text))
    for decode in (base64.b64decode, base64.urlsafe_b64decode):
        with contextlib.suppress(binascii.Error, ValueError):
            candidates.append(decode(text.encode()))
    for key in candidates:
        if len(key) == 32:
            return key
    raise ConfigError("the dump encryption key is not a 256-bit key", hint=KEY_HINT)


def fingerprint(key: bytes) -> str:
    """A stable, non-reversible identifier of ``key`` to record in the manifest."""
    return "sha256:" + hashlib.sha256(_FINGERPRINT_SALT + key).hexdigest()[:16]


def part_name_digest(key: bytes, text: bytes) -> str:
    """Keyed hash for part names, so names do not reveal a hash of the ids."""
    return hmac.new(key, text, hashlib.sha256).hexdigest()


def manifest_entry(key: bytes) -> dict[str, Any]:
    """What the manifest says about a collection's encryption."""
    return {
        "scheme": SCHEME,
        "key_fingerprint": fingerprint(key),
        "layout": "magic 'VMENC' + 12-byte nonce + AES-256-GCM(parquet), AAD collection/file",
    }


def is_encrypted(data: bytes) -> bool:
    """Whether stored part bytes are an encrypted envelope."""
    return data[: len(MAGIC)] == MAGIC


def _aesgcm(key: bytes) -> Any:
    try:
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM
    except ImportError:
        raise ConfigError(
            "encrypted dumps need the 'cryptography' package",
            hint="pip install 'vecmigrate[encrypt]'",
        ) from None
    return AESGCM(key)


def encrypt(key: bytes, data: bytes, aad: str) -> bytes:
    """Envelope ``data`` (a whole Parquet file) for storage."""
    nonce = os.urandom(_NONCE)
    sealed: bytes = _aesgcm(key).encrypt(nonce, data, aad.encode())
    return MAGIC + nonce + sealed


def decrypt(key: bytes, data: bytes, aad: str) -> bytes | None:
    """The plaintext, or None when the key is wrong or the bytes were altered."""
    aes = _aesgcm(key)
    from cryptography.exceptions import InvalidTag

    body = data[len(MAGIC) :]
    try:
        plain: bytes = aes.decrypt(body[:_NONCE], body[_NONCE:], aad.encode())
    except InvalidTag:
        return None
    return plain
