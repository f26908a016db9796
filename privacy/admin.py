"""Admin for privacy: the ledger, requests and audit log are read-only; retention policies are
edited through privacy.retention.retention_policy_update, so each change is audited."""

from __future__ import annotations

from django.contrib import admin

from privacy.models import AuditEntry, ConsentRecord, DataSubjectRequest, ErasureTombstone, RetentionPolicy
from privacy.retention import retention_policy_update


class ReadOnlyAdmin(admin.ModelAdmin):
    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        # Deletion happens through erasure and retention, which audit it; never row by row here.
        return False


@admin.register(AuditEntry)
class AuditEntryAdmin(ReadOnlyAdmin):
    list_display = ["seq", "created_at", "actor", "action", "subject"]
    list_filter = ["action", "created_at"]
    search_fields = ["actor", "action", "subject"]
    date_hierarchy = "created_at"
    ordering = ["-seq"]


@admin.register(ConsentRecord)
class ConsentRecordAdmin(ReadOnlyAdmin):
    list_display = ["recorded_at", "purpose", "granted", "source", "policy_version", "neuron", "session", "profile"]
    list_filter = ["purpose", "granted", "source", "neuron"]
    search_fields = ["anonymous_id", "policy_version", "public_id"]
    date_hierarchy = "recorded_at"
    list_select_related = ["neuron", "session", "profile"]
    raw_id_fields = ["session", "profile"]


@admin.register(DataSubjectRequest)
class DataSubjectRequestAdmin(ReadOnlyAdmin):
    list_display = ["public_id", "kind", "status", "subject_type", "requested_by", "created_at", "completed_at"]
    list_filter = ["kind", "status", "subject_type"]
    search_fields = ["public_id", "requested_by"]
    date_hierarchy = "created_at"
    exclude = ["subject_encrypted", "result_encrypted", "subject_hash"]


@admin.register(ErasureTombstone)
class ErasureTombstoneAdmin(ReadOnlyAdmin):
    list_display = ["kind", "created_at", "request"]
    list_filter = ["kind"]
    search_fields = ["=request__public_id"]
    date_hierarchy = "created_at"
    list_select_related = ["request"]
    exclude = ["identifier_hash"]


@admin.register(RetentionPolicy)
class RetentionPolicyAdmin(admin.ModelAdmin):
    list_display = ["data_type", "duration_days", "enabled", "last_run_at", "last_purged", "updated_at"]
    list_filter = ["enabled"]
    fields = ["data_type", "duration_days", "enabled", "last_run_at", "last_purged"]
    readonly_fields = ["data_type", "last_run_at", "last_purged"]

    def has_add_permission(self, request):
        return False  # one policy per data type, created by migration

    def has_delete_permission(self, request, obj=None):
        return False

    def save_model(self, request, obj, form, change):
        retention_policy_update(
            policy=obj,
            duration_days=form.cleaned_data["duration_days"],
            enabled=form.cleaned_data["enabled"],
            actor=request.user,
        )
