"""``engines``: every connector this installation knows, its extra and its parameters
(read from the connector's typed ``Config``, from source when its client is absent)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vecmigrate.connectors.registry import REGISTRY, known_schemes
from vecmigrate.errors import ConfigError


@dataclass(frozen=True)
class EngineParam:
    """One ``?parameter`` a scheme takes, from its connector's ``Config`` dataclass."""

    name: str
    type: str
    default: Any
    required: bool
    secret: bool
    description: str | None

    def to_json(self) -> dict[str, Any]:
        """JSON form."""
        return dict(self.__dict__)


@dataclass(frozen=True)
class EngineInfo:
    """One URI scheme: whether its client is installed (else the extra that installs it),
    how its storage is located, and the parameters it takes (None: the connector could not
    be loaded, so its ``Config`` is unknown here)."""

    scheme: str
    installed: bool
    extra: str | None
    storage: str
    default_port: int | None
    params: tuple[EngineParam, ...] | None
    missing: str | None = None

    @property
    def ok(self) -> bool:
        """The scheme can be used as installed."""
        return self.installed

    @property
    def install(self) -> str | None:
        """The command that installs the client (None: installed, or nothing to install)."""
        if self.installed or not self.extra:
            return None
        return f"pip install 'vecmigrate[{self.extra}]'"

    def to_json(self) -> dict[str, Any]:
        """JSON form (docs/cli-json.md)."""
        return {
            "scheme": self.scheme,
            "installed": self.installed,
            "extra": self.extra,
            "install": self.install,
            "storage": self.storage,
            "default_port": self.default_port,
            "params": None if self.params is None else [p.to_json() for p in self.params],
        }


def _type_name(hint: Any) -> tuple[str, bool]:
    """(the type of a Config field as a user writes it, whether it is a secret)."""
    import types
    import typing

    from vecmigrate.uri import Secret as _Secret

    args = typing.get_args(hint)
    optional = typing.get_origin(hint) in (typing.Union, types.UnionType) and type(None) in args
    if optional:
        hint = next(a for a in args if a is not type(None))
    if hint is _Secret:
        return "secret (env:NAME or file:PATH)", True
    return getattr(hint, "__name__", str(hint)), False


def _field_notes(cls: type) -> dict[str, str]:
    """Each field's comment (the ``#`` lines above it) or docstring (the string below it)
    in the source of ``cls`` and its bases: what the connector says of the parameter."""
    import inspect as _inspect
    import re

    notes: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        try:
            lines = _inspect.getsource(klass).splitlines()
        except (OSError, TypeError):
            continue
        comment: list[str] = []
        for i, line in enumerate(lines):
            text = line.strip()
            if text.startswith("#"):
                comment.append(text.lstrip("#").strip())
                continue
            m = re.match(r"^\s{4}(\w+)\s*:[^=]", line)
            if m and not text.startswith(("def ", "@")):
                below = lines[i + 1].strip() if i + 1 < len(lines) else ""
                doc = below.strip("\"'") if below[:3] in ('"""', "'''") else ""
                note = " ".join(comment) or doc
                if note:
                    notes[m.group(1)] = note
            comment = []
    return notes


def _params_of(config: type) -> tuple[EngineParam, ...]:
    import dataclasses
    import typing

    hints = typing.get_type_hints(config)
    notes = _field_notes(config)
    params = []
    for f in dataclasses.fields(config):
        kind, secret = _type_name(hints[f.name])
        required = f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        default = None if required or f.default is dataclasses.MISSING else f.default
        described = f.metadata.get("help") or f.metadata.get("description") or notes.get(f.name)
        params.append(EngineParam(f.name, kind, default, required, secret, described))
    return tuple(params)


def _class_in_source(module: str, name: str) -> tuple[Any, list[str], Any] | None:
    """(the ``ast.ClassDef`` of ``name`` in ``module``'s source, its lines, the module's
    tree), read without importing ``module`` (whose engine client may be missing)."""
    import ast
    from importlib.util import find_spec

    try:
        spec = find_spec(module)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.origin or not spec.origin.endswith(".py"):
        return None
    text = Path(spec.origin).read_text(encoding="utf-8")
    tree = ast.parse(text)
    for node in tree.body:
        if isinstance(node, ast.ClassDef) and node.name == name:
            return node, text.splitlines(), tree
    return None


def _source_params(module: str, cls_name: str, depth: int = 0) -> list[EngineParam] | None:
    """The parameters of the ``Config`` of connector ``cls_name`` in ``module``, read from
    the source (bases followed through the module's imports); None when not found."""
    import ast

    found = _class_in_source(module, cls_name)
    if found is None or depth > 4:
        return None
    node, lines, tree = found
    if depth == 0:  # the connector class: its ``Config = XConfig``
        config = next(
            (
                a.value.id
                for a in node.body
                if isinstance(a, ast.Assign)
                and isinstance(a.value, ast.Name)
                and any(isinstance(t, ast.Name) and t.id == "Config" for t in a.targets)
            ),
            None,
        )
        if config is not None:
            return _source_params(module, config, 1)
        for base in node.bases:  # a connector inheriting its Config (MilvusLiteConnector)
            if isinstance(base, ast.Name) and base.id != "Connector":
                return _source_params(module, base.id, 0)
        return []  # the base's ConnectorConfig: no parameters
    params: list[EngineParam] = []
    for base in node.bases:
        if not isinstance(base, ast.Name) or base.id == "ConnectorConfig":
            continue
        where = next(
            (
                imp.module
                for imp in tree.body
                if isinstance(imp, ast.ImportFrom)
                and imp.module
                and any((a.asname or a.name) == base.id for a in imp.names)
            ),
            module,
        )
        inherited = _source_params(where, base.id, depth + 1)
        if inherited is None:
            return None
        params += inherited
    for item in node.body:
        if not (isinstance(item, ast.AnnAssign) and isinstance(item.target, ast.Name)):
            continue
        annotation = ast.unparse(item.annotation)
        if annotation.startswith("ClassVar"):
            continue
        above: list[str] = []
        for line in reversed(lines[: item.lineno - 1]):
            if not line.strip().startswith("#"):
                break
            above.insert(0, line.strip().lstrip("#").strip())
        kinds = [k.strip() for k in annotation.split("|") if k.strip() != "None"]
        secret = kinds == ["Secret"]
        kind = "secret (env:NAME or file:PATH)" if secret else " | ".join(kinds)
        try:
            default = ast.literal_eval(item.value) if item.value is not None else None
        except ValueError:
            default = ast.unparse(item.value) if item.value is not None else None
        name = item.target.id
        params = [p for p in params if p.name != name]
        params.append(
            EngineParam(name, kind, default, item.value is None, secret, " ".join(above) or None)
        )
    return params


def engines() -> tuple[EngineInfo, ...]:
    """Every URI scheme (built in and from plug-ins), sorted: installed or the extra that
    installs it, storage kind, default port and each URI parameter with its type."""
    from vecmigrate.connectors.registry import connector_class, scheme_info

    found = []
    for scheme in sorted(known_schemes()):
        extra = REGISTRY[scheme].extra if scheme in REGISTRY else None
        try:
            cls = connector_class(scheme)
        except ConfigError as exc:
            info = REGISTRY.get(scheme)
            read = _source_params(info.module, info.cls) if info else None
            found.append(
                EngineInfo(
                    scheme,
                    False,
                    extra,
                    info.storage if info else "unknown",
                    info.default_port if info else None,
                    None if read is None else tuple(read),
                    exc.message,
                )
            )
            continue
        info = scheme_info(scheme)
        found.append(
            EngineInfo(scheme, True, extra, info.storage, info.default_port, _params_of(cls.Config))
        )
    return tuple(found)
