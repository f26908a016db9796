"""Filters over sessions, shared by the admin API, its export and the dashboard explorer.

One FilterSet reads query parameters (GET) and the `sessions` part of a search
document (POST) alike, so every surface filters the same way.
"""

from __future__ import annotations

import uuid

import django_filters
from django import forms
from django.db.models import Exists, OuterRef, Q, QuerySet

from config.api.datetimes import UtcIsoDateTimeFilter
from config.api.filters import StrictBooleanFilter
from personalization.selectors import rule_segments_summary, segment_member_session_ids
from privacy.consent import PURPOSES
from sessions_app.models import DeviceType, UserSession

PURPOSE_CHOICES = [(p, p) for p in PURPOSES]
DATETIME_INPUT = forms.DateTimeInput(attrs={"type": "datetime-local"})


def segment_choices() -> list[tuple[str, list[tuple[str, str]]]]:
    """The segments of the segments report (analytics), by the same ids.

    Built in: new vs returning visitors, device type, consent granted per purpose (country
    has its own filter). Then the active rule segments of personalization, whose stored
    lists (the last materialization) are what the filter selects. Called when the form is
    validated or drawn, so a segment created a moment ago is offered.
    """
    return [
        ("Visitors", [("visitors:new", "New visitors"), ("visitors:returning", "Returning visitors")]),
        ("Device", [(f"device:{value}", label) for value, label in DeviceType.choices]),
        ("Consent granted", [(f"consent:{purpose}", purpose) for purpose in PURPOSES]),
        ("Rule segments", [(s["id"], s["name"]) for s in rule_segments_summary()]),
    ]


class SessionFilter(django_filters.FilterSet):
    q = django_filters.CharFilter(
        method="filter_search", label="Session or anonymous id", help_text="A session id or anonymous id (exact)."
    )
    neuron = django_filters.CharFilter(
        field_name="neuron__slug", label="Site", help_text="The neuron's slug (neuronId)."
    )
    device = django_filters.MultipleChoiceFilter(
        field_name="device_type", choices=DeviceType.choices, label="Device", widget=forms.CheckboxSelectMultiple
    )
    country = django_filters.CharFilter(
        method="filter_country", label="Country", help_text="ISO code, or several joined by commas."
    )
    browser = django_filters.CharFilter(field_name="browser", lookup_expr="iexact", label="Browser")
    os = django_filters.CharFilter(field_name="os", lookup_expr="iexact", label="OS")
    startedAfter = UtcIsoDateTimeFilter(
        field_name="started_at", lookup_expr="gte", label="Started after", widget=DATETIME_INPUT
    )
    startedBefore = UtcIsoDateTimeFilter(
        field_name="started_at", lookup_expr="lt", label="Started before", widget=DATETIME_INPUT
    )
    startedOn = django_filters.DateFilter(
        field_name="started_at", lookup_expr="date", label="Started on", widget=forms.DateInput(attrs={"type": "date"})
    )
    hasUser = StrictBooleanFilter(method="filter_has_user", label="Identified user")
    active = StrictBooleanFilter(method="filter_active", label="Live (not ended)")
    consentGranted = django_filters.ChoiceFilter(
        choices=PURPOSE_CHOICES, method="filter_consent_granted", label="Consent granted"
    )
    consentDenied = django_filters.ChoiceFilter(
        choices=PURPOSE_CHOICES, method="filter_consent_denied", label="Consent denied"
    )
    utmSource = django_filters.CharFilter(field_name="utm_source", label="UTM source")
    utmCampaign = django_filters.CharFilter(field_name="utm_campaign", label="UTM campaign")
    minEvents = django_filters.NumberFilter(
        field_name="event_count", lookup_expr="gte", min_value=0, label="Min. events"
    )
    landingPage = django_filters.CharFilter(field_name="landing_page", lookup_expr="startswith", label="Landing page")
    segment = django_filters.ChoiceFilter(
        choices=segment_choices,
        method="filter_segment",
        label="Segment",
        help_text="visitors:new|returning, device:<type>, consent:<purpose>, or rule:<site>:<segment>.",
    )

    class Meta:
        model = UserSession
        fields: list[str] = []

    def filter_country(self, queryset: QuerySet, name: str, value: str) -> QuerySet:
        codes = [c.strip().upper() for c in value.split(",") if c.strip()]
        return queryset.filter(country__in=codes) if codes else queryset

    def filter_has_user(self, queryset: QuerySet, name: str, value: bool | None) -> QuerySet:
        if value is None:
            return queryset
        identified = Q(profile__user_id_hash__isnull=False)
        return queryset.filter(identified) if value else queryset.exclude(identified)

    def filter_active(self, queryset: QuerySet, name: str, value: bool | None) -> QuerySet:
        if value is None:
            return queryset
        return queryset.filter(ended_at__isnull=value)

    def filter_consent_granted(self, queryset: QuerySet, name: str, value: str) -> QuerySet:
        return queryset.filter(**{f"consent__{value}": True})

    def filter_consent_denied(self, queryset: QuerySet, name: str, value: str) -> QuerySet:
        # A purpose never decided counts as denied: that is how consent_resolve treats it.
        return queryset.exclude(**{f"consent__{value}": True})

    def filter_segment(self, queryset: QuerySet, name: str, value: str) -> QuerySet:
        kind, _, rest = value.partition(":")
        if kind == "visitors":
            # New: the device's first session on that site, as the segments report counts it.
            earlier = UserSession.objects.filter(
                neuron=OuterRef("neuron"), anonymous_id=OuterRef("anonymous_id"), started_at__lt=OuterRef("started_at")
            )
            return queryset.filter(~Exists(earlier) if rest == "new" else Exists(earlier))
        if kind == "device":
            return queryset.filter(device_type=rest)
        if kind == "consent":
            return queryset.filter(**{f"consent__{rest}": True})
        site, _, slug = rest.partition(":")
        return queryset.filter(pk__in=segment_member_session_ids(neuron_slug=site, slug=slug))

    def filter_search(self, queryset: QuerySet, name: str, value: str) -> QuerySet:
        value = value.strip()
        if not value:
            return queryset
        try:
            return queryset.filter(Q(public_id=uuid.UUID(value)) | Q(anonymous_id=value))
        except ValueError:
            return queryset.filter(anonymous_id=value)
