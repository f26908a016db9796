"""Serializer building blocks shared by every app's API."""

from __future__ import annotations

from typing import Any

import orjson
from rest_framework import serializers
from rest_framework.settings import api_settings


def json_has_nul(value: Any, dumped: bytes) -> bool:
    """Whether a JSON value holds a NUL character in any key or string, which PostgreSQL's jsonb
    cannot store (so both databases refuse it). `dumped` is its orjson form, where a NUL shows as
    the escape \\u0000: only when that appears is the value walked (the escape may also be the
    text of a literal backslash)."""
    if b"\\u0000" not in dumped:
        return False
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            if "\x00" in item:
                return True
        elif isinstance(item, dict):
            stack.extend(item)
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return False


class StrictSerializer(serializers.Serializer):
    """Rejects fields it does not declare (no mass assignment), naming each one."""

    def to_internal_value(self, data: Any) -> Any:
        if not isinstance(data, dict):
            raise serializers.ValidationError({api_settings.NON_FIELD_ERRORS_KEY: ["Expected a JSON object."]})
        unknown = sorted(set(data) - set(self.fields))
        if unknown:
            raise serializers.ValidationError({name: ["Unknown field."] for name in unknown})
        return super().to_internal_value(data)


class StrictBooleanField(serializers.BooleanField):
    """true/false only: "yes", 1 or "false" are errors, not guesses."""

    def to_internal_value(self, data: Any) -> bool:
        if isinstance(data, bool):
            return data
        self.fail("invalid", input=data)
        raise AssertionError  # unreachable: fail() raises


class StrictCharField(serializers.CharField):
    """A string only: numbers and booleans are not silently turned into strings."""

    def to_internal_value(self, data: Any) -> str:
        if not isinstance(data, str):
            self.fail("invalid")
        return super().to_internal_value(data)


class JSONObjectField(serializers.JSONField):
    """A JSON object (not a list or scalar), with a size cap in bytes."""

    default_error_messages = {
        "not_object": "Expected a JSON object.",
        "too_large": "Must be at most {max_bytes} bytes of JSON.",
        "nul": "Must not contain NUL characters.",
    }

    def __init__(self, *, max_bytes: int = 32 * 1024, **kwargs: Any) -> None:
        self.max_bytes = max_bytes
        super().__init__(**kwargs)

    def to_internal_value(self, data: Any) -> dict[str, Any]:
        if not isinstance(data, dict):
            self.fail("not_object")
        try:
            dumped = orjson.dumps(data)
        except orjson.JSONEncodeError:  # not JSON after all (an integer past 64 bits, built by Python code)
            self.fail("not_object")
        if len(dumped) > self.max_bytes:
            self.fail("too_large", max_bytes=self.max_bytes)
        if json_has_nul(data, dumped):
            self.fail("nul")
        return data
