"""Connection URIs: parsing, secret references (``env:NAME``, ``file:PATH``) and redaction."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, quote, unquote, urlsplit

from vecmigrate.errors import ConfigError

SECRET_PARAMS = frozenset({"password", "api_key", "apikey", "token", "secret", "key"})
REDACTED = "***"


@dataclass(frozen=True)
class Secret:
    """A reference to a secret (``env:NAME`` or ``file:PATH``), resolved by ``reveal``;
    printing it shows the reference, never the value."""

    ref: str
    param: str = field(default="", compare=False)  # the URI parameter, for messages

    def reveal(self) -> str:
        """The secret's value, read from the environment or the file now."""
        where = f" (for {self.param!r})" if self.param else ""
        if self.ref.startswith("env:"):
            value = os.environ.get(self.ref[4:])
            if value is None:
                raise ConfigError(f"environment variable {self.ref[4:]!r}{where} is not set")
            return value
        path = Path(self.ref[5:]).expanduser()
        try:
            return path.read_text().strip()
        except OSError:
            raise ConfigError(f"cannot read secret file{where}: {path}") from None

    def __repr__(self) -> str:
        return f"Secret({self.ref!r})"


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

    # Where the URI names a relative path with no ``//`` (``lancedb:./data``), or a
    # relative path written after ``//`` (``lancedb://./data``): kept verbatim, never
    # passed through host-name parsing (which lower-cases).
    relative: str | None = None

    @classmethod
    def parse(cls, raw: str) -> ConnectionURI:
        """Parse ``scheme://[user@]host[:port]/path?k=v`` or ``scheme:relative/path?k=v``;
        refuse literal secrets and anything that would be dropped silently (a ``#``)."""
        match = _SCHEME.match(raw)
        if match is None or not match["rest"]:
            raise ConfigError(
                f"not a connection URI: {redact(raw)!r}",
                hint="use e.g. chroma:///abs/path, lancedb:./relative/path, dump:///path, "
                "pgvector://user@host/db",
            )
        if "#" in raw:
            raise ConfigError(
                f"'#' in {redact(raw)!r} would start a URI fragment and be dropped",
                hint="write a '#' in a path or value as %23",
            )
        rest = match["rest"]
        if not rest.startswith("//"):
            path, _, query = rest.partition("?")
            return cls._with_params(
                raw, match["scheme"].lower(), query, path=unquote(path), relative=unquote(path)
            )
        parts = urlsplit(raw)
        if parts.password is not None:
            raise ConfigError(
                f"a literal password is not accepted in {redact(raw)!r}",
                hint="pass it as ?password=env:NAME or ?password=file:/path/to/secret",
            )
        try:
            port = parts.port
        except ValueError as exc:
            raise ConfigError(f"bad port in {redact(raw)!r}") from exc
        netloc = parts.netloc.rpartition("@")[2]
        relative = None
        if netloc.startswith((".", "~")):  # scheme://./rel: the "host" is a path start
            relative = unquote(netloc + parts.path)
        return cls._with_params(
            raw,
            parts.scheme.lower(),
            parts.query,
            host=parts.hostname,
            port=port,
            path=unquote(parts.path),
            user=unquote(parts.username) if parts.username else None,
            relative=relative,
        )

    @classmethod
    def _with_params(cls, raw: str, scheme: str, query: str, **parts: Any) -> ConnectionURI:
        params = dict(parse_qsl(query, keep_blank_values=True))
        for key, value in params.items():
            if key.lower() in SECRET_PARAMS and not value.startswith(("env:", "file:")):
                raise ConfigError(
                    f"parameter {key!r} must reference a secret, not contain one",
                    hint=f"use ?{key}=env:NAME or ?{key}=file:/path",
                )
        return cls(raw=raw, scheme=scheme, params=params, **parts)

    def secret(self, name: str) -> str | None:
        """Resolve the secret parameter ``name`` from the environment or a file."""
        ref = self.params.get(name)
        return None if ref is None else Secret(ref, param=name).reveal()

    @property
    def local_path(self) -> Path:
        """The path part as a filesystem path, every character as written:
        ``scheme:///abs``, ``scheme:rel``, ``scheme:./rel`` or ``scheme://./rel``.

        ``scheme://name`` is refused: ``name`` would be read as a host (and lower-cased).
        """
        if self.relative is not None:
            return Path(self.relative).expanduser()
        if (self.host and self.host != "localhost") or self.port is not None:
            netloc = self.raw.split("://", 1)[1].split("/", 1)[0].split("?", 1)[0]
            raise ConfigError(
                f"{redact(self.raw)!r} names a host ({netloc!r}) where {self.scheme} "
                "expects a path",
                hint=f"write {self.scheme}:./{netloc}{self.path} for a relative path or "
                f"{self.scheme}:///abs/path for an absolute one",
            )
        if not self.path:
            raise ConfigError(
                f"{redact(self.raw)!r} names no path",
                hint=f"write {self.scheme}:./relative/path or {self.scheme}:///abs/path",
            )
        return Path(self.path)

    def __str__(self) -> str:
        return redact(self.raw)


def path_uri(scheme: str, path: Path | str) -> str:
    """The URI of a local path, every character kept (``%``, ``?``, ``#`` are escaped)."""
    return f"{scheme}://{quote(str(Path(path).expanduser().resolve()))}"


def uri_scheme(text: str) -> str | None:
    """The scheme ``text`` starts with (``lancedb`` of ``lancedb:./x``), if any."""
    match = _SCHEME.match(text)
    return match["scheme"].lower() if match else None


_SCHEME = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*):(?P<rest>.*)", re.S)
_USERINFO = re.compile(r"(?P<scheme>[a-z0-9+.-]+://)(?P<user>[^:/@]*):(?P<pw>[^@/]*)@", re.I)
_QUERY_SECRET = re.compile(r"(?P<key>(?:" + "|".join(SECRET_PARAMS) + r")=)(?P<val>[^&#]*)", re.I)


def redact(text: str) -> str:
    """Hide passwords and secret parameters in any string that may contain a URI."""
    text = _USERINFO.sub(lambda m: f"{m['scheme']}{m['user']}:{REDACTED}@", text)
    return _QUERY_SECRET.sub(
        lambda m: m["key"] + (m["val"] if m["val"].startswith(("env:", "file:")) else REDACTED),
        text,
    )
