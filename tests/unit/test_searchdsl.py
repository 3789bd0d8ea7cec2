"""The Elasticsearch/OpenSearch query DSL and bulk-response handling, pinned to the
engines' documented shapes (the conformance suite checks the semantics end to end)."""

from __future__ import annotations

from typing import Any

import pytest

from vecmigrate.connectors.search._filters import SLOTS, check_bulk, query, slot
from vecmigrate.errors import ConfigError, DataError, TransientError
from vecmigrate.filters import parse
from vecmigrate.testing.data import sample_schema

SCHEMA = sample_schema("docs")


def dsl(flt: dict[str, Any]) -> dict[str, Any]:
    return query(parse(flt, SCHEMA))


def test_filters_compile_to_bool_queries_with_exists_guards() -> None:
    assert dsl({"genre": "news"}) == {"term": {"genre": "news"}}
    assert dsl({"tags": {"$in": ["t1", "t2"]}}) == {"terms": {"tags": ["t1", "t2"]}}
    assert dsl({"year": {"$gte": 2010}}) == {"range": {"year": {"gte": 2010}}}
    # $ne/$nin must not match records lacking the field: must_not alone would.
    assert dsl({"genre": {"$ne": "news"}}) == {
        "bool": {
            "filter": [{"exists": {"field": "genre"}}],
            "must_not": [{"term": {"genre": "news"}}],
        }
    }
    assert dsl({"note": {"$exists": False}}) == {
        "bool": {"must_not": [{"exists": {"field": "note"}}]}
    }
    assert dsl({"$or": [{"genre": "art"}, {"published": True}]}) == {
        "bool": {
            "should": [{"term": {"genre": "art"}}, {"term": {"published": True}}],
            "minimum_should_match": 1,
        }
    }
    assert dsl({"$not": {"genre": "news"}}) == {"bool": {"must_not": [{"term": {"genre": "news"}}]}}
    assert query(None) == {"match_all": {}}


def test_values_travel_as_structured_json_not_query_strings() -> None:
    nasty = 'x") OR 1=1 -- \\ "q"'
    assert dsl({"genre": nasty}) == {"term": {"genre": nasty}}


def test_exists_on_a_list_field_is_refused() -> None:
    with pytest.raises(ConfigError, match="cannot tell"):
        dsl({"tags": {"$exists": True}})


def test_slots_are_stable_and_in_range() -> None:
    assert slot("doc-1") == slot("doc-1") and 0 <= slot("doc-1") < SLOTS
    assert slot(7) == slot("7")  # int ids are stored as their string _id


def _item(status: int, error: dict[str, Any] | None = None, action: str = "index") -> Any:
    result: dict[str, Any] = {"_index": "docs", "status": status}
    if error:
        result["error"] = error
    return {action: result}


def test_bulk_item_errors_name_the_record_and_field() -> None:
    got = {
        "errors": True,
        "items": [
            _item(201),
            _item(
                400,
                {
                    "type": "document_parsing_exception",
                    "reason": "[1:15] failed to parse field [year] of type [long] in document "
                    "with id 'b'. Preview of field's value: 'abc'",
                },
            ),
        ],
    }
    with pytest.raises(DataError) as err:
        check_bulk(got, ["a", "b"], "docs", "elasticsearch")
    assert err.value.record_id == "b" and err.value.field == "year"


def test_unit_length_error_blames_the_only_vector_field() -> None:
    reason = "The [dot_product] similarity can only be used with unit-length vectors."
    got = {
        "errors": True,
        "items": [
            _item(
                400,
                {
                    "type": "document_parsing_exception",
                    "reason": "[1:2] failed to parse: " + reason,
                    "caused_by": {"type": "illegal_argument_exception", "reason": reason},
                },
            )
        ],
    }
    with pytest.raises(DataError) as err:
        check_bulk(got, [5], "docs", "elasticsearch", ["emb"])
    assert err.value.record_id == 5 and err.value.field == "emb"


def test_rejected_items_make_the_batch_transient_and_missing_deletes_are_fine() -> None:
    rejected = {"type": "es_rejected_execution_exception", "reason": "queue capacity reached"}
    with pytest.raises(TransientError):
        check_bulk({"errors": True, "items": [_item(429, rejected)]}, ["a"], "docs", "opensearch")
    # A delete of a missing id is a 404 item with result not_found, not a failure.
    gone = {"errors": True, "items": [_item(404, action="delete"), _item(200, action="delete")]}
    check_bulk(gone, ["a", "b"], "docs", "opensearch")


def test_immense_keyword_error_names_the_field() -> None:
    reason = (
        'Document contains at least one immense term in field="genre" (whose UTF8 encoding '
        "is longer than the max length 32766), all of which were skipped."
    )
    got = {
        "errors": True,
        "items": [_item(400, {"type": "illegal_argument_exception", "reason": reason})],
    }
    with pytest.raises(DataError) as err:
        check_bulk(got, ["x"], "docs", "elasticsearch")
    assert err.value.record_id == "x" and err.value.field == "genre"
