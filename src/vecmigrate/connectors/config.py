"""Typed connector configuration parsed from a URI's parameters.

Each connector declares ``Config``, a frozen dataclass subclass of ``ConnectorConfig``
whose fields are the ``?parameters`` it understands, typed (``str``, ``int``, ``float``,
``bool``, ``Secret``, or ``... | None``). Parsing refuses an unknown parameter with the
list of known ones, and a value of the wrong type naming the parameter; a ``Secret`` holds
only its reference (``env:NAME`` / ``file:PATH``) and is resolved on use, so printing a
config never shows a secret.
"""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from dataclasses import dataclass
from typing import Any, ClassVar, TypeVar

from vecmigrate.errors import ConfigError
from vecmigrate.uri import ConnectionURI, Secret

C = TypeVar("C", bound="ConnectorConfig")
_TRUE, _FALSE = frozenset({"1", "true", "yes", "on"}), frozenset({"0", "false", "no", "off"})


@dataclass(frozen=True)
class ConnectorConfig:
    """Base of every connector's ``Config``: no parameters."""

    scheme: ClassVar[str] = ""

    @classmethod
    def known(cls) -> list[str]:
        """The parameter names this config accepts."""
        return sorted(f.name for f in dataclasses.fields(cls))

    @classmethod
    def from_uri(cls: type[C], uri: ConnectionURI) -> C:
        """Parse ``uri.params``; ConfigError on an unknown parameter or a bad value."""
        unknown = sorted(set(uri.params) - set(cls.known()))
        if unknown:
            guesses = [
                f"{u!r}: did you mean {close[0]!r}?"
                for u in unknown
                if (close := difflib.get_close_matches(u, cls.known(), n=1, cutoff=0.75))
            ]
            raise ConfigError(
                f"{uri.scheme}:// does not take parameter(s) {', '.join(map(repr, unknown))}"
                + (f" ({' '.join(guesses)})" if guesses else ""),
                hint=f"known parameters: {', '.join(cls.known()) or 'none'}; "
                "write '?' or '&' in a path as %3F / %26",
            )
        hints = typing.get_type_hints(cls)
        values = {
            name: _convert(uri.scheme, name, raw, hints[name]) for name, raw in uri.params.items()
        }
        return cls(**values)


def _convert(scheme: str, name: str, raw: str, hint: Any) -> Any:
    args = typing.get_args(hint)
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        hint = next(a for a in args if a is not type(None))
    try:
        if hint is bool:
            if raw.lower() in _TRUE | _FALSE:
                return raw.lower() in _TRUE
            raise ValueError
        if hint is Secret:
            return Secret(raw, param=name)  # the URI parser refused a literal secret
        return hint(raw)
    except ValueError:
        kind = "1/0, true/false" if hint is bool else getattr(hint, "__name__", str(hint))
        raise ConfigError(f"{scheme}:// parameter {name}={raw!r} is not a valid {kind}") from None


def reveal(secret: Secret | None) -> str | None:
    """The secret's value, or None when the parameter was not given."""
    return None if secret is None else secret.reveal()


__all__ = ["ConnectorConfig", "Secret", "reveal"]
