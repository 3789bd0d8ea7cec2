"""The embedding function a Chroma collection names: recorded without secrets, and carried
to a Chroma target only onto the vectors it made (the copy itself: tests/e2e/
test_foreign_collections.py)."""

from __future__ import annotations

import pytest

from vecmigrate.model import CollectionSchema, EmbeddingProvenance, VectorField

pytest.importorskip("chromadb")

from vecmigrate.connectors.chroma._embedding import CONFIG_SETTING, carried, described


def test_an_embedding_function_is_not_carried_onto_vectors_it_did_not_make() -> None:
    """Re-embedded with another model, the target's vectors are not the function's: the
    target collection must not name it for the application's queries."""
    config = {
        "embedding_function": {
            "type": "known",
            "name": "openai",
            "config": {"model_name": "text-embedding-3-small", "api_key": "sk-literal"},
        }
    }
    found = described(config, "vector", 8)
    assert found["settings"][CONFIG_SETTING]["config"] == {"model_name": "text-embedding-3-small"}
    assert found["settings"][f"{CONFIG_SETTING}.not_copied"] == ["api_key"]  # never written
    schema = CollectionSchema(
        name="notes",
        vectors=(VectorField(name="vector", dim=8),),
        embedding=found["embedding"],
        engine_settings=found["settings"],
    )
    function = carried(schema)
    assert function is not None and function.name() == "openai"
    assert function.get_config() == {"model_name": "text-embedding-3-small"}
    other = EmbeddingProvenance(vector_field="vector", model="all-MiniLM-L6-v2", dim=8)
    assert carried(schema.replace(embedding=(other,))) is None
    assert carried(schema.replace(vectors=(VectorField(name="vector", dim=16),))) is None
