"""Filters over sessions, shared by the admin API, its export and the dashboard explorer.

One FilterSet reads query parameters (GET) and the `sessions` part of a search
document (POST) alike, so every surface filters the same way.
"""

from __future__ import annotations

import uuid

import django_filters
from django import forms
from django.db.models import Q, QuerySet

from privacy.consent import PURPOSES
from sessions_app.models import DeviceType, UserSession

PURPOSE_CHOICES = [(p, p) for p in PURPOSES]
DATETIME_INPUT = forms.DateTimeInput(attrs={"type": "datetime-local"})


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
    startedAfter = django_filters.IsoDateTimeFilter(
        field_name="started_at", lookup_expr="gte", label="Started after", widget=DATETIME_INPUT
    )
    startedBefore = django_filters.IsoDateTimeFilter(
        field_name="started_at", lookup_expr="lt", label="Started before", widget=DATETIME_INPUT
    )
    startedOn = django_filters.DateFilter(
        field_name="started_at", lookup_expr="date", label="Started on", widget=forms.DateInput(attrs={"type": "date"})
    )
    hasUser = django_filters.BooleanFilter(method="filter_has_user", label="Identified user")
    active = django_filters.BooleanFilter(method="filter_active", label="Live (not ended)")
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

    def filter_search(self, queryset: QuerySet, name: str, value: str) -> QuerySet:
        value = value.strip()
        if not value:
            return queryset
        try:
            return queryset.filter(Q(public_id=uuid.UUID(value)) | Q(anonymous_id=value))
        except ValueError:
            return queryset.filter(anonymous_id=value)
