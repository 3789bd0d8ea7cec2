"""Amazon S3 Vectors calls for ``connectors/s3vectors``: the boto3 client, its one error
mapping, and bounded, paged calls on one index (the limits are in ``_records``).

Everything here takes the client and the bucket / index names; connection state and
caching stay in the connector, whose contract calls (which the base class runs inside
``translate_error``) are the only callers.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import boto3  # type: ignore[import-untyped]  # missing: the registry names the extra
import numpy as np
from botocore.config import Config as BotoConfig  # type: ignore[import-untyped]
from botocore.exceptions import (  # type: ignore[import-untyped]
    BotoCoreError,
    ClientError,
    ConnectionError,
    HTTPClientError,
    NoCredentialsError,
    NoRegionError,
    ParamValidationError,
    PartialCredentialsError,
    ProfileNotFound,
)

from vecmigrate.connectors.s3vectors._records import (
    MAX_DELETE_KEYS,
    MAX_GET_KEYS,
    MAX_LIST_PAGE,
    MAX_PUT_VECTORS,
    MAX_REQUEST_BYTES,
)
from vecmigrate.errors import (
    ConfigError,
    DataError,
    TerminalError,
    TransientError,
    VecmigrateError,
)

# Longest JSON text of one float (as botocore writes it: repr, then ", ").
_FLOAT_JSON_BYTES = 26
_TRANSIENT_CODES = frozenset(
    {
        "ThrottlingException",
        "Throttling",
        "TooManyRequestsException",
        "ServiceUnavailableException",
        "ServiceUnavailable",
        "InternalServerException",
        "InternalFailure",
        "InternalError",
        "RequestTimeoutException",
        "RequestTimeout",
        "SlowDown",
    }
)
_ACCESS_CODES = frozenset(
    {
        "AccessDeniedException",
        "AccessDenied",
        "UnrecognizedClientException",
        "InvalidSignatureException",
        "SignatureDoesNotMatch",
        "InvalidClientTokenId",
        "ExpiredTokenException",
        "ExpiredToken",
        "KmsDisabledException",
        "KmsInvalidKeyUsageException",
        "KmsInvalidStateException",
        "KmsNotFoundException",
    }
)


def open_client(
    *,
    region: str | None,
    profile: str | None,
    access_key_id: str | None,
    secret_access_key: str | None,
    session_token: str | None,
    endpoint_url: str | None,
    max_attempts: int,
    timeout: float,
) -> Any:
    """A boto3 ``s3vectors`` client (making one sends no request). Credentials not given
    come from boto3's chain (environment, profile, instance role)."""
    session = boto3.session.Session(
        aws_access_key_id=access_key_id,
        aws_secret_access_key=secret_access_key,
        aws_session_token=session_token,
        region_name=region,
        profile_name=profile,
    )
    config = BotoConfig(
        retries={"mode": "standard", "total_max_attempts": max_attempts},
        connect_timeout=timeout,
        read_timeout=timeout,
        user_agent_extra="vecmigrate",
        max_pool_connections=16,
    )
    return session.client("s3vectors", endpoint_url=endpoint_url, config=config)


def error_code(exc: Exception) -> str | None:
    """The service's error code of a ClientError (None for any other exception)."""
    if isinstance(exc, ClientError):
        return str(exc.response.get("Error", {}).get("Code") or "") or None
    return None


def translate_error(exc: Exception, what: str) -> VecmigrateError | None:
    """S3 Vectors' errors: throttling, 408/429/5xx and connection failures are transient;
    access, credential, region and KMS problems and missing buckets / indexes are the
    user's to fix (ConfigError); ValidationException of a write is a DataError, other
    refusals terminal; anything else is not the client's."""
    if isinstance(exc, ClientError):
        err = exc.response.get("Error", {})
        code = str(err.get("Code") or "")
        status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)
        msg = f"{what}: {code or f'HTTP {status}'}: {err.get('Message') or exc}"
        if code in _TRANSIENT_CODES or status in (408, 429) or status >= 500:
            return TransientError(msg)
        if code in _ACCESS_CODES or status in (401, 403):
            return ConfigError(
                msg,
                hint="check the credentials, region and the IAM / KMS permissions for "
                "s3vectors:* on this bucket and index",
            )
        if code == "NotFoundException" or status == 404:
            return ConfigError(msg, hint="check the bucket name, the index and the region")
        if code == "ServiceQuotaExceededException":
            return ConfigError(msg, hint="raise the S3 Vectors quota or free capacity first")
        if code == "ValidationException" and (" upsert" in what or "putting" in what):
            return DataError(msg)
        return TerminalError(msg)
    if isinstance(exc, (NoCredentialsError, PartialCredentialsError)):
        return ConfigError(
            f"{what}: no usable AWS credentials ({exc})",
            hint="add ?access_key_id=env:NAME&secret_access_key=env:NAME (or ?profile=), "
            "or configure the AWS credential chain",
        )
    if isinstance(exc, NoRegionError):
        return ConfigError(f"{what}: no AWS region", hint="add ?region=us-east-1 (for example)")
    if isinstance(exc, ProfileNotFound):
        return ConfigError(f"{what}: {exc}", hint="check ?profile= and ~/.aws/config")
    if isinstance(exc, (ConnectionError, HTTPClientError)):
        return TransientError(f"{what}: {exc}")
    if isinstance(exc, ParamValidationError):
        return TerminalError(f"{what}: the client refused the request: {exc}")
    if isinstance(exc, BotoCoreError):
        return TerminalError(f"{what}: {exc}")
    return None


# -- indexes ----------------------------------------------------------------------------------
def list_index_names(client: Any, bucket: str) -> list[str]:
    """Every index of the bucket (ListIndexes, 500 a page)."""
    names: list[str] = []
    token: str | None = None
    while True:
        kwargs: dict[str, Any] = {"vectorBucketName": bucket, "maxResults": 500}
        if token:
            kwargs["nextToken"] = token
        page = client.list_indexes(**kwargs)
        names += [i["indexName"] for i in page.get("indexes", [])]
        token = page.get("nextToken")
        if not token:
            return names


def get_index(client: Any, bucket: str, index: str) -> dict[str, Any] | None:
    """GetIndex's description of ``index`` (None: there is no such index)."""
    try:
        return dict(client.get_index(vectorBucketName=bucket, indexName=index)["index"])
    except ClientError as exc:
        if error_code(exc) == "NotFoundException":  # the index, or its bucket
            return None
        raise


def index_tags(client: Any, arn: str) -> dict[str, str] | None:
    """The index's tags (None: the caller may not read them)."""
    try:
        return dict(client.list_tags_for_resource(resourceArn=arn).get("tags", {}))
    except ClientError as exc:
        if error_code(exc) in _ACCESS_CODES:
            return None
        raise


# -- vectors ----------------------------------------------------------------------------------
def list_page(
    client: Any,
    bucket: str,
    index: str,
    *,
    segment: tuple[int, int] | None,
    token: str | None,
    limit: int,
    data: bool,
    metadata: bool,
) -> tuple[list[dict[str, Any]], str | None]:
    """One ListVectors page of a segment (``(segment, count)``; None: the whole index)
    and the token after it (None: the segment is done)."""
    kwargs: dict[str, Any] = {
        "vectorBucketName": bucket,
        "indexName": index,
        "maxResults": max(1, min(limit, MAX_LIST_PAGE)),
        "returnData": data,
        "returnMetadata": metadata,
    }
    if segment is not None and segment[1] > 1:
        kwargs["segmentIndex"], kwargs["segmentCount"] = segment
    if token:
        kwargs["nextToken"] = token
    page = client.list_vectors(**kwargs)
    return list(page.get("vectors", [])), page.get("nextToken") or None


def iter_keys(client: Any, bucket: str, index: str) -> Iterator[list[dict[str, Any]]]:
    """Every vector of the index, keys only, 1,000 a page."""
    token: str | None = None
    while True:
        items, token = list_page(
            client, bucket, index, segment=None, token=token, limit=MAX_LIST_PAGE,
            data=False, metadata=False,
        )  # fmt: skip
        yield items
        if token is None:
            return


def get_vectors(client: Any, bucket: str, index: str, keys: Sequence[str]) -> list[dict[str, Any]]:
    """The vectors with these keys, with data and metadata (missing keys are absent)."""
    out: list[dict[str, Any]] = []
    for start in range(0, len(keys), MAX_GET_KEYS):
        res = client.get_vectors(
            vectorBucketName=bucket,
            indexName=index,
            keys=list(keys[start : start + MAX_GET_KEYS]),
            returnData=True,
            returnMetadata=True,
        )
        out += res.get("vectors", [])
    return out


def put_vectors(
    client: Any,
    bucket: str,
    index: str,
    keys: Sequence[str],
    matrix: np.ndarray,
    metas: Sequence[tuple[dict[str, Any], int]],
) -> None:
    """PutVectors in calls of at most 500 vectors and under the 20 MiB payload limit."""
    per_vector = matrix.shape[1] * _FLOAT_JSON_BYTES + 96
    chunk: list[dict[str, Any]] = []
    size = 0
    for i, key in enumerate(keys):
        rec: dict[str, Any] = {"key": key, "data": {"float32": matrix[i].tolist()}}
        md, md_bytes = metas[i]
        if md:
            rec["metadata"] = md
        need = per_vector + 2 * len(key.encode()) + 2 * md_bytes  # escapes: \uXXXX at worst
        if chunk and (len(chunk) == MAX_PUT_VECTORS or size + need > MAX_REQUEST_BYTES - 65536):
            client.put_vectors(vectorBucketName=bucket, indexName=index, vectors=chunk)
            chunk, size = [], 0
        chunk.append(rec)
        size += need
    if chunk:
        client.put_vectors(vectorBucketName=bucket, indexName=index, vectors=chunk)


def delete_vectors(client: Any, bucket: str, index: str, keys: Sequence[str]) -> None:
    """DeleteVectors in calls of at most 500 keys (missing keys are a no-op)."""
    for start in range(0, len(keys), MAX_DELETE_KEYS):
        client.delete_vectors(
            vectorBucketName=bucket,
            indexName=index,
            keys=list(keys[start : start + MAX_DELETE_KEYS]),
        )
