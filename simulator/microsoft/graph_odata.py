"""Graph's wire conventions for the Microsoft simulator: requests and responses as plain data,
the error body, and the OData query options ($select, $top, $filter, $skiptoken paging).
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import re
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, quote, urlencode

from simulator.microsoft.graph_schema import PROPERTIES

JSON_TYPE = "application/json;odata.metadata=minimal;odata.streaming=true;IEEE754Compatible=false"
MAX_PAGE = 999
DEFAULT_PAGE = 100
_QUERY_OPTIONS = frozenset({"$select", "$top", "$skiptoken", "$filter", "$expand"})
_FILTER = re.compile(r"^\s*(\w+)\s+eq\s+(?:'((?:[^']|'')*)'|(true|false|null))\s*$")


@dataclass
class GraphRequest:
    """One Graph call, top-level or inside a $batch: `path` is after the version, no query."""

    method: str
    version: str
    path: str
    query: dict[str, str] = field(default_factory=dict)
    body: Any = None
    client_request_id: str = ""
    base: str = ""  # the simulator's base URL, for @odata.context and nextLink

    @property
    def segments(self) -> list[str]:
        return [s for s in self.path.split("/") if s]

    @property
    def full_path(self) -> str:
        """The versioned path and query, as a request log shows it."""
        q = encode_query(self.query)
        return f"/{self.version}{self.path}" + (f"?{q}" if q else "")


@dataclass
class GraphResponse:
    status: int
    body: dict[str, Any] | None = None
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Caller:
    """Who a valid access token says is calling."""

    app_id: str
    service_principal_id: str
    roles: frozenset[str]


class GraphError(Exception):
    """Raised anywhere in a Graph handler; becomes Graph's error body."""

    def __init__(
        self, status: int, code: str, message: str, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers or {}


def error_body(code: str, message: str, client_request_id: str) -> dict[str, Any]:
    return {
        "error": {
            "code": code,
            "message": message,
            "innerError": {
                "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S"),
                "request-id": str(uuid.uuid4()),
                "client-request-id": client_request_id,
            },
        }
    }


def error_response(err: GraphError, client_request_id: str) -> GraphResponse:
    return GraphResponse(
        err.status, error_body(err.code, err.message, client_request_id), err.headers
    )


def bad_request(message: str, code: str = "BadRequest") -> GraphError:
    return GraphError(400, code, message)


def not_found(object_id: str) -> GraphError:
    return GraphError(
        404,
        "Request_ResourceNotFound",
        f"Resource '{object_id}' does not exist or one of its queried reference-property objects"
        " are not present.",
    )


def forbidden() -> GraphError:
    return GraphError(
        403, "Authorization_RequestDenied", "Insufficient privileges to complete the operation."
    )


def require(caller: Caller, allowed: tuple[str, ...]) -> None:
    """403 unless the token carries one of the application permissions that allow the call."""
    if not caller.roles.intersection(allowed):
        raise forbidden()


def ok(body: dict[str, Any]) -> GraphResponse:
    return GraphResponse(200, body)


def no_content() -> GraphResponse:
    return GraphResponse(204)


PAYLOAD_ERROR = (
    "Unable to read JSON request payload. Please ensure Content-Type header is set and payload "
    "is of valid JSON format."
)


def patch_body(req: GraphRequest, allowed: set[str]) -> dict[str, Any]:
    """A PATCH body: a non-empty JSON object of writable properties."""
    if not isinstance(req.body, dict) or not req.body:
        raise bad_request(PAYLOAD_ERROR)
    for key in req.body:
        if key not in allowed:
            raise bad_request(f"Invalid property '{key}' in the request body.")
    return req.body


def parse_query(raw: str) -> dict[str, str]:
    """Query options of a Graph URL; unknown `$` options and repeats are errors, as in Graph."""
    result: dict[str, str] = {}
    for key, value in parse_qsl(raw, keep_blank_values=True):
        if key in result:
            raise bad_request(f"Query option '{key}' was specified more than once.")
        if key.startswith("$") and key not in _QUERY_OPTIONS:
            raise bad_request(f"Query option '{key}' is not supported on this resource.")
        result[key] = value
    return result


def encode_query(query: dict[str, str]) -> str:
    return urlencode(query, safe="$,'()=:", quote_via=quote)


def _type_name(entity_type: str) -> str:
    return f"microsoft.graph.{entity_type}"


def selection(query: dict[str, str], entity_type: str) -> list[str] | None:
    """The properties `$select` asks for (validated), or None without `$select`."""
    raw = query.get("$select")
    if raw is None:
        return None
    names = [n.strip() for n in raw.split(",") if n.strip()]
    if not names:
        raise bad_request("Invalid $select: no property given.")
    known = PROPERTIES[entity_type]
    for name in names:
        if name not in known:
            raise bad_request(
                "Parsing OData Select and Expand failed: Could not find a property named "
                f"'{name}' on type '{_type_name(entity_type)}'."
            )
    return names


def project(
    entity: dict[str, Any], select: list[str] | None, default: Iterable[str] | None = None
) -> dict[str, Any]:
    """An entity as Graph returns it: the selected (or default) properties, in that order."""
    names = select if select is not None else default
    if names is None:
        return dict(entity)
    return {name: entity.get(name) for name in names}


def context_url(base: str, version: str, context: str, select: list[str] | None) -> str:
    suffix = f"({','.join(select)})" if select else ""
    return f"{base}/{version}/$metadata#{context}{suffix}"


def apply_filter(
    items: list[dict[str, Any]], query: dict[str, str], entity_type: str, filterable: set[str]
) -> list[dict[str, Any]]:
    """`$filter=<property> eq '<value>'`, the only form the bot sends."""
    raw = query.get("$filter")
    if raw is None:
        return items
    match = _FILTER.match(raw)
    if not match:
        raise bad_request(f"Invalid filter clause: {raw}", "Request_UnsupportedQuery")
    name, text, literal = match.groups()
    if name not in PROPERTIES[entity_type]:
        raise bad_request(
            f"Could not find a property named '{name}' on type '{_type_name(entity_type)}'."
        )
    if name not in filterable:
        raise bad_request(
            f"Unsupported or invalid query filter clause specified for property '{name}' of "
            f"resource '{entity_type}'.",
            "Request_UnsupportedQuery",
        )
    value: Any = (
        text.replace("''", "'") if text is not None else {"true": True, "false": False}.get(literal)
    )
    if isinstance(value, str):
        return [i for i in items if str(i.get(name, "")).lower() == value.lower()]
    return [i for i in items if i.get(name) == value]


def page_size(query: dict[str, str]) -> int:
    raw = query.get("$top")
    if raw is None:
        return DEFAULT_PAGE
    try:
        top = int(raw)
    except ValueError:
        raise bad_request(f"Invalid page size specified: '{raw}'.") from None
    if not 1 <= top <= MAX_PAGE:
        raise bad_request(
            f"Invalid page size specified: '{raw}'. Must be between 1 and {MAX_PAGE} inclusive.",
            "Request_BadRequest",
        )
    return top


def _skiptoken(last_id: str) -> str:
    return base64.urlsafe_b64encode(f"sim1:{last_id}".encode()).decode().rstrip("=")


def _after(token: str) -> str:
    try:
        text = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode()
    except (binascii.Error, UnicodeDecodeError):
        text = ""
    if not text.startswith("sim1:"):
        raise bad_request("Invalid skip token.", "Request_BadRequest")
    return text[5:]


def page(
    items: list[dict[str, Any]],
    req: GraphRequest,
    *,
    context: str,
    entity_type: str,
    default: Iterable[str] | None = None,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """One page of a collection, ordered by id, with an absolute `@odata.nextLink` if more.

    The skip token remembers the last id served, so deletions between pages skip nobody.
    """
    select = selection(req.query, entity_type)
    top = page_size(req.query)
    ordered = sorted(items, key=lambda i: str(i["id"]))
    token = req.query.get("$skiptoken")
    if token is not None:
        after = _after(token)
        ordered = [i for i in ordered if str(i["id"]) > after]
    chunk = ordered[:top]
    base = req.base
    body: dict[str, Any] = {"@odata.context": context_url(base, req.version, context, select)}
    if len(ordered) > top:
        query = {k: v for k, v in req.query.items() if k != "$skiptoken"}
        query["$skiptoken"] = _skiptoken(str(chunk[-1]["id"]))
        body["@odata.nextLink"] = f"{base}/{req.version}{req.path}?{encode_query(query)}"
    body["value"] = [{**(extra or {}), **project(i, select, default)} for i in chunk]
    return body
