"""Admin for sessions, events, profiles, fingerprints and links.

Rows holding personal data are never deleted row by row here: they leave through erasure
(a data-subject request, audited and verified) or retention. Every action goes through the
service the API uses for the same operation, and that service writes the audit entry.
"""

from __future__ import annotations

from typing import Any

import orjson
from django.contrib import admin, messages
from django.utils.html import format_html, format_html_join

from config.api.errors import ApplicationError
from privacy.services import dsar_submit
from sessions_app.admin_services import sessions_bulk_update, sessions_erase
from sessions_app.exports import sessions_export_response
from sessions_app.identity import bridge_accept, bridge_reject, profile_split
from sessions_app.identity_selectors import (
    bridge_list_for_profile,
    profile_devices,
    profile_merges,
    profile_sessions,
)
from sessions_app.models import (
    AnonymousTrafficCount,
    BehaviorEvent,
    DeviceFingerprint,
    GlobalUserProfile,
    ProfileAlias,
    ProfileMerge,
    SessionBridge,
    UserSession,
)


class NoDeleteMixin:
    def has_delete_permission(self, request, obj=None):
        # Personal data leaves through erasure or retention, which audit and verify it.
        return False


class ReadOnlyAdmin(NoDeleteMixin, admin.ModelAdmin):
    """Rows written only by the product's services (events, fingerprints, links, merges)."""

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False


def _admin_selection(request, queryset, action: str) -> dict[str, Any]:
    """What the operator selected, for the audit entry: the ids ticked, or the changelist's filters."""
    selection: dict[str, Any] = {"adminAction": action}
    filters = {k: v for k, v in request.GET.items() if k not in ("o", "p")}
    if filters:
        selection["changelistFilters"] = filters
    if request.POST.get("select_across") == "1":
        selection["selectAcross"] = True
    else:
        selection["sessionIds"] = sorted(str(p) for p in queryset.values_list("public_id", flat=True))
    return selection


class EndedFilter(admin.SimpleListFilter):
    title = "status"
    parameter_name = "live"

    def lookups(self, request, model_admin):
        return [("yes", "Live"), ("no", "Ended")]

    def queryset(self, request, queryset):
        if self.value() in ("yes", "no"):
            return queryset.filter(ended_at__isnull=self.value() == "yes")
        return queryset


class IdentifiedFilter(admin.SimpleListFilter):
    title = "identified"
    parameter_name = "identified"
    field = "user_id_hash"

    def lookups(self, request, model_admin):
        return [("yes", "Identified"), ("no", "Anonymous")]

    def queryset(self, request, queryset):
        if self.value() in ("yes", "no"):
            return queryset.filter(**{f"{self.field}__isnull": self.value() == "no"})
        return queryset


class SessionIdentifiedFilter(IdentifiedFilter):
    field = "profile__user_id_hash"


@admin.register(UserSession)
class UserSessionAdmin(NoDeleteMixin, admin.ModelAdmin):
    list_display = [
        "public_id",
        "neuron",
        "device_type",
        "browser",
        "os",
        "country",
        "started_at",
        "last_activity_at",
        "ended_at",
        "end_reason",
        "event_count",
        "page_view_count",
    ]
    list_filter = [
        EndedFilter,
        SessionIdentifiedFilter,
        "neuron",
        "device_type",
        "country",
        "end_reason",
        "gpc",
        "started_at",
    ]
    search_fields = ["=public_id", "=anonymous_id", "landing_page", "utm_source", "utm_campaign"]
    date_hierarchy = "started_at"
    list_select_related = ["neuron"]
    raw_id_fields = ["profile", "fingerprint"]
    exclude = ["token_hash", "previous_token_hash", "previous_token_valid_until"]
    readonly_fields = [
        "public_id",
        "neuron",
        "anonymous_id",
        "device_type",
        "browser",
        "browser_version",
        "os",
        "os_version",
        "country",
        "ip_truncated",
        "gpc",
        "referrer",
        "landing_page",
        "utm_source",
        "utm_medium",
        "utm_campaign",
        "utm_term",
        "utm_content",
        "started_at",
        "last_activity_at",
        "expires_at",
        "ended_at",
        "end_reason",
        "token_rotated_at",
        "event_count",
        "page_view_count",
        "engagement_score",
        "consent",
    ]
    actions = ["end_sessions", "export_csv", "export_json", "erase_sessions"]

    def has_add_permission(self, request):
        return False

    @admin.action(description="End the selected sessions")
    def end_sessions(self, request, queryset):
        # The admin API's bulk service: bounded, and audited with the selection and counts.
        try:
            result = sessions_bulk_update(
                actor=request.user,
                queryset=queryset,
                selection=_admin_selection(request, queryset, "end_sessions"),
                end=True,
            )
        except ApplicationError as exc:
            self.message_user(request, exc.detail, level=messages.ERROR)
            return
        self.message_user(
            request, f"Ended {result.changed} of {result.matched} selected session(s).", level=messages.SUCCESS
        )

    def _export(self, request, queryset, export_format: str):
        return sessions_export_response(
            request=request,
            queryset=queryset,
            export_format=export_format,
            actor=request.user,
            selection=_admin_selection(request, queryset, f"export_{export_format}"),
        )

    @admin.action(description="Export the selected sessions as CSV")
    def export_csv(self, request, queryset):
        return self._export(request, queryset, "csv")

    @admin.action(description="Export the selected sessions as JSON")
    def export_json(self, request, queryset):
        return self._export(request, queryset, "json")

    @admin.action(description="Erase the people behind the selected sessions (data-subject requests)")
    def erase_sessions(self, request, queryset):
        try:
            result = sessions_erase(
                actor=request.user,
                queryset=queryset,
                selection=_admin_selection(request, queryset, "erase_sessions"),
            )
        except ApplicationError as exc:
            self.message_user(request, exc.detail, level=messages.ERROR)
            return
        self.message_user(
            request,
            f"Filed {len(result.requests)} erasure request(s) for the {result.people} people behind "
            f"{result.matched} session(s); each person's other sessions are erased too. "
            "Follow them under Privacy › Data subject requests.",
            level=messages.SUCCESS,
        )


@admin.register(BehaviorEvent)
class BehaviorEventAdmin(ReadOnlyAdmin):
    list_display = ["event_type", "event_name", "page_path", "neuron", "session", "timestamp", "received_at"]
    list_filter = ["neuron", "event_type", "timestamp"]
    search_fields = ["event_name", "page_path", "=message_id", "=anonymous_id", "=session__public_id"]
    date_hierarchy = "timestamp"
    list_select_related = ["neuron", "session"]
    raw_id_fields = ["session", "profile"]


def _table(headers: list[str], rows: list[list[Any]]) -> str:
    if not rows:
        return "—"
    head = format_html_join("", "<th>{}</th>", ((h,) for h in headers))
    body = format_html_join(
        "", "<tr>{}</tr>", ((format_html_join("", "<td>{}</td>", ((cell,) for cell in row)),) for row in rows)
    )
    return format_html("<table><thead><tr>{}</tr></thead><tbody>{}</tbody></table>", head, body)


def _run_service(modeladmin, request, objects, service, verb: str) -> None:
    """Apply a service to each selected row; a refused one is an error message, not a 500."""
    done = 0
    for obj in objects:
        try:
            service(obj)
            done += 1
        except ApplicationError as exc:
            modeladmin.message_user(request, f"{obj}: {exc.detail}", level=messages.ERROR)
    if done:
        modeladmin.message_user(request, f"{verb} {done} item(s).", level=messages.SUCCESS)


def _dsar(request, profile: GlobalUserProfile, kind: str) -> None:
    # Through the privacy service: recorded, audited, run by Celery; follow it under Privacy › requests.
    dsar_submit(kind=kind, value=str(profile.public_id), subject_type="profileId", requested_by=request.user)


@admin.register(GlobalUserProfile)
class GlobalUserProfileAdmin(NoDeleteMixin, admin.ModelAdmin):
    """A person across devices: linked devices, sessions, links with their evidence, merges."""

    list_display = ["public_id", "neuron", "is_identified", "first_seen_at", "last_seen_at", "merged_into"]
    list_filter = [IdentifiedFilter, "neuron", "first_seen_at"]
    search_fields = ["=public_id"]
    date_hierarchy = "first_seen_at"
    list_select_related = ["neuron", "merged_into"]
    raw_id_fields = ["merged_into"]
    exclude = ["user_id_hash", "user_id_encrypted"]
    readonly_fields = [
        "public_id",
        "neuron",
        "merged_into",
        "first_seen_at",
        "last_seen_at",
        "created_at",
        "updated_at",
        "linked_devices",
        "recent_sessions",
        "links",
        "merge_history",
    ]
    actions = ["split_profiles", "export_profiles", "erase_profiles"]

    def has_add_permission(self, request):
        return False

    @admin.display(boolean=True, description="Identified")
    def is_identified(self, obj):
        return obj.is_identified

    @admin.display(description="Linked devices")
    def linked_devices(self, obj):
        devices = profile_devices(profile=obj)
        return _table(
            ["Anonymous id", "Type", "Browser", "OS", "Last seen", "Sessions"],
            [[d.anonymous_id, d.device_type, d.browser, d.os, d.last_seen_at, d.session_count] for d in devices],
        )

    @admin.display(description="Sessions (latest 50)")
    def recent_sessions(self, obj):
        return _table(
            ["Session", "Device", "Country", "Started", "Last activity", "Events"],
            [
                [
                    s.public_id,
                    f"{s.device_type} {s.browser} / {s.os}",
                    s.country,
                    s.started_at,
                    s.last_activity_at,
                    s.event_count,
                ]
                for s in profile_sessions(profile=obj)
            ],
        )

    @admin.display(description="Links (confidence and evidence)")
    def links(self, obj):
        return _table(
            ["Link", "Method", "Status", "Confidence", "From", "To", "Evidence"],
            [
                [
                    b.pk,
                    b.method,
                    b.status,
                    f"{b.confidence:.3f}",
                    b.from_profile.public_id if b.from_profile else "—",
                    b.to_profile.public_id if b.to_profile else "—",
                    orjson.dumps(b.evidence, option=orjson.OPT_SORT_KEYS).decode(),
                ]
                for b in bridge_list_for_profile(profile=obj)[:100]
            ],
        )

    @admin.display(description="Merges into this profile")
    def merge_history(self, obj):
        return _table(
            ["Merge", "Absorbed profile", "Method", "Merged", "Undone"],
            [
                [m.pk, m.source.public_id, m.method, m.merged_at, m.undone_at or "—"]
                for m in profile_merges(profile=obj)
            ],
        )

    @admin.action(description="Export everything held on the selected people (data-subject request)")
    def export_profiles(self, request, queryset):
        _run_service(self, request, queryset, lambda p: _dsar(request, p, "export"), "Queued the export of")

    @admin.action(description="Erase everything held on the selected people (data-subject request)")
    def erase_profiles(self, request, queryset):
        _run_service(self, request, queryset, lambda p: _dsar(request, p, "erase"), "Queued the erasure of")

    @admin.action(description="Split the selected profiles back into their parts (undo their merges)")
    def split_profiles(self, request, queryset):
        _run_service(self, request, queryset, lambda p: profile_split(profile=p, actor=request.user), "Split")


@admin.register(DeviceFingerprint)
class DeviceFingerprintAdmin(ReadOnlyAdmin):
    list_display = ["fingerprint_hash", "neuron", "profile", "seen_count", "first_seen_at", "last_seen_at"]
    list_filter = ["neuron", "last_seen_at"]
    search_fields = ["=fingerprint_hash", "=profile__public_id"]
    date_hierarchy = "last_seen_at"
    list_select_related = ["neuron", "profile"]
    raw_id_fields = ["profile"]


@admin.register(SessionBridge)
class SessionBridgeAdmin(ReadOnlyAdmin):
    list_display = [
        "pk",
        "method",
        "confidence",
        "status",
        "from_profile",
        "to_profile",
        "neuron",
        "created_at",
        "decided_at",
    ]
    list_filter = ["status", "method", "neuron", "created_at"]
    search_fields = ["=from_profile__public_id", "=to_profile__public_id", "=from_anonymous_id", "=to_anonymous_id"]
    date_hierarchy = "created_at"
    list_select_related = ["neuron", "from_profile", "to_profile"]
    raw_id_fields = ["from_session", "to_session", "from_profile", "to_profile"]
    actions = ["accept_links", "reject_links"]

    @admin.action(description="Accept the selected links (merge their profiles)")
    def accept_links(self, request, queryset):
        _run_service(self, request, queryset, lambda b: bridge_accept(bridge=b, actor=request.user), "Accepted")

    @admin.action(description="Reject the selected links (undo their merges)")
    def reject_links(self, request, queryset):
        _run_service(self, request, queryset, lambda b: bridge_reject(bridge=b, actor=request.user), "Rejected")


@admin.register(ProfileMerge)
class ProfileMergeAdmin(ReadOnlyAdmin):
    """What each merge moved; undone by splitting the surviving profile (its admin action)."""

    list_display = ["pk", "method", "source", "target", "merged_at", "actor", "undone_at", "undone_by"]
    list_filter = ["method", "neuron", "merged_at"]
    search_fields = ["=source__public_id", "=target__public_id", "actor"]
    date_hierarchy = "merged_at"
    list_select_related = ["source", "target"]
    raw_id_fields = ["source", "target", "bridge"]


@admin.register(ProfileAlias)
class ProfileAliasAdmin(ReadOnlyAdmin):
    list_display = ["profile", "neuron", "created_at"]
    list_filter = ["neuron"]
    search_fields = ["=profile__public_id"]
    date_hierarchy = "created_at"
    list_select_related = ["profile", "neuron"]
    exclude = ["identifier_hash", "identifier_encrypted"]
    raw_id_fields = ["profile"]


@admin.register(AnonymousTrafficCount)
class AnonymousTrafficCountAdmin(ReadOnlyAdmin):
    """Traffic without analytics consent: counts per day, path, device and country, nothing per visitor."""

    list_display = ["day", "neuron", "path", "device_type", "country", "page_views", "events"]
    list_filter = ["neuron", "device_type", "day"]
    search_fields = ["path", "=country"]
    date_hierarchy = "day"
    list_select_related = ["neuron"]
