"""Personalization API: segments (staff), archetypes (staff), and per-session content,
recommendations, interests and UI preferences (session token). Parse, call, render."""

from __future__ import annotations

import re
from typing import Any

from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers, status
from rest_framework.authentication import SessionAuthentication
from rest_framework.response import Response
from rest_framework.views import APIView

from config.api.errors import NotFound, ValidationFailed
from config.api.pagination import KeysetPagination
from config.api.permissions import StaffWithPermissions
from config.api.schema import paginated, problem, results_list
from config.api.serializers import JSONObjectField, StrictBooleanField, StrictCharField, StrictSerializer
from personalization.content import MAX_SLOTS_PER_REQUEST, content_choose
from personalization.models import Archetype, ItemKind, Segment
from personalization.selectors import (
    archetype_list,
    interests_for_session,
    neuron_get_by_slug,
    personalization_allowed,
    preferences_get,
    recommendations_for_session,
    segment_get,
    segment_list,
    segment_members,
    segments_for_session,
    top_categories,
)
from personalization.services import preferences_update, segment_create, segment_delete, segment_update
from sessions_app.authentication import SessionTokenAuthentication
from sessions_app.permissions import IsSessionTokenHolder

_SLOT_KEY = re.compile(r"^[-a-zA-Z0-9_]{1,64}$")
RECOMMENDATION_SLOTS = {"viewed-together": ItemKind.VIEWED, "bought-together": ItemKind.BOUGHT}
MAX_RECOMMENDATIONS = 50


# ---------------------------------------------------------------------------
# Segments (operators)
# ---------------------------------------------------------------------------


class SegmentOutput(serializers.Serializer):
    id = serializers.IntegerField()
    neuronId = serializers.CharField(source="neuron.slug")
    slug = serializers.CharField()
    name = serializers.CharField()
    description = serializers.CharField()
    rule = serializers.JSONField()
    isActive = serializers.BooleanField(source="is_active")
    size = serializers.IntegerField()
    materializedAt = serializers.DateTimeField(source="materialized_at", allow_null=True)
    createdAt = serializers.DateTimeField(source="created_at")
    updatedAt = serializers.DateTimeField(source="updated_at")


def _neuron_filter(validated: dict[str, Any]) -> Any:
    """The site a `neuronId` query parameter names (None when absent); an unknown one is a 404."""
    if "neuronId" not in validated:
        return None
    neuron = neuron_get_by_slug(slug=validated["neuronId"])
    if neuron is None:
        raise NotFound("No such site.")
    return neuron


class StaffApi(APIView):
    """Operators: staff with the segment or archetype model permission matching the method."""

    authentication_classes = [SessionAuthentication]
    permission_classes = [StaffWithPermissions]


class SegmentListApi(StaffApi):
    required_permissions = {"GET": ["personalization.view_segment"], "POST": ["personalization.add_segment"]}

    class SegmentCreateInput(StrictSerializer):
        neuronId = StrictCharField(max_length=64)
        name = StrictCharField(max_length=200)
        slug = StrictCharField(required=False, max_length=64)
        description = StrictCharField(required=False, allow_blank=True, max_length=2000)
        rule = JSONObjectField(max_bytes=32 * 1024)
        isActive = StrictBooleanField(required=False)

    class FilterInput(StrictSerializer):
        neuronId = StrictCharField(required=False, max_length=64)
        cursor = StrictCharField(required=False)
        pageSize = StrictCharField(required=False)  # read (and refused when bad) by KeysetPagination

    @extend_schema(
        parameters=[OpenApiParameter("neuronId", str, description="Only this site's segments.")],
        responses={200: paginated(SegmentOutput), 404: problem("No site with this neuronId.")},
        summary="List rule segments",
    )
    def get(self, request):
        filters = self.FilterInput(data=request.query_params.dict())
        filters.is_valid(raise_exception=True)
        neuron = _neuron_filter(filters.validated_data)
        paginator = KeysetPagination()
        page = paginator.paginate_queryset(segment_list(neuron=neuron), request, view=self)
        return paginator.get_paginated_response(SegmentOutput(page, many=True).data)

    @extend_schema(
        request=SegmentCreateInput,
        responses={201: SegmentOutput, 409: problem("The slug is taken on this site.")},
        summary="Create a rule segment",
    )
    def post(self, request):
        data = self.SegmentCreateInput(data=request.data)
        data.is_valid(raise_exception=True)
        v = data.validated_data
        neuron = neuron_get_by_slug(slug=v["neuronId"])
        if neuron is None:
            raise ValidationFailed(errors={"neuronId": ["No such site."]})
        segment = segment_create(
            neuron=neuron,
            name=v["name"],
            slug=v.get("slug"),
            description=v.get("description", ""),
            rule=v["rule"],
            is_active=v.get("isActive", True),
            actor=request.user,
        )
        return Response(SegmentOutput(segment).data, status=status.HTTP_201_CREATED)


class SegmentDetailApi(StaffApi):
    required_permissions = {
        "GET": ["personalization.view_segment"],
        "PATCH": ["personalization.change_segment"],
        "DELETE": ["personalization.delete_segment"],
    }

    class SegmentUpdateInput(StrictSerializer):
        name = StrictCharField(required=False, max_length=200)
        slug = StrictCharField(required=False, max_length=64)
        description = StrictCharField(required=False, allow_blank=True, max_length=2000)
        rule = JSONObjectField(required=False, max_bytes=32 * 1024)
        isActive = StrictBooleanField(required=False)

    def _segment(self, segment_id: int) -> Segment:
        segment = segment_get(segment_id=segment_id)
        if segment is None:
            raise NotFound("No such segment.")
        return segment

    @extend_schema(responses={200: SegmentOutput}, summary="Read a rule segment")
    def get(self, request, segment_id):
        return Response(SegmentOutput(self._segment(segment_id)).data)

    @extend_schema(
        request=SegmentUpdateInput,
        responses={200: SegmentOutput, 409: problem("The slug is taken on this site.")},
        summary="Change a rule segment",
    )
    def patch(self, request, segment_id):
        segment = self._segment(segment_id)
        data = self.SegmentUpdateInput(data=request.data)
        data.is_valid(raise_exception=True)
        renamed = {"isActive": "is_active"}
        changes = {renamed.get(key, key): value for key, value in data.validated_data.items()}
        return Response(SegmentOutput(segment_update(segment=segment, changes=changes, actor=request.user)).data)

    @extend_schema(responses={204: None}, summary="Delete a rule segment")
    def delete(self, request, segment_id):
        segment_delete(segment=self._segment(segment_id), actor=request.user)
        return Response(status=status.HTTP_204_NO_CONTENT)


class SegmentMembersApi(StaffApi):
    required_permissions = {"GET": ["personalization.view_segment"]}

    class MemberOutput(serializers.Serializer):
        sessionId = serializers.UUIDField(source="session.public_id")
        profileId = serializers.UUIDField(source="session.profile.public_id", allow_null=True, default=None)
        computedAt = serializers.DateTimeField(source="computed_at")

    class PageInput(StrictSerializer):
        cursor = StrictCharField(required=False)
        pageSize = StrictCharField(required=False)  # read (and refused when bad) by KeysetPagination

    @extend_schema(responses={200: paginated(MemberOutput)}, summary="The materialized member list of a segment")
    def get(self, request, segment_id):
        self.PageInput(data=request.query_params.dict()).is_valid(raise_exception=True)
        segment = segment_get(segment_id=segment_id)
        if segment is None:
            raise NotFound("No such segment.")
        paginator = KeysetPagination()
        page = paginator.paginate_queryset(segment_members(segment=segment), request, view=self)
        return paginator.get_paginated_response(self.MemberOutput(page, many=True).data)


class ArchetypeOutput(serializers.Serializer):
    neuronId = serializers.CharField(source="neuron.slug")
    key = serializers.CharField()
    label = serializers.CharField()
    topCategories = serializers.ListField(source="top_categories", child=serializers.CharField())
    centroid = serializers.DictField(child=serializers.FloatField())
    size = serializers.IntegerField()
    silhouette = serializers.FloatField(allow_null=True)
    computedAt = serializers.DateTimeField(source="computed_at")


class ArchetypeListApi(StaffApi):
    required_permissions = {"GET": ["personalization.view_archetype"]}

    class FilterInput(StrictSerializer):
        neuronId = StrictCharField(required=False, max_length=64)

    @extend_schema(
        parameters=[OpenApiParameter("neuronId", str, description="Only this site's archetypes.")],
        responses={200: results_list(ArchetypeOutput), 404: problem("No site with this neuronId.")},
        summary="List archetypes (k-means clusters of profile interests)",
    )
    def get(self, request):
        filters = self.FilterInput(data=request.query_params.dict())
        filters.is_valid(raise_exception=True)
        neuron = _neuron_filter(filters.validated_data)
        return Response({"results": ArchetypeOutput(archetype_list(neuron=neuron), many=True).data})


# ---------------------------------------------------------------------------
# Per session (browser)
# ---------------------------------------------------------------------------


class SessionTokenApi(APIView):
    authentication_classes = [SessionTokenAuthentication]
    permission_classes = [IsSessionTokenHolder]

    @property
    def session(self):
        return self.request.auth.session


class ReasonOutput(serializers.Serializer):
    code = serializers.ChoiceField(choices=["targeted", "default", "no-consent", "no-match"])
    detail = serializers.CharField()
    matched = serializers.DictField(required=False)


class SlotOutput(serializers.Serializer):
    variant = serializers.CharField(allow_null=True)
    content = serializers.JSONField(allow_null=True)
    reason = ReasonOutput()


class ContentApi(SessionTokenApi):
    class ContentOutput(serializers.Serializer):
        sessionId = serializers.UUIDField()
        personalized = serializers.BooleanField()
        slots = serializers.DictField(child=SlotOutput())

    @extend_schema(
        parameters=[OpenApiParameter("slots", str, required=True, description="Comma-separated slot keys.")],
        responses={200: ContentOutput},
        summary="The content variant of each slot for this visitor, with the reason",
    )
    def get(self, request, session_id):
        raw = request.query_params.get("slots", "")
        keys = list(dict.fromkeys(key.strip() for key in raw.split(",") if key.strip()))
        if not keys:
            raise ValidationFailed(errors={"slots": ["Name at least one slot: ?slots=hero,sidebar."]})
        if len(keys) > MAX_SLOTS_PER_REQUEST:
            raise ValidationFailed(errors={"slots": [f"At most {MAX_SLOTS_PER_REQUEST} slots per request."]})
        bad = [key for key in keys if not _SLOT_KEY.match(key)]
        if bad:
            raise ValidationFailed(errors={"slots": [f"Not a slot key: {key[:70]!r}." for key in bad]})
        choices = content_choose(session=self.session, slot_keys=keys)
        body: dict[str, Any] = {
            "sessionId": self.session.public_id,
            "personalized": all(choice.reason.code != "no-consent" for choice in choices),
            "slots": {
                choice.slot.key: {
                    "variant": choice.variant.key if choice.variant else None,
                    "content": choice.variant.content if choice.variant else None,
                    "reason": choice.reason.as_dict(),
                }
                for choice in choices
            },
        }
        return Response(self.ContentOutput(body).data)


class RecommendationOutput(serializers.Serializer):
    itemId = serializers.CharField()
    score = serializers.FloatField()
    reason = serializers.ChoiceField(choices=["together", "popular"])
    because = serializers.CharField(required=False, help_text="The seen item it was found through.")


class RecommendationsApi(SessionTokenApi):
    class QueryInput(StrictSerializer):
        slot = serializers.ChoiceField(required=False, choices=sorted(RECOMMENDATION_SLOTS))
        limit = serializers.IntegerField(required=False, min_value=1, max_value=MAX_RECOMMENDATIONS)

    class RecommendationsOutput(serializers.Serializer):
        sessionId = serializers.UUIDField()
        slot = serializers.CharField()
        personalized = serializers.BooleanField()
        reason = serializers.CharField()
        items = RecommendationOutput(many=True)

    @extend_schema(
        parameters=[
            OpenApiParameter("slot", str, enum=sorted(RECOMMENDATION_SLOTS), description="Default viewed-together."),
            OpenApiParameter("limit", int, description=f"1..{MAX_RECOMMENDATIONS}, default 10."),
        ],
        responses={200: RecommendationsOutput},
        summary="Items for this visitor: viewed/bought together with what they saw, else popular",
    )
    def get(self, request, session_id):
        query = self.QueryInput(data=request.query_params.dict())
        query.is_valid(raise_exception=True)
        slot = query.validated_data.get("slot", "viewed-together")
        personalized, items = recommendations_for_session(
            session=self.session, kind=RECOMMENDATION_SLOTS[slot], limit=query.validated_data.get("limit", 10)
        )
        body = {
            "sessionId": self.session.public_id,
            "slot": slot,
            "personalized": personalized,
            "reason": (
                "Co-occurrence with the items this visitor saw, then popularity; seen items excluded."
                if personalized
                else "Popular items only: the visitor has not consented to personalization."
            ),
            "items": [
                {
                    "itemId": r.item,
                    "score": r.score,
                    "reason": r.reason,
                    **({"because": r.because} if r.because else {}),
                }
                for r in items
            ],
        }
        return Response(self.RecommendationsOutput(body).data)


class InterestsApi(SessionTokenApi):
    class InterestsOutput(serializers.Serializer):
        sessionId = serializers.UUIDField()
        personalized = serializers.BooleanField()
        session = serializers.ListField(child=serializers.DictField())
        profile = serializers.ListField(child=serializers.DictField(), allow_null=True)
        engagement = serializers.FloatField(allow_null=True)
        segments = serializers.ListField(child=serializers.CharField())
        archetype = serializers.DictField(allow_null=True)

    @extend_schema(responses={200: InterestsOutput}, summary="This visitor's interests, segments and archetype")
    def get(self, request, session_id):
        session = self.session
        body: dict[str, Any] = {
            "sessionId": session.public_id,
            "personalized": False,
            "session": [],
            "profile": None,
            "engagement": None,
            "segments": [],
            "archetype": None,
        }
        if personalization_allowed(session):
            view = interests_for_session(session=session)
            archetype: Archetype | None = view.archetype
            body.update(
                personalized=True,
                session=top_categories(view.session, 10),
                profile=top_categories(view.profile, 10) if view.profile is not None else None,
                engagement=view.engagement,
                segments=[segment.slug for segment in segments_for_session(session=session)],
                archetype={"key": archetype.key, "label": archetype.label} if archetype else None,
            )
        return Response(self.InterestsOutput(body).data)


class PreferencesApi(SessionTokenApi):
    class PreferencesInput(StrictSerializer):
        theme = serializers.ChoiceField(required=False, choices=["light", "dark", "system"])
        language = StrictCharField(required=False, max_length=35)
        reducedMotion = StrictBooleanField(required=False)
        layout = JSONObjectField(required=False, max_bytes=2048)

        def validate_language(self, value: str) -> str:
            # BCP 47 shape (en, en-GB, zh-Hant-TW): enough to reject junk, not a registry check.
            if not re.fullmatch(r"[A-Za-z]{2,3}(-[A-Za-z0-9]{2,8}){0,3}", value):
                raise serializers.ValidationError("Expected a BCP 47 language tag such as en or pt-BR.")
            return value

        def validate_layout(self, value: dict[str, Any]) -> dict[str, Any]:
            if len(value) > 32:
                raise serializers.ValidationError("At most 32 layout flags.")
            for flag, setting in value.items():
                if not re.fullmatch(r"[A-Za-z][A-Za-z0-9_-]{0,39}", flag):
                    raise serializers.ValidationError(f"Not a flag name: {flag[:50]!r}.")
                if setting is not None and not isinstance(setting, bool):
                    raise serializers.ValidationError(f"Flag {flag!r} must be true, false or null (to remove).")
            return value

    class PreferencesOutput(serializers.Serializer):
        theme = serializers.CharField()
        language = serializers.CharField(allow_null=True)
        reducedMotion = serializers.BooleanField()
        layout = serializers.DictField(child=serializers.BooleanField())

    @extend_schema(responses={200: PreferencesOutput}, summary="UI preferences (shared by the person's devices)")
    def get(self, request, session_id):
        return Response(self.PreferencesOutput(preferences_get(session=self.session)).data)

    @extend_schema(request=PreferencesInput, responses={200: PreferencesOutput}, summary="Change UI preferences")
    def put(self, request, session_id):
        data = self.PreferencesInput(data=request.data)
        data.is_valid(raise_exception=True)
        v = data.validated_data
        prefs = preferences_update(
            session=self.session,
            theme=v.get("theme"),
            language=v.get("language"),
            reduced_motion=v.get("reducedMotion"),
            layout=v.get("layout"),
        )
        return Response(self.PreferencesOutput(prefs).data)
