"""Date-times from requests, in UTC.

ISO 8601 allows UTC offsets up to ±23:59, which Python parses, but PostgreSQL refuses any
beyond ±15:59 ("time zone displacement out of range"); and an instant near year 1 or 9999 can
leave Python's range once shifted to UTC (or be stored and then fail to load). Every date-time
a request carries is turned into UTC here, and one that cannot be is invalid input.
"""

from __future__ import annotations

from datetime import UTC, datetime

import django_filters
from django import forms
from django_filters.fields import IsoDateTimeField


def as_utc(moment: datetime) -> datetime:
    """`moment` in UTC (a naive one is taken as UTC). ValueError when it falls outside the range."""
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    try:
        return moment.astimezone(UTC)
    except OverflowError as exc:
        raise ValueError("the date-time is out of range once converted to UTC") from exc


class UtcIsoDateTimeField(IsoDateTimeField):
    def to_python(self, value):
        moment = super().to_python(value)
        if moment is None:
            return None
        try:
            return as_utc(moment)
        except ValueError as exc:
            raise forms.ValidationError("The date-time is out of range once converted to UTC.", code="invalid") from exc


class UtcIsoDateTimeFilter(django_filters.IsoDateTimeFilter):
    """django-filter's ISO 8601 filter, with the value in UTC (see the module's docstring)."""

    field_class = UtcIsoDateTimeField
