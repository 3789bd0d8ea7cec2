"""Index creation, mappings and ``_bulk`` writes of the Elasticsearch / OpenSearch
protocol test double (see ``search_server.py``)."""

from __future__ import annotations

import json
import math
import uuid
from typing import Any

from tests.protocol.search_common import (
    _BAD_NAME,
    _CHECKS,
    ApiFailure,
    Index,
    State,
    _parse_json,
    _values,
)


class Documents(State):
    """Index creation and document writes."""

    def _create(self, name: str, settings: dict[str, Any], mappings: dict[str, Any]) -> Index:
        if name in self.indexes:
            uid = self.indexes[name].uuid
            raise ApiFailure(
                400, "resource_already_exists_exception", f"index [{name}/{uid}] already exists"
            )
        if _BAD_NAME.search(name) or name.startswith(("-", "_", "+")) or name in (".", ".."):
            raise ApiFailure(
                400,
                "invalid_index_name_exception",
                f"Invalid index name [{name}], must be lowercase",
            )
        for field, spec in (mappings.get("properties") or {}).items():
            self._check_mapping(field, spec)
        idx = Index(name, settings, json.loads(json.dumps(mappings)))
        self.indexes[name] = idx
        return idx

    def _check_mapping(self, field: str, spec: dict[str, Any]) -> None:
        kind = spec.get("type")
        bad = None
        if kind == "dense_vector":
            if not self.es:
                bad = "No handler for type [dense_vector]"
            elif not 1 <= int(spec.get("dims", 0)) <= 4096:
                bad = (
                    f"The number of dimensions should be in the range [1, 4096] "
                    f"but was [{spec.get('dims')}]"
                )
            elif spec.get("similarity", "cosine") not in (
                "cosine", "dot_product", "l2_norm", "max_inner_product"
            ):  # fmt: skip
                bad = f"Unknown value [{spec.get('similarity')}] for field [similarity]"
            elif (spec.get("index_options") or {}).get("type", "hnsw") not in (
                "hnsw", "int8_hnsw", "int4_hnsw", "bbq_hnsw", "flat", "int8_flat", "int4_flat",
                "bbq_flat", "bbq_disk",
            ):  # fmt: skip
                bad = f"Unknown vector index options type [{spec['index_options'].get('type')}]"
        elif kind == "knn_vector":
            method = spec.get("method") or {}
            if self.es:
                bad = "No handler for type [knn_vector]"
            elif not 1 <= int(spec.get("dimension", 0)) <= 16000:
                bad = f"Dimension value must be in [1, 16000] but was [{spec.get('dimension')}]"
            elif method and method.get("engine", "faiss") not in ("lucene", "faiss", "nmslib"):
                bad = f"Invalid engine [{method.get('engine')}]"
            elif method.get("space_type", "l2") not in ("l2", "cosinesimil", "innerproduct"):
                bad = f"Unable to find space: {method.get('space_type')}"
        elif kind not in (
            None, "keyword", "text", "long", "integer", "double", "float", "boolean", "object",
            "date", "match_only_text",
        ):  # fmt: skip
            bad = f"No handler for type [{kind}] declared on field [{field}]"
        if bad:
            raise ApiFailure(400, "mapper_parsing_exception", f"Failed to parse mapping: {bad}")

    # -- writing -----------------------------------------------------------------------------
    def _bulk(self, default: str | None, body: bytes, query: dict[str, str]) -> dict[str, Any]:
        lines = [ln for ln in body.decode().split("\n") if ln.strip()]
        items: list[dict[str, Any]] = []
        rejections, self.item_rejections = self.item_rejections, 0
        i = 0
        while i < len(lines):
            try:
                action_line = _parse_json(lines[i])
                ((action, meta),) = action_line.items()
            except ValueError as exc:
                raise ApiFailure(
                    400,
                    "illegal_argument_exception",
                    f"Malformed action/metadata line [{i + 1}]: {exc}",
                ) from None
            if action not in ("index", "create", "delete"):
                raise ApiFailure(
                    400,
                    "illegal_argument_exception",
                    f"Malformed action/metadata line [{i + 1}], expected one of [create, "
                    f"delete, index, update] but found [{action}]",
                )
            source = None
            if action != "delete":
                i += 1
                if i >= len(lines):
                    raise ApiFailure(
                        400,
                        "action_request_validation_exception",
                        "Validation Failed: 1: no requests added;",
                    )
                source = lines[i]
            i += 1
            name = meta.get("_index", default)
            rid = str(meta.get("_id") or uuid.uuid4().hex[:20])
            result: dict[str, Any] = {"_index": name, "_id": rid}
            try:
                if rejections > 0:
                    rejections -= 1
                    raise ApiFailure(
                        429,
                        "es_rejected_execution_exception",
                        "rejected execution of coordinating operation: queue capacity reached",
                    )
                status, outcome = self._apply(action, name, rid, source)
                result.update(outcome)
                result["status"] = status
            except ApiFailure as exc:
                result["status"] = exc.status
                result["error"] = {**exc.error(), "index": name}
            items.append({action: result})
        if query.get("refresh") in ("true", "", "wait_for"):
            for idx in self.indexes.values():
                idx.searchable = dict(idx.docs)
        return {
            "took": 1,
            "errors": any("error" in next(iter(it.values())) for it in items),
            "items": items,
        }

    def _apply(
        self, action: str, name: str | None, rid: str, source: str | None
    ) -> tuple[int, dict[str, Any]]:
        if name is None:
            raise ApiFailure(
                400,
                "action_request_validation_exception",
                "Validation Failed: 1: index is missing;",
            )
        idx = self.indexes.get(name) or self._create(name, {}, {})
        shards = {"total": 2, "successful": 1, "failed": 0}
        if action == "delete":
            found = idx.docs.pop(rid, None) is not None
            version = idx.version[rid] = idx.version.get(rid, 0) + 1
            return (200 if found else 404), {
                "_version": version,
                "result": "deleted" if found else "not_found",
                "_shards": shards,
            }
        if action == "create" and rid in idx.docs:
            raise ApiFailure(
                409,
                "version_conflict_engine_exception",
                f"[{rid}]: version conflict, document already exists",
            )
        try:
            doc = _parse_json(source or "")
        except ValueError as exc:
            kind = "document_parsing_exception" if self.es else "mapper_parsing_exception"
            raise ApiFailure(400, kind, f"[1:1] failed to parse: {exc}") from None
        if not isinstance(doc, dict):
            raise ApiFailure(
                400,
                "document_parsing_exception" if self.es else "mapper_parsing_exception",
                "failed to parse, document is empty",
            )
        self._check_doc(idx, rid, doc)
        existed = rid in idx.docs
        idx.docs[rid] = (idx.next_doc, doc)
        idx.next_doc += 1
        version = idx.version[rid] = idx.version.get(rid, 0) + 1
        return (200 if existed else 201), {
            "_version": version,
            "result": "updated" if existed else "created",
            "_shards": shards,
            "_seq_no": idx.next_doc,
            "_primary_term": 1,
        }

    def _check_doc(
        self,
        idx: Index,
        rid: str,
        doc: dict[str, Any],
        props: dict[str, Any] | None = None,
        prefix: str = "",
    ) -> None:
        """Type-check a document against the mapping, mapping new fields dynamically
        (objects recurse into their own properties)."""
        kind = "document_parsing_exception" if self.es else "mapper_parsing_exception"
        props = idx.props if props is None else props
        for name, value in doc.items():
            field = prefix + name
            spec = props.get(name)
            if spec is None:
                if idx.mappings.get("dynamic") in ("strict", "strict_allow_templates"):
                    raise ApiFailure(
                        400,
                        "strict_dynamic_mapping_exception",
                        f"[1:2] mapping set to strict, dynamic introduction of [{field}] "
                        "within [_doc] is not allowed",
                    )
                if idx.mappings.get("dynamic") is False or idx.mappings.get("dynamic") == "false":
                    continue
                sample = next(iter(_values(value)), None)
                if sample is None:
                    continue
                if isinstance(sample, bool):
                    spec = {"type": "boolean"}
                elif isinstance(sample, int):
                    spec = {"type": "long"}
                elif isinstance(sample, float):
                    spec = {"type": "float"}
                elif isinstance(sample, str):
                    spec = {
                        "type": "text",
                        "fields": {"keyword": {"type": "keyword", "ignore_above": 256}},
                    }
                else:
                    spec = {"properties": {}}
                props[name] = spec
            t = spec.get("type", "object")
            if t == "object" and isinstance(value, dict):
                self._check_doc(idx, rid, value, spec.setdefault("properties", {}), field + ".")
                continue
            if t in ("dense_vector", "knn_vector"):
                self._check_vector(kind, field, spec, rid, value)
                continue
            if t == "keyword" and spec.get("index", True) and "ignore_above" not in spec:
                long = next((v for v in _values(value) if len(str(v).encode()) > 32766), None)
                if long is not None:
                    raise ApiFailure(
                        400,
                        "illegal_argument_exception",
                        f'Document contains at least one immense term in field="{field}" '
                        "(whose UTF8 encoding is longer than the max length 32766), all of "
                        "which were skipped.",
                    )
            ok = _CHECKS.get(t)
            if ok is not None and not all(ok(v) for v in _values(value)):
                preview = json.dumps(value)[:20]
                raise ApiFailure(
                    400,
                    kind,
                    f"[1:2] failed to parse field [{field}] of type [{t}] in document with id "
                    f"'{rid}'. Preview of field's value: '{preview}'",
                )

    def _check_vector(
        self, kind: str, field: str, spec: dict[str, Any], rid: str, value: Any
    ) -> None:
        dims = int(spec.get("dims") or spec.get("dimension") or 0)
        if not isinstance(value, list) or not all(
            isinstance(x, int | float) and not isinstance(x, bool) for x in value
        ):
            raise ApiFailure(
                400,
                kind,
                f"[1:2] failed to parse field [{field}] of type [{spec['type']}] in document "
                f"with id '{rid}'",
            )
        msg = None
        sim = (
            spec.get("similarity", "cosine")
            if self.es
            else (spec.get("method") or {}).get("space_type", "l2")
        )
        norm2 = sum(x * x for x in value) if len(value) == dims else 1.0
        if len(value) != dims:
            msg = (
                f"The [dense_vector] field [{field}] in doc [document with id '{rid}'] has a "
                f"different number of dimensions [{len(value)}] than defined in the mapping "
                f"[{dims}]"
                if self.es
                else f"Vector dimension mismatch. Expected: {dims}, Given: {len(value)}"
            )
        elif sim in ("cosine", "cosinesimil") and norm2 == 0:
            msg = (
                "The [cosine] similarity does not support vectors with zero magnitude. "
                f"Preview of invalid vector: {value[:5]}"
                if self.es
                else "zero vector is not supported when space type is [cosinesimil]"
            )
        elif sim == "dot_product" and abs(math.sqrt(norm2) - 1) > 1e-4:
            msg = (
                "The [dot_product] similarity can only be used with unit-length vectors. "
                f"Preview of invalid vector: {value[:5]}"
            )
        if msg is None:
            return
        cause = {"type": "illegal_argument_exception", "reason": msg}
        if self.es:  # ES: "failed to parse: <why>"; OpenSearch names the field
            raise ApiFailure(400, kind, f"[1:2] failed to parse: {msg}", cause)
        preview = json.dumps(value)[:20]
        raise ApiFailure(
            400,
            kind,
            f"failed to parse field [{field}] of type [knn_vector] in document with id "
            f"'{rid}'. Preview of field's value: '{preview}'",
            cause,
        )
