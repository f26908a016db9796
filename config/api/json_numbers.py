"""JSON numbers that every reader and writer of this project can handle.

A client may send any JSON number. The request parser (orjson) makes `1e20` a float, but
PostgreSQL's jsonb stores numbers as exact numerics and gives `1e20` back as the integer
literal 100000000000000000000; a plain `json.loads` makes that a Python int past 64 bits, which
orjson refuses to render ("Integer exceeds 64-bit range"). Every JSONField holding client data
therefore decodes with `JSONDecoder`: integers orjson can render stay ints, the others become
floats (as the parser made them), and a number past the float range saturates at the largest
finite float instead of becoming an infinity (which neither JSON nor jsonb can hold).
"""

from __future__ import annotations

import json
import math
import sys
from typing import Any, ClassVar

# The integers orjson renders: the union of int64 and uint64.
INT_MIN = -(2**63)
INT_MAX = 2**64 - 1
# Decimal digits (and a sign) of the longest integer that can be in range: checked before int(),
# so a literal of thousands of digits never reaches Python's int-string conversion limit.
_INT_MAX_CHARS = len(str(INT_MIN))
_FLOAT_MAX = sys.float_info.max


def _finite(value: float) -> float:
    if math.isinf(value):
        return _FLOAT_MAX if value > 0 else -_FLOAT_MAX
    return value


def parse_float(text: str) -> float:
    """A JSON number with a fraction or an exponent: a float, never an infinity."""
    return _finite(float(text))


def parse_int(text: str) -> int | float:
    """A JSON integer literal: an int when orjson can render it, else the nearest finite float."""
    if len(text) <= _INT_MAX_CHARS:
        value = int(text)
        if INT_MIN <= value <= INT_MAX:
            return value
    return _finite(float(text))


class JSONDecoder(json.JSONDecoder):
    """For `models.JSONField(decoder=JSONDecoder)`: numbers as `parse_int` and `parse_float` make them.

    The field decodes with `json.loads(text, cls=JSONDecoder)`, which builds a decoder per value:
    that costs about as much as decoding a small document, so the plain decoder (it holds no
    state) is built once and shared; one with options is built as usual."""

    _shared: ClassVar[JSONDecoder | None] = None

    def __new__(cls, *args: Any, **kwargs: Any) -> JSONDecoder:
        shared = cls.__dict__.get("_shared")
        if shared is not None and not args and not kwargs:
            return shared
        return super().__new__(cls)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        if self is type(self).__dict__.get("_shared"):
            return  # built already
        kwargs.setdefault("parse_int", parse_int)
        kwargs.setdefault("parse_float", parse_float)
        super().__init__(*args, **kwargs)


JSONDecoder._shared = JSONDecoder()


def json_safe(value: Any) -> Any:
    """`value` with every integer orjson cannot render made a finite float (tuples become lists).

    The slow path of the renderer, taken only after orjson refused a document."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        if INT_MIN <= value <= INT_MAX:
            return value
        try:
            return float(value)
        except OverflowError:
            return _FLOAT_MAX if value > 0 else -_FLOAT_MAX
    if isinstance(value, dict):
        return {key: json_safe(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(item) for item in value]
    return value
