"""The Segment-compatible endpoints (/v1, plain Django views for speed) in the OpenAPI schema.

drf-spectacular documents DRF views only; this postprocessing hook adds the /v1 operations as
Segment's HTTP tracking API defines them, with what this server checks (sessions_app.segment)
and answers (sessions_app.segment_apis).
"""

from __future__ import annotations

from copy import deepcopy
from typing import Any

from django.conf import settings

from config.api.problems import PROBLEM_CONTENT_TYPE

_OBJECT = {"type": "object", "additionalProperties": True}
# Strings are checked for length and for NUL characters (which PostgreSQL cannot store).
_NO_NUL = "^[^\\u0000]*$"


def _string(max_length: int, *, required: bool = False) -> dict[str, Any]:
    return {"type": "string", "maxLength": max_length, "minLength": int(required), "pattern": _NO_NUL}


_TIME = {"type": "string", "format": "date-time", "description": "ISO 8601."}
_COMMON = {
    "userId": _string(255, required=True),
    "anonymousId": _string(128, required=True),
    "context": {
        **_OBJECT,
        "description": (
            "userAgent, ip (stored truncated), page, campaign (UTM), and consent.categoryPreferences "
            "(category names matched to our purposes, case-insensitively)."
        ),
    },
    "integrations": _OBJECT,
    "timestamp": _TIME,
    "originalTimestamp": _TIME,
    "sentAt": _TIME,
    "messageId": {**_string(128), "description": "Idempotency key; generated when absent."},
    "writeKey": {"type": "string", "description": "The site's publishable key, when not sent as HTTP Basic."},
}
_CALLS = {
    "track": ({"event": _string(200, required=True), "properties": _OBJECT}, ["event"]),
    "page": ({"name": _string(200), "properties": _OBJECT}, []),
    "screen": ({"name": _string(200), "properties": _OBJECT}, []),
    "identify": ({"traits": _OBJECT}, []),
    "group": ({"groupId": _string(255, required=True), "traits": _OBJECT}, ["groupId"]),
    "alias": ({"previousId": _string(255, required=True)}, ["previousId", "userId"]),
}
_SUMMARIES = {
    "track": "Record an action (an event in the anonymous id's current session)",
    "page": "Record a page view",
    "screen": "Record a mobile screen view",
    "identify": "Tie the visitor to a user id and traits (Identity services)",
    "group": "Store a group id and its traits on the visitor's profile",
    "alias": "Merge a previous id into a user id",
    "batch": "Send several calls at once; top-level context and integrations merge into each",
    # Segment's own alias of /v1/batch, which some server-side SDKs post to. (The one-letter
    # paths analytics.js uses, /v1/t and the like, are not in Segment's HTTP API: not listed.)
    "import": "Send several calls at once (Segment's alias of /v1/batch)",
}
_ERRORS = {
    "400": "Malformed JSON or an invalid call: `errors` names each bad field (`batch[i].field` in a batch).",
    "401": "Missing, malformed, unknown or inactive write key.",
    "413": "Over Segment's limits: 32 KB per call, 500 KB and 2,500 calls per batch.",
    "415": "The body is not JSON.",
}


def _call_schema(call_type: str, *, in_batch: bool) -> dict[str, Any]:
    own, required = _CALLS[call_type]
    properties = {**_COMMON, **own}
    if in_batch:
        properties = {"type": {"type": "string", "enum": [call_type]}, **properties}
        required = ["type", *required]
    schema: dict[str, Any] = {
        "type": "object",
        "description": "Needs userId or anonymousId (alias: userId and previousId). Unknown fields are ignored.",
        "properties": deepcopy(properties),
    }
    if required:
        schema["required"] = required
    if call_type != "alias":
        schema["anyOf"] = [{"required": ["userId"]}, {"required": ["anonymousId"]}]
    return schema


def _batch_schema() -> dict[str, Any]:
    return {
        "type": "object",
        "required": ["batch"],
        "properties": {
            "batch": {
                "type": "array",
                "maxItems": settings.SEGMENT_MAX_BATCH_EVENTS,
                "items": {"oneOf": [_call_schema(call_type, in_batch=True) for call_type in _CALLS]},
            },
            "context": deepcopy(_COMMON["context"]),
            "integrations": deepcopy(_OBJECT),
            "sentAt": deepcopy(_TIME),
            "writeKey": deepcopy(_COMMON["writeKey"]),
        },
    }


def _operation(call_type: str, request_schema: dict[str, Any]) -> dict[str, Any]:
    problem = {PROBLEM_CONTENT_TYPE: {"schema": {"$ref": "#/components/schemas/Problem"}}}
    return {
        "operationId": f"v1_{call_type}",
        "summary": _SUMMARIES[call_type],
        "description": (
            "Segment-compatible: any Segment or RudderStack SDK sends here unchanged (gzip bodies too). "
            "Answers 200 with `success: true` once the calls are committed; calls without analytics "
            "consent are only counted anonymously, and identify/group/alias without it are dropped."
        ),
        "tags": ["v1"],
        "security": [{"writeKey": []}, {}],
        "requestBody": {"required": True, "content": {"application/json": {"schema": request_schema}}},
        "responses": {
            "200": {
                "description": "Committed.",
                "content": {"application/json": {"schema": {"$ref": "#/components/schemas/SegmentResult"}}},
            },
            **{code: {"description": text, "content": problem} for code, text in _ERRORS.items()},
        },
    }


def add_segment_paths(result: dict[str, Any], generator, request, public) -> dict[str, Any]:
    """drf-spectacular POSTPROCESSING_HOOKS entry: the /v1 operations and their components."""
    components = result.setdefault("components", {})
    components.setdefault("securitySchemes", {})["writeKey"] = {
        "type": "http",
        "scheme": "basic",
        "description": "HTTP Basic with the site's publishable key as user name and an empty password.",
    }
    schemas = components.setdefault("schemas", {})
    schemas["SegmentResult"] = {
        "type": "object",
        "properties": {
            "success": {"type": "boolean", "enum": [True]},
            "stored": {"type": "integer", "description": "Events stored."},
            "duplicates": {"type": "integer", "description": "Events already stored (same messageId)."},
            "anonymous": {"type": "integer", "description": "Events only counted anonymously (no consent)."},
            "dropped": {"type": "integer", "description": "Calls dropped (no consent), as Segment answers 200."},
        },
        "required": ["success", "stored", "duplicates", "anonymous", "dropped"],
    }
    paths = result.setdefault("paths", {})
    for call_type in _CALLS:
        paths[f"/v1/{call_type}"] = {"post": _operation(call_type, _call_schema(call_type, in_batch=False))}
    for path in ("batch", "import"):
        paths[f"/v1/{path}"] = {"post": _operation(path, _batch_schema())}
    return result
