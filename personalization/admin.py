from __future__ import annotations

from django import forms
from django.contrib import admin

from config.api.errors import ValidationFailed
from personalization.content import targeting_validate
from personalization.models import (
    Archetype,
    ArchetypeMembership,
    CategoryRule,
    ContentSlot,
    ContentVariant,
    ItemNeighbour,
    ItemPopularity,
    ProfileInterest,
    Segment,
    SegmentMembership,
    SessionInterest,
)
from personalization.rules import rule_validate
from personalization.selectors import category_rules_forget
from personalization.services import segment_create, segment_delete, segment_update
from personalization.tasks import compute_archetypes, compute_recommendations, materialize_segments


def _form_errors(exc: ValidationFailed) -> forms.ValidationError:
    return forms.ValidationError(
        [f"{path}: {message}" for path, messages in exc.errors.items() for message in messages]
    )


class ReadOnlyAdmin(admin.ModelAdmin):
    """Rows written only by the services and jobs (which also delete them: erasure, recomputation)."""

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


class SegmentForm(forms.ModelForm):
    class Meta:
        model = Segment
        fields = ["neuron", "slug", "name", "description", "rule", "is_active"]

    def clean_rule(self):
        rule = self.cleaned_data["rule"]
        try:
            rule_validate(rule)
        except ValidationFailed as exc:
            raise _form_errors(exc) from exc
        return rule


SEGMENT_FIELDS = ("slug", "name", "description", "rule", "is_active")


@admin.register(Segment)
class SegmentAdmin(admin.ModelAdmin):
    """Saved through personalization's segment services, which validate the rule and audit the change."""

    form = SegmentForm
    list_display = ["slug", "name", "neuron", "is_active", "size", "materialized_at", "updated_at"]
    list_filter = ["neuron", "is_active"]
    search_fields = ["slug", "name"]
    date_hierarchy = "updated_at"
    list_select_related = ["neuron"]
    readonly_fields = ["size", "materialized_at", "created_at", "updated_at"]
    actions = ["materialize"]

    def get_readonly_fields(self, request, obj=None):
        # A segment's list belongs to its site; moving it would mix two sites' sessions.
        return [*self.readonly_fields, "neuron"] if obj else self.readonly_fields

    def save_model(self, request, obj, form, change):
        data = form.cleaned_data
        if change:
            changes = {name: data[name] for name in form.changed_data if name in SEGMENT_FIELDS}
            if changes:
                segment_update(segment=obj, changes=changes, actor=request.user)
            obj.refresh_from_db()
            return
        segment = segment_create(
            neuron=data["neuron"],
            name=data["name"],
            slug=data["slug"],
            description=data.get("description", ""),
            rule=data["rule"],
            is_active=data.get("is_active", True),
            actor=request.user,
        )
        obj.pk = segment.pk
        obj.refresh_from_db()

    def delete_model(self, request, obj):
        segment_delete(segment=obj, actor=request.user)

    def delete_queryset(self, request, queryset):
        for segment in queryset:
            segment_delete(segment=segment, actor=request.user)

    @admin.action(description="Materialize the lists of these segments' sites now")
    def materialize(self, request, queryset):
        neuron_ids = sorted(set(queryset.values_list("neuron_id", flat=True)))
        for neuron_id in neuron_ids:
            materialize_segments.delay(neuron_id)
        self.message_user(request, f"Queued materialization for {len(neuron_ids)} site(s).")


@admin.register(SegmentMembership)
class SegmentMembershipAdmin(ReadOnlyAdmin):
    """Segment lists as materialized by the Celery job."""

    list_display = ["segment", "session", "computed_at"]
    list_filter = ["segment"]
    search_fields = ["=session__public_id", "segment__slug"]
    date_hierarchy = "computed_at"
    list_select_related = ["segment", "session"]
    raw_id_fields = ["session"]


@admin.register(Archetype)
class ArchetypeAdmin(ReadOnlyAdmin):
    list_display = ["label", "key", "neuron", "size", "silhouette", "computed_at"]
    list_filter = ["neuron"]
    search_fields = ["label", "key"]
    date_hierarchy = "computed_at"
    list_select_related = ["neuron"]
    actions = ["recompute"]

    @admin.action(description="Recompute the archetypes of these sites now")
    def recompute(self, request, queryset):
        neuron_ids = sorted(set(queryset.values_list("neuron_id", flat=True)))
        for neuron_id in neuron_ids:
            compute_archetypes.delay(neuron_id)
        self.message_user(request, f"Queued archetype clustering for {len(neuron_ids)} site(s).")


class ContentVariantForm(forms.ModelForm):
    class Meta:
        model = ContentVariant
        fields = ["key", "content", "targeting", "priority", "is_default", "is_active"]

    def clean_targeting(self):
        targeting = self.cleaned_data["targeting"] or {}
        try:
            targeting_validate(targeting)
        except ValidationFailed as exc:
            raise _form_errors(exc) from exc
        return targeting


class ContentVariantInline(admin.StackedInline):
    model = ContentVariant
    form = ContentVariantForm
    extra = 0


@admin.register(ContentSlot)
class ContentSlotAdmin(admin.ModelAdmin):
    list_display = ["key", "neuron", "description"]
    list_filter = ["neuron"]
    search_fields = ["key", "description"]
    list_select_related = ["neuron"]
    inlines = [ContentVariantInline]


@admin.register(ArchetypeMembership)
class ArchetypeMembershipAdmin(ReadOnlyAdmin):
    list_display = ["profile", "archetype", "distance"]
    list_filter = ["archetype"]
    search_fields = ["=profile__public_id", "archetype__key"]
    list_select_related = ["profile", "archetype"]
    raw_id_fields = ["profile"]


@admin.register(ContentVariant)
class ContentVariantAdmin(admin.ModelAdmin):
    """Variants are edited inside their slot too; this list shows them across slots."""

    form = ContentVariantForm
    list_display = ["key", "slot", "priority", "is_default", "is_active"]
    list_filter = ["is_active", "is_default", "slot__neuron"]
    search_fields = ["key", "slot__key"]
    list_select_related = ["slot"]


@admin.register(CategoryRule)
class CategoryRuleAdmin(admin.ModelAdmin):
    list_display = ["path_prefix", "category", "neuron"]
    list_filter = ["neuron"]
    search_fields = ["path_prefix", "category"]
    list_select_related = ["neuron"]

    # Ingestion caches the mapping per process for a minute; this process sees edits at once.
    def save_model(self, request, obj, form, change):
        super().save_model(request, obj, form, change)
        category_rules_forget(neuron_id=obj.neuron_id)

    def delete_model(self, request, obj):
        super().delete_model(request, obj)
        category_rules_forget(neuron_id=obj.neuron_id)


@admin.register(ProfileInterest)
class ProfileInterestAdmin(ReadOnlyAdmin):
    list_display = ["profile", "event_count", "engagement_score", "session_count", "as_of"]
    search_fields = ["=profile__public_id"]
    date_hierarchy = "as_of"
    list_select_related = ["profile"]
    raw_id_fields = ["profile"]


@admin.register(SessionInterest)
class SessionInterestAdmin(ReadOnlyAdmin):
    list_display = ["session", "event_count", "as_of"]
    search_fields = ["=session__public_id"]
    date_hierarchy = "as_of"
    list_select_related = ["session"]
    raw_id_fields = ["session"]


@admin.register(ItemPopularity)
class ItemPopularityAdmin(ReadOnlyAdmin):
    list_display = ["item", "kind", "visitors", "neuron", "computed_at"]
    list_filter = ["neuron", "kind"]
    search_fields = ["item"]
    date_hierarchy = "computed_at"
    actions = ["relearn"]

    @admin.action(description="Relearn co-occurrence for these sites now")
    def relearn(self, request, queryset):
        neuron_ids = sorted(set(queryset.values_list("neuron_id", flat=True)))
        for neuron_id in neuron_ids:
            compute_recommendations.delay(neuron_id)
        self.message_user(request, f"Queued co-occurrence learning for {len(neuron_ids)} site(s).")


@admin.register(ItemNeighbour)
class ItemNeighbourAdmin(ReadOnlyAdmin):
    list_display = ["item", "neighbour", "kind", "score", "together", "neuron", "computed_at"]
    list_filter = ["neuron", "kind"]
    search_fields = ["item", "neighbour"]
    date_hierarchy = "computed_at"
