"""Validation of the session-creation body, without a serializer.

Every page load of every site calls POST /api/sessions/create; building DRF's
nested serializer fields for it cost a fifth of the request's CPU (see
bench/hotpath_cpu.py). This checks the body by hand with the rules of
`SessionCreateApi.SessionCreateInput`, which stays the documented schema (a
test feeds both the same generated payloads and requires the same verdict):
unknown fields are errors, strings are trimmed, booleans are true/false only,
and every error is named by its dotted path.
"""

from __future__ import annotations

import uuid
from typing import Any

import orjson

from sessions_app.event_input import NOT_OBJECT, REQUIRED, ErrorBag

NOT_STRING = "Not a valid string."
NOT_BOOLEAN = "Must be a valid boolean."
UNKNOWN = "Unknown field."

CONSENT_KEYS = frozenset(
    {
        "analytics",
        "personalization",
        "marketing",
        "fingerprinting",
        "saleSharing",
        "trackingConsent",
        "marketingConsent",
    }
)
UTM_KEYS = frozenset({"source", "medium", "campaign", "term", "content"})
TOP_LEVEL = frozenset({"anonymousId", "consent", "referrer", "landingPage", "utm", "fingerprint", "restore", "gpc"})


def _string(value: Any, name: str, bag: ErrorBag, *, max_length: int, min_length: int = 0, blank: bool = True) -> str:
    """A DRF CharField's rules: a string, trimmed, no NUL, within its lengths."""
    if not isinstance(value, str):
        bag.add(name, NOT_STRING)
        return ""
    value = value.strip()
    if not value and not blank:
        bag.add(name, "This field may not be blank.")
    elif "\x00" in value:
        bag.add(name, "Null characters are not allowed.")
    elif len(value) > max_length:
        bag.add(name, f"Ensure this field has no more than {max_length} characters.")
    elif value and len(value) < min_length:
        bag.add(name, f"Ensure this field has at least {min_length} characters.")
    return value


def _object(value: Any, name: str, bag: ErrorBag, allowed: frozenset[str]) -> dict[str, Any] | None:
    if not isinstance(value, dict):
        bag.add(name, NOT_OBJECT)
        return None
    unknown = value.keys() - allowed
    for key in sorted(unknown):
        bag.add(f"{name}.{key}", UNKNOWN)
    return None if unknown else value


def _boolean(value: Any, name: str, bag: ErrorBag) -> bool:
    if not isinstance(value, bool):
        bag.add(name, NOT_BOOLEAN)
        return False
    return value


def session_create_parse(payload: Any) -> dict[str, Any]:
    """The validated body (the keys given, as SessionCreateInput's validated_data), or
    ValidationFailed naming every bad field."""
    bag = ErrorBag()
    if not isinstance(payload, dict):
        bag.add("body", NOT_OBJECT)
        bag.raise_if_any()
    unknown = payload.keys() - TOP_LEVEL
    if unknown:
        for key in sorted(unknown):
            bag.add(key, UNKNOWN)
        bag.raise_if_any()
    out: dict[str, Any] = {}
    if "anonymousId" in payload:
        out["anonymousId"] = _string(
            payload["anonymousId"], "anonymousId", bag, max_length=128, min_length=1, blank=False
        )
    for key in ("referrer", "landingPage"):
        if key in payload:
            out[key] = _string(payload[key], key, bag, max_length=2048)
    if "gpc" in payload:
        out["gpc"] = _boolean(payload["gpc"], "gpc", bag)
    if "consent" in payload and (consent := _object(payload["consent"], "consent", bag, CONSENT_KEYS)) is not None:
        out["consent"] = {key: _boolean(value, f"consent.{key}", bag) for key, value in consent.items()}
    if "utm" in payload and (utm := _object(payload["utm"], "utm", bag, UTM_KEYS)) is not None:
        out["utm"] = {key: _string(value, f"utm.{key}", bag, max_length=200) for key, value in utm.items()}
    if "fingerprint" in payload:
        out["fingerprint"] = _fingerprint(payload["fingerprint"], bag)
    if "restore" in payload:
        out["restore"] = _restore(payload["restore"], bag)
    bag.raise_if_any()
    return out


def _json_size(value: Any) -> int | None:
    """Bytes of JSON, or None for what JSON cannot hold (an integer past 64 bits)."""
    try:
        return len(orjson.dumps(value))
    except orjson.JSONEncodeError:
        return None


def _fingerprint(value: Any, bag: ErrorBag) -> dict[str, Any] | None:
    fingerprint = _object(value, "fingerprint", bag, frozenset({"hash", "components"}))
    if fingerprint is None:
        return None
    out: dict[str, Any] = {}
    if "hash" not in fingerprint:
        bag.add("fingerprint.hash", REQUIRED)
    else:
        out["hash"] = _string(fingerprint["hash"], "fingerprint.hash", bag, max_length=128, min_length=8, blank=False)
    if "components" in fingerprint:
        components = fingerprint["components"]
        size = _json_size(components) if isinstance(components, dict) else None
        if size is None:
            bag.add("fingerprint.components", "Expected a JSON object.")
        elif size > 8 * 1024:
            bag.add("fingerprint.components", "Must be at most 8192 bytes of JSON.")
        else:
            out["components"] = components
    return out


def _restore(value: Any, bag: ErrorBag) -> dict[str, Any] | None:
    restore = _object(value, "restore", bag, frozenset({"sessionId", "token"}))
    if restore is None:
        return None
    out: dict[str, Any] = {}
    if "sessionId" not in restore:
        bag.add("restore.sessionId", REQUIRED)
    else:
        raw = restore["sessionId"]
        try:
            out["sessionId"] = uuid.UUID(int=raw) if isinstance(raw, int) else uuid.UUID(hex=raw)
        except (TypeError, ValueError, AttributeError):
            bag.add("restore.sessionId", "Must be a valid UUID.")
    if "token" not in restore:
        bag.add("restore.token", REQUIRED)
    else:
        out["token"] = _string(restore["token"], "restore.token", bag, max_length=256, blank=False)
    return out
