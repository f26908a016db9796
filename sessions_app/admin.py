from __future__ import annotations

from django.contrib import admin

from sessions_app.models import BehaviorEvent, DeviceFingerprint, GlobalUserProfile, SessionBridge, UserSession
from sessions_app.services import session_end


class ReadOnlyAdmin(admin.ModelAdmin):
    """Rows written only by the product's services (events, fingerprints)."""

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False


@admin.register(UserSession)
class UserSessionAdmin(admin.ModelAdmin):
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
        "event_count",
        "page_view_count",
    ]
    list_filter = ["neuron", "device_type", "country", "end_reason", "started_at"]
    search_fields = ["public_id", "anonymous_id", "landing_page", "utm_campaign"]
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
    actions = ["end_sessions"]

    def has_add_permission(self, request):
        return False

    @admin.action(description="End the selected sessions")
    def end_sessions(self, request, queryset):
        count = 0
        for session in queryset.filter(ended_at__isnull=True):
            session_end(session=session, reason="admin")
            count += 1
        self.message_user(request, f"Ended {count} session(s).")


@admin.register(BehaviorEvent)
class BehaviorEventAdmin(ReadOnlyAdmin):
    list_display = ["event_type", "event_name", "page_path", "neuron", "timestamp", "received_at"]
    list_filter = ["neuron", "event_type", "timestamp"]
    search_fields = ["event_name", "page_path", "message_id", "anonymous_id"]
    date_hierarchy = "timestamp"
    list_select_related = ["neuron"]
    raw_id_fields = ["session", "profile"]


@admin.register(GlobalUserProfile)
class GlobalUserProfileAdmin(admin.ModelAdmin):
    list_display = ["public_id", "neuron", "is_identified", "first_seen_at", "last_seen_at", "merged_into"]
    list_filter = ["neuron", "first_seen_at"]
    search_fields = ["public_id"]
    date_hierarchy = "first_seen_at"
    list_select_related = ["neuron", "merged_into"]
    raw_id_fields = ["merged_into"]
    exclude = ["user_id_hash", "user_id_encrypted"]
    readonly_fields = ["public_id", "neuron", "first_seen_at", "last_seen_at", "created_at", "updated_at"]

    def has_add_permission(self, request):
        return False

    @admin.display(boolean=True, description="Identified")
    def is_identified(self, obj):
        return obj.is_identified


@admin.register(DeviceFingerprint)
class DeviceFingerprintAdmin(ReadOnlyAdmin):
    list_display = ["fingerprint_hash", "neuron", "profile", "seen_count", "first_seen_at", "last_seen_at"]
    list_filter = ["neuron"]
    search_fields = ["fingerprint_hash"]
    list_select_related = ["neuron", "profile"]


@admin.register(SessionBridge)
class SessionBridgeAdmin(ReadOnlyAdmin):
    list_display = ["method", "confidence", "status", "from_profile", "to_profile", "neuron", "created_at"]
    list_filter = ["neuron", "method", "status"]
    date_hierarchy = "created_at"
    list_select_related = ["neuron", "from_profile", "to_profile"]
    raw_id_fields = ["from_session", "to_session", "from_profile", "to_profile"]
