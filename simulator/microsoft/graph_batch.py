"""Graph JSON batching in the simulator: a $batch body validated as Graph validates it, then
its sub-requests run in order, each through the whole pipeline (faults, write gate, throttling),
so a 200 batch can carry 429s with their own Retry-After.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import unquote

from simulator.microsoft.graph_odata import (
    JSON_TYPE,
    GraphError,
    GraphRequest,
    GraphResponse,
    bad_request,
    error_body,
    error_response,
    parse_query,
)

MAX_BATCH = 20
_METHODS = frozenset({"GET", "POST", "PATCH", "PUT", "DELETE"})

Serve = Callable[[GraphRequest], Awaitable[GraphResponse]]
Record = Callable[[str, str, int], None]  # method, versioned path, status


def validate_batch(body: Any) -> list[dict[str, Any]]:
    """The batch's requests, or the 400 Graph gives the whole batch before running any of it."""
    invalid = bad_request("Invalid batch payload format.")
    if not isinstance(body, dict) or not isinstance(body.get("requests"), list):
        raise invalid
    items: list[dict[str, Any]] = body["requests"]
    if not items:
        raise invalid
    if len(items) > MAX_BATCH:
        raise bad_request(f"The number of requests in a batch exceeds the limit of {MAX_BATCH}.")
    seen: set[str] = set()
    for item in items:
        if not isinstance(item, dict) or not all(
            isinstance(item.get(k), str) and item[k] for k in ("id", "method", "url")
        ):
            raise invalid
        if item["method"].upper() not in _METHODS:
            raise bad_request(f"Invalid HTTP method '{item['method']}' in batch request.")
        if item["id"] in seen:
            raise bad_request(f"Batch request ids must be unique: '{item['id']}' repeats.")
        depends = item.get("dependsOn", [])
        if not isinstance(depends, list) or any(d not in seen for d in depends):
            raise bad_request(
                f"Request '{item['id']}' depends on a request id that does not precede it."
            )
        headers = item.get("headers", {})
        if not isinstance(headers, dict):
            raise invalid
        has_type = any(k.lower() == "content-type" for k in headers)
        needs_body = item["method"].upper() in ("POST", "PATCH", "PUT")
        if ("body" in item and not has_type) or (needs_body and "body" not in item):
            raise bad_request(
                f"Write request id : {item['id']} does not contain Content-Type header or body."
            )
        seen.add(item["id"])
    return items


async def run_batch(
    items: list[dict[str, Any]],
    *,
    version: str,
    client_request_id: str,
    base: str,
    serve: Serve,
    record: Record,
) -> GraphResponse:
    """Run validated sub-requests in order; a failed dependency makes its dependants 424."""
    statuses: dict[str, int] = {}
    responses = []
    for item in items:
        headers = {k.lower(): str(v) for k, v in item.get("headers", {}).items()}
        crid = headers.get("client-request-id", client_request_id)
        url: str = item["url"]
        raw_path, _, query = url.partition("?")
        path = "/" + "/".join(unquote(p) for p in raw_path.lstrip("/").split("/"))
        method = item["method"].upper()
        if any(not 200 <= statuses[d] < 300 for d in item.get("dependsOn", [])):
            message = "The request depends on a request that failed."
            resp = GraphResponse(424, error_body("FailedDependency", message, crid))
        elif "://" in url:
            message = "Invalid request URL: batch requests take URLs relative to the version."
            resp = error_response(bad_request(message), crid)
        else:
            try:
                req = GraphRequest(
                    method, version, path, parse_query(query), item.get("body"), crid, base
                )
                resp = await serve(req)
            except GraphError as err:
                resp = error_response(err, crid)
        record(method, f"/{version}/{url.lstrip('/')}", resp.status)
        statuses[item["id"]] = resp.status
        entry: dict[str, Any] = {
            "id": item["id"],
            "status": resp.status,
            "headers": {"Cache-Control": "no-cache", **resp.headers},
        }
        if resp.body is not None:
            entry["headers"]["Content-Type"] = JSON_TYPE + ";charset=utf-8"
            entry["body"] = resp.body
        responses.append(entry)
    return GraphResponse(200, {"responses": responses})
