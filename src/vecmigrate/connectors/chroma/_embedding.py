"""The embedding function a Chroma collection names in its configuration (chromadb 1.x):
read as JSON (building it would want the application's API key), recorded with the schema,
and written into a Chroma target's configuration, so an application that opens the
target with ``get_collection(name)`` embeds its query texts as it did on the source."""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from vecmigrate.errors import ConfigError
from vecmigrate.model import CollectionSchema, EmbeddingProvenance
from vecmigrate.uri import SECRET_PARAMS

# chromadb builds the function a collection's configuration names whenever it reads the
# collection, and warns when it cannot (no API key here). vecmigrate never embeds with it:
# the expected case, not shown (a filter, not catch_warnings: that is not thread-safe).
warnings.filterwarnings(
    "ignore", message="Could not reconstruct embedding function", module=r"chromadb\."
)

NAME_SETTING = "embedding_function"  # what inspect shows: "openai (text-embedding-3-small)"
CONFIG_SETTING = "chroma.embedding_function"  # the configuration's entry, as stored


def _label(entry: dict[str, Any]) -> str:
    model = (entry.get("config") or {}).get("model_name")
    return f"{entry.get('name')}" + (f" ({model})" if model else "")


def _is_secret(key: str) -> bool:
    # chromadb keeps the *name* of a key's environment variable (api_key_env_var), never
    # the key; anything else that looks like a secret is left behind, not copied.
    words = key.lower()
    parts = {words, *words.split("_")}  # api_key, apiKey, access_token; not max_tokens
    return not words.endswith("_env_var") and bool(parts & SECRET_PARAMS)


def described(config: dict[str, Any], vector: str, dim: int) -> dict[str, Any]:
    """Schema fields for the embedding function ``config`` (a collection's stored
    configuration) names: ``engine_settings`` entries and the ``embedding`` provenance."""
    entry = config.get("embedding_function")
    if not isinstance(entry, dict) or entry.get("type") != "known" or not entry.get("name"):
        return {"settings": {}, "embedding": ()}
    settings = dict(entry.get("config") or {})
    left = sorted(k for k in settings if _is_secret(k))
    kept = {"type": "known", "name": entry["name"]}
    kept["config"] = {k: v for k, v in settings.items() if k not in left}
    label = _label(entry)
    out: dict[str, Any] = {NAME_SETTING: label, CONFIG_SETTING: kept}
    if left:
        out[f"{CONFIG_SETTING}.not_copied"] = left
    provenance = EmbeddingProvenance(vector_field=vector, model=f"chroma:{label}", dim=dim)
    return {"settings": out, "embedding": (provenance,)}


def carried(schema: CollectionSchema) -> Any | None:
    """The source's embedding function to write into a Chroma target's configuration:
    when the schema records one and its vector field still holds what that function
    made (not re-embedded, same dimension); else None."""
    entry = schema.engine_settings.get(CONFIG_SETTING)
    if not isinstance(entry, dict) or not schema.vectors:
        return None
    v = schema.vector
    model = f"chroma:{_label(entry)}"
    if not any(
        e.vector_field == v.name and e.model == model and e.dim == v.dim for e in schema.embedding
    ):
        return None
    return _stored_function(str(entry["name"]), dict(entry.get("config") or {}))


def _stored_function(name: str, config: dict[str, Any]) -> Any:
    """An object chromadb serialises as embedding function ``name`` with ``config``; it
    never embeds (vecmigrate writes stored embeddings)."""

    class StoredEmbeddingFunction:
        """The source collection's embedding function, as its configuration names it."""

        @classmethod
        def name(cls) -> str:
            return name

        def is_legacy(self) -> bool:
            return False

        def get_config(self) -> dict[str, Any]:
            return config

        def default_space(self) -> str:
            return "cosine"

        def supported_spaces(self) -> list[str]:
            return ["cosine", "l2", "ip"]

        def __call__(self, input: Any) -> Any:
            raise ConfigError(
                f"vecmigrate does not embed with {name!r}; it copies stored embeddings"
            )

    return StoredEmbeddingFunction()


@contextmanager
def registry_kept(function: Any | None) -> Iterator[None]:
    """Create a collection with ``function`` in its configuration: chromadb registers the
    function's class under its name while serialising it; the real class (an
    application's in this process) is put back after."""
    if function is None:
        yield
        return
    from chromadb.utils import embedding_functions as known

    registry: dict[str, Any] = known.known_embedding_functions
    name = function.name()
    had, before = name in registry, registry.get(name)
    try:
        yield
    finally:
        if had:
            registry[name] = before
        else:
            registry.pop(name, None)
