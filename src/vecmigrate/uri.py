"""Connection URIs: parsing, secret references (``env:NAME``, ``file:PATH``) and redaction."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qsl, unquote, urlsplit

from vecmigrate.errors import ConfigError

SECRET_PARAMS = frozenset({"password", "api_key", "apikey", "token", "secret", "key"})
REDACTED = "***"


@dataclass(frozen=True)
class ConnectionURI:
    """A parsed connection URI; secrets stay references until ``secret()`` resolves them."""

    raw: str
    scheme: str
    host: str | None = None
    port: int | None = None
    path: str = ""
    user: str | None = None
    params: dict[str, str] = field(default_factory=dict)

    @classmethod
    def parse(cls, raw: str) -> ConnectionURI:
        """Parse ``scheme://[user@]host[:port]/path?k=v``; refuse literal secrets."""
        if "://" not in raw:
            raise ConfigError(
                f"not a connection URI: {redact(raw)!r}",
                hint="use e.g. chroma:///path, lancedb:///path, dump:///path, pgvector://user@host/db",
            )
        parts = urlsplit(raw)
        if parts.password is not None:
            raise ConfigError(
                f"a literal password is not accepted in {redact(raw)!r}",
                hint="pass it as ?password=env:NAME or ?password=file:/path/to/secret",
            )
        params = dict(parse_qsl(parts.query, keep_blank_values=True))
        for key, value in params.items():
            if key.lower() in SECRET_PARAMS and not value.startswith(("env:", "file:")):
                raise ConfigError(
                    f"parameter {key!r} must reference a secret, not contain one",
                    hint=f"use ?{key}=env:NAME or ?{key}=file:/path",
                )
        try:
            port = parts.port
        except ValueError as exc:
            raise ConfigError(f"bad port in {redact(raw)!r}") from exc
        return cls(
            raw=raw,
            scheme=parts.scheme.lower(),
            host=parts.hostname,
            port=port,
            path=unquote(parts.path),
            user=unquote(parts.username) if parts.username else None,
            params=params,
        )

    def secret(self, name: str) -> str | None:
        """Resolve the secret parameter ``name`` from the environment or a file."""
        ref = self.params.get(name)
        if ref is None:
            return None
        if ref.startswith("env:"):
            var = ref[4:]
            value = os.environ.get(var)
            if value is None:
                raise ConfigError(f"environment variable {var!r} (for {name!r}) is not set")
            return value
        path = Path(ref[5:]).expanduser()
        try:
            return path.read_text().strip()
        except OSError as exc:
            raise ConfigError(f"cannot read secret file for {name!r}: {path}") from exc

    @property
    def local_path(self) -> Path:
        """The path part as a filesystem path (``scheme:///abs`` or ``scheme://./rel``)."""
        if self.host and self.host not in ("", "localhost"):
            return Path(self.host + self.path)
        return Path(self.path)

    def __str__(self) -> str:
        return redact(self.raw)


_USERINFO = re.compile(r"(?P<scheme>[a-z0-9+.-]+://)(?P<user>[^:/@]*):(?P<pw>[^@/]*)@", re.I)
_QUERY_SECRET = re.compile(r"(?P<key>(?:" + "|".join(SECRET_PARAMS) + r")=)(?P<val>[^&#]*)", re.I)


def redact(text: str) -> str:
    """Hide passwords and secret parameters in any string that may contain a URI."""
    text = _USERINFO.sub(lambda m: f"{m['scheme']}{m['user']}:{REDACTED}@", text)
    return _QUERY_SECRET.sub(
        lambda m: m["key"] + (m["val"] if m["val"].startswith(("env:", "file:")) else REDACTED),
        text,
    )
