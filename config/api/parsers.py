"""Request parsing: orjson, a hard size cap (413), and JSON sent as text/plain.

`navigator.sendBeacon` and several analytics SDKs post JSON as text/plain to
avoid a CORS preflight, so both media types parse as JSON.
"""

from __future__ import annotations

from typing import Any

import orjson
from django.conf import settings
from rest_framework.exceptions import ParseError
from rest_framework.parsers import BaseParser

from config.api.errors import PayloadTooLarge


def read_limited(stream: Any, limit: int) -> bytes:
    data = stream.read(limit + 1)
    if len(data) > limit:
        raise PayloadTooLarge(f"The request body exceeds {limit} bytes.")
    return data


def loads_json(data: bytes) -> Any:
    if not data.strip():
        return {}
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise ParseError(f"Malformed JSON: {exc}") from exc


class JSONParser(BaseParser):
    media_type = "application/json"
    max_bytes_setting = "API_MAX_BODY_BYTES"

    def parse(self, stream: Any, media_type: str | None = None, parser_context: Any = None) -> Any:
        if stream is None:
            return {}
        view = (parser_context or {}).get("view")
        limit = getattr(view, "max_body_bytes", None) or getattr(settings, self.max_bytes_setting)
        return loads_json(read_limited(stream, limit))


class TextJSONParser(JSONParser):
    media_type = "text/plain"
