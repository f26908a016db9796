from __future__ import annotations

import django_filters

from privacy.models import AuditEntry


class AuditEntryFilter(django_filters.FilterSet):
    actor = django_filters.CharFilter(field_name="actor")
    action = django_filters.CharFilter(field_name="action")
    actionPrefix = django_filters.CharFilter(field_name="action", lookup_expr="startswith")
    subject = django_filters.CharFilter(field_name="subject")
    since = django_filters.IsoDateTimeFilter(field_name="created_at", lookup_expr="gte")
    until = django_filters.IsoDateTimeFilter(field_name="created_at", lookup_expr="lt")

    class Meta:
        model = AuditEntry
        fields: list[str] = []
