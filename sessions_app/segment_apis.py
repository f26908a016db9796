"""/v1: Segment's HTTP tracking API, for Segment and RudderStack SDKs unchanged.

Plain Django views rather than DRF: the write key may sit in the body (so the body
is read and, when gzip-compressed, inflated before authentication), and SDKs expect
Segment's exact answers. Authentication: the neuron's publishable key as the write
key, as HTTP Basic user name (empty password) or `writeKey` in the body. Permission:
a valid, active write key opens the neuron's own data only. Every error is a
problem-details document; a 200 `{"success": true}` means the calls are committed.
"""

from __future__ import annotations

import base64
import binascii
import zlib
from collections.abc import Callable
from typing import Any

import orjson
from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.utils import timezone
from django.views.decorators.csrf import csrf_exempt

from config.api.errors import (
    ApplicationError,
    MethodNotAllowed,
    PayloadTooLarge,
    Unauthorized,
    UnsupportedMediaType,
    ValidationFailed,
)
from config.api.problems import problem_response
from federation.models import Neuron
from federation.selectors import neuron_get_by_publishable_key
from sessions_app.segment import segment_calls_parse, segment_calls_process

JSON_TYPES = ("application/json", "text/plain", "")
BASIC_CHALLENGE = 'Basic realm="Segment write key"'


def body_read(request: HttpRequest, *, limit: int) -> bytes:
    """The (inflated) body, refusing anything over `limit` bytes before it is all in memory."""
    encoding = request.META.get("HTTP_CONTENT_ENCODING", "").strip().lower()
    raw = request.read(limit + 1)
    if encoding in ("", "identity"):
        if len(raw) > limit:
            raise PayloadTooLarge(f"The request body exceeds {limit} bytes.")
        return raw
    if encoding != "gzip":
        raise UnsupportedMediaType(f"Content-Encoding {encoding!r} is not supported; send gzip or nothing.")
    if len(raw) > limit:
        raise PayloadTooLarge(f"The compressed body exceeds {limit} bytes.")
    inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
    try:
        # max_length bounds memory: a small bomb cannot inflate past the limit.
        data = inflater.decompress(raw, limit + 1)
    except zlib.error as exc:
        raise ValidationFailed("The body is not valid gzip.", errors={"body": ["Not valid gzip."]}) from exc
    if len(data) > limit or inflater.unconsumed_tail:
        raise PayloadTooLarge(f"The inflated request body exceeds {limit} bytes.")
    if not inflater.eof:
        raise ValidationFailed("The gzip body is truncated.", errors={"body": ["Truncated gzip stream."]})
    return data


def write_key_from(request: HttpRequest, payload: Any) -> str:
    header = request.META.get("HTTP_AUTHORIZATION", "")
    if header:
        scheme, _, value = header.partition(" ")
        if scheme.lower() != "basic" or not value.strip():
            raise Unauthorized(
                "Use HTTP Basic with the write key as user name.", headers={"WWW-Authenticate": BASIC_CHALLENGE}
            )
        try:
            decoded = base64.b64decode(value.strip(), validate=True).decode()
        except (binascii.Error, UnicodeDecodeError) as exc:
            raise Unauthorized("Malformed Basic credentials.", headers={"WWW-Authenticate": BASIC_CHALLENGE}) from exc
        return decoded.partition(":")[0]
    if isinstance(payload, dict) and isinstance(payload.get("writeKey"), str):
        return payload["writeKey"]
    return ""


def neuron_authenticate(request: HttpRequest, payload: Any) -> Neuron:
    key = write_key_from(request, payload)
    if not key:
        raise Unauthorized(
            "Send the write key (HTTP Basic user name or writeKey).", headers={"WWW-Authenticate": BASIC_CHALLENGE}
        )
    neuron = neuron_get_by_publishable_key(key=key)
    if neuron is None:
        raise Unauthorized("Unknown or inactive write key.", headers={"WWW-Authenticate": BASIC_CHALLENGE})
    return neuron


def _problem(exc: ApplicationError) -> HttpResponse:
    return problem_response(
        status=exc.status,
        headers=exc.headers,
        title=exc.title,
        detail=exc.detail,
        slug=exc.slug,
        errors=exc.errors,
        extra=exc.extra,
    )


def segment_view(call_type: str | None) -> Callable[[HttpRequest], HttpResponse]:
    limit_setting = "SEGMENT_MAX_BATCH_BYTES" if call_type is None else "SEGMENT_MAX_CALL_BYTES"

    @csrf_exempt
    def view(request: HttpRequest) -> HttpResponse:
        try:
            if request.method != "POST":
                raise MethodNotAllowed("Use POST.", headers={"Allow": "POST"})
            received_at = timezone.now()
            content_type = request.content_type or ""
            if content_type not in JSON_TYPES:
                raise UnsupportedMediaType(f"Send JSON, not {content_type}.")
            body = body_read(request, limit=getattr(settings, limit_setting))
            try:
                payload = orjson.loads(body) if body.strip() else {}
            except orjson.JSONDecodeError as exc:
                return problem_response(
                    status=400, title="Malformed request body", detail=f"Malformed JSON: {exc}", slug="malformed-body"
                )
            neuron = neuron_authenticate(request, payload)
            calls = segment_calls_parse(payload, call_type=call_type, received_at=received_at)
            result = segment_calls_process(
                neuron=neuron, calls=calls, request_meta=request.META, received_at=received_at
            )
        except ApplicationError as exc:
            return _problem(exc)
        body = {
            "success": True,
            "stored": result.stored,
            "duplicates": result.duplicates,
            "anonymous": result.anonymous,
            "dropped": result.dropped,
        }
        return HttpResponse(orjson.dumps(body), content_type="application/json")

    view.__name__ = f"segment_{call_type or 'batch'}"
    return view


track = segment_view("track")
page = segment_view("page")
screen = segment_view("screen")
identify = segment_view("identify")
group = segment_view("group")
alias = segment_view("alias")
batch = segment_view(None)
