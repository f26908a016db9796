from __future__ import annotations

import django_filters

from config.api.datetimes import UtcIsoDateTimeFilter
from privacy.models import AuditEntry


class AuditEntryFilter(django_filters.FilterSet):
    actor = django_filters.CharFilter(field_name="actor")
    action = django_filters.CharFilter(field_name="action")
    actionPrefix = django_filters.CharFilter(field_name="action", lookup_expr="startswith")
    subject = django_filters.CharFilter(field_name="subject")
    since = UtcIsoDateTimeFilter(field_name="created_at", lookup_expr="gte")
    until = UtcIsoDateTimeFilter(field_name="created_at", lookup_expr="lt")

    class Meta:
        model = AuditEntry
        fields: list[str] = []
