from __future__ import annotations

from typing import Any

import orjson
from rest_framework.renderers import BaseRenderer

from config.api.json_numbers import json_safe


class JSONRenderer(BaseRenderer):
    """orjson rendering: several times faster than json on the response path."""

    media_type = "application/json"
    format = "json"
    charset = None

    def render(self, data: Any, accepted_media_type: str | None = None, renderer_context: Any = None) -> bytes:
        if data is None:
            return b""
        try:
            return orjson.dumps(data, option=orjson.OPT_NON_STR_KEYS)
        except orjson.JSONEncodeError:
            # An integer past 64 bits (the JSONFields' decoder makes none, but data has other
            # sources): rendered as the float it stands for, never a 500. Anything else that
            # is not JSON raises again here.
            return orjson.dumps(json_safe(data), option=orjson.OPT_NON_STR_KEYS)
