"""django-filter filters that refuse what they cannot read instead of ignoring it."""

from __future__ import annotations

import django_filters
from django import forms

_TRUE = (True, "True", "true", "1")
_FALSE = (False, "False", "false", "0")
# The empty choice of a form's NullBooleanSelect, or no value: the filter is not applied.
_UNSET = (None, "", "unknown")


class StrictNullBooleanSelect(forms.NullBooleanSelect):
    """NullBooleanSelect reads anything it does not know as "unknown"; this one hands it on
    as given, for the field to refuse."""

    def value_from_datadict(self, data, files, name):
        value = super().value_from_datadict(data, files, name)
        raw = data.get(name)
        return raw if value is None and raw not in _UNSET else value


class StrictNullBooleanField(forms.NullBooleanField):
    widget = StrictNullBooleanSelect

    def to_python(self, value):
        if value in _TRUE:
            return True
        if value in _FALSE:
            return False
        if value in _UNSET:
            return None
        raise forms.ValidationError("Expected true or false.", code="invalid")

    def validate(self, value):
        pass


class StrictBooleanFilter(django_filters.BooleanFilter):
    """A boolean filter for which `?hasUser=maybe` is invalid input (400), not "no filter"."""

    field_class = StrictNullBooleanField
