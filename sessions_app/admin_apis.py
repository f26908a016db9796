"""The operators' admin API: list, search, export and bulk actions over sessions (staff only).

Every bulk operation is bounded, offers a dry run and is audited with its filter and count.
"""

from __future__ import annotations

from typing import Any

import orjson
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers, status
from rest_framework.negotiation import DefaultContentNegotiation
from rest_framework.response import Response
from rest_framework.views import APIView

from config.api.errors import ValidationFailed
from config.api.pagination import KeysetPagination
from config.api.permissions import StaffWithPermissions
from config.api.schema import BodyOnDeleteSchema, filterset_parameters, paginated, problem
from config.api.serializers import JSONObjectField, StrictBooleanField, StrictCharField, StrictSerializer
from privacy.models import RequestStatus
from privacy.selectors import data_subject_request_list
from sessions_app.admin_selectors import EventCriteria, session_admin_list
from sessions_app.admin_services import sessions_bulk_update, sessions_erase
from sessions_app.authentication import StaffSessionAuthentication
from sessions_app.exports import EXPORT_FORMATS, sessions_export_response
from sessions_app.filters import SessionFilter
from sessions_app.models import UserSession

PAGINATION_PARAMS = frozenset({"cursor", "pageSize"})
MAX_EVENT_CRITERIA = 5
MAX_SESSION_IDS = 10_000


VIEW_SESSIONS = ("sessions_app.view_usersession",)
CHANGE_SESSIONS = ("sessions_app.change_usersession",)
DELETE_SESSIONS = ("sessions_app.delete_usersession",)


class StaffApi(APIView):
    """Operators: staff with the session model permission matching what the endpoint does."""

    authentication_classes = [StaffSessionAuthentication]
    permission_classes = [StaffWithPermissions]


class AdminSessionOutput(serializers.Serializer):
    sessionId = serializers.UUIDField()
    neuron = serializers.CharField()
    anonymousId = serializers.CharField()
    identified = serializers.BooleanField()
    device = serializers.DictField(child=serializers.CharField())
    country = serializers.CharField()
    landingPage = serializers.CharField()
    startedAt = serializers.DateTimeField()
    lastActivityAt = serializers.DateTimeField()
    endedAt = serializers.DateTimeField(allow_null=True)
    endReason = serializers.CharField()
    eventCount = serializers.IntegerField()
    pageViewCount = serializers.IntegerField()
    conversionCount = serializers.IntegerField()
    engagementScore = serializers.FloatField()
    consent = serializers.DictField()
    tags = serializers.ListField(child=serializers.CharField())
    metadata = serializers.DictField()


class ExportRowOutput(AdminSessionOutput):
    """One session of an export: flat, the CSV's columns (admin_selectors.EXPORT_COLUMNS)."""

    device = tags = metadata = None
    deviceType = serializers.CharField()
    browser = serializers.CharField()
    os = serializers.CharField()
    referrer = serializers.CharField()
    utmSource = serializers.CharField()
    utmMedium = serializers.CharField()
    utmCampaign = serializers.CharField()


def admin_session_payload(session: UserSession) -> dict[str, Any]:
    metadata = session.metadata or {}
    tags = metadata.get("tags")
    return AdminSessionOutput(
        {
            "sessionId": session.public_id,
            "neuron": session.neuron.slug,
            "anonymousId": session.anonymous_id,
            "identified": bool(session.profile and session.profile.user_id_hash),
            "device": {"type": session.device_type, "browser": session.browser, "os": session.os},
            "country": session.country,
            "landingPage": session.landing_page,
            "startedAt": session.started_at,
            "lastActivityAt": session.last_activity_at,
            "endedAt": session.ended_at,
            "endReason": session.end_reason,
            "eventCount": session.event_count,
            "pageViewCount": session.page_view_count,
            "conversionCount": session.conversion_count,
            "engagementScore": session.engagement_score,
            "consent": session.consent,
            "tags": tags if isinstance(tags, list) else [],
            "metadata": metadata,
        }
    ).data


class EventCriteriaInput(StrictSerializer):
    type = StrictCharField(required=False, max_length=32)
    name = StrictCharField(required=False, max_length=200)
    pathPrefix = StrictCharField(required=False, max_length=1024)
    after = serializers.DateTimeField(required=False)
    before = serializers.DateTimeField(required=False)
    exists = StrictBooleanField(required=False, default=True)

    def to_criteria(self, data: dict[str, Any]) -> EventCriteria:
        return EventCriteria(
            event_type=data.get("type"),
            event_name=data.get("name"),
            path_prefix=data.get("pathPrefix"),
            after=data.get("after"),
            before=data.get("before"),
            exists=data.get("exists", True),
        )


class SelectionInput(StrictSerializer):
    """Which sessions: a filter document, event criteria, and/or explicit session ids."""

    filter = JSONObjectField(required=False, max_bytes=4 * 1024)
    events = EventCriteriaInput(many=True, required=False)
    sessionIds = serializers.ListField(
        child=serializers.UUIDField(), required=False, allow_empty=False, max_length=MAX_SESSION_IDS
    )

    def validate_events(self, value: list[dict[str, Any]]) -> list[dict[str, Any]]:
        if len(value) > MAX_EVENT_CRITERIA:
            raise serializers.ValidationError(f"At most {MAX_EVENT_CRITERIA} event criteria.")
        return value


def _selection_queryset(data: dict[str, Any]) -> Any:
    criteria = [EventCriteriaInput().to_criteria(item) for item in data.get("events") or []]
    queryset = session_admin_list(filters=data.get("filter") or {}, events=criteria)
    if data.get("sessionIds"):
        queryset = queryset.filter(public_id__in=data["sessionIds"])
    return queryset


def _selection_for_audit(data: dict[str, Any]) -> dict[str, Any]:
    return orjson.loads(orjson.dumps(data, default=str))


class AdminSessionListApi(StaffApi):
    required_permissions = {"GET": VIEW_SESSIONS}

    @extend_schema(
        parameters=[
            OpenApiParameter("cursor", str),
            OpenApiParameter("pageSize", int),
            *filterset_parameters(SessionFilter),
        ],
        responses={200: paginated(AdminSessionOutput)},
        summary="List sessions (filters, keyset pagination)",
    )
    def get(self, request):
        queryset = session_admin_list(filters=request.query_params, ignore=PAGINATION_PARAMS)
        paginator = KeysetPagination()
        page = paginator.paginate_queryset(queryset, request, view=self)
        return paginator.get_paginated_response([admin_session_payload(s) for s in page])


class AdminSessionSearchApi(StaffApi):
    required_permissions = {"POST": VIEW_SESSIONS}  # a read with a filter document

    @extend_schema(
        request=SelectionInput,
        parameters=[OpenApiParameter("cursor", str), OpenApiParameter("pageSize", int)],
        responses={200: paginated(AdminSessionOutput)},
        summary="Search sessions with a filter document over sessions and their events",
    )
    def post(self, request):
        data = SelectionInput(data=request.data)
        data.is_valid(raise_exception=True)
        queryset = _selection_queryset(data.validated_data)
        paginator = KeysetPagination()
        page = paginator.paginate_queryset(queryset, request, view=self)
        return paginator.get_paginated_response([admin_session_payload(s) for s in page])


class IgnoreFormatNegotiation(DefaultContentNegotiation):
    """`?format=` names the export format here, not a DRF renderer."""

    def select_renderer(self, request, renderers, format_suffix=None):
        return renderers[0], renderers[0].media_type


class AdminSessionExportApi(StaffApi):
    required_permissions = {"GET": VIEW_SESSIONS}
    content_negotiation_class = IgnoreFormatNegotiation

    @extend_schema(
        parameters=[
            OpenApiParameter("format", str, enum=["csv", "json"], required=True),
            *filterset_parameters(SessionFilter),
        ],
        responses={(200, "text/csv"): str, (200, "application/json"): ExportRowOutput(many=True)},
        summary="Export sessions (streamed CSV or JSON)",
    )
    def get(self, request):
        export_format = request.query_params.get("format", "")
        if export_format not in EXPORT_FORMATS:
            raise ValidationFailed(errors={"format": ["Must be csv or json."]})
        queryset = session_admin_list(filters=request.query_params, ignore=frozenset({"format"}))
        return sessions_export_response(
            request=request,
            queryset=queryset,
            export_format=export_format,
            actor=request.user,
            selection={k: vs if len(vs) > 1 else vs[0] for k, vs in request.query_params.lists() if k != "format"},
        )


class AdminSessionBulkUpdateApi(StaffApi):
    required_permissions = {"PUT": CHANGE_SESSIONS}

    class BulkUpdateInput(SelectionInput):
        end = StrictBooleanField(required=False, default=False)
        addTags = serializers.ListField(child=StrictCharField(max_length=64), required=False, max_length=20)
        removeTags = serializers.ListField(child=StrictCharField(max_length=64), required=False, max_length=20)
        metadata = JSONObjectField(required=False, max_bytes=8 * 1024)
        dryRun = StrictBooleanField(required=False, default=False)

        def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
            if not ({"filter", "sessionIds", "events"} & set(attrs)):
                raise serializers.ValidationError(
                    {"filter": ["Say which sessions: filter, events or sessionIds ({} means all)."]}
                )
            if not (attrs["end"] or attrs.get("addTags") or attrs.get("removeTags") or attrs.get("metadata")):
                raise serializers.ValidationError({"end": ["Nothing to change: set end, tags or metadata."]})
            return attrs

    class BulkResultOutput(serializers.Serializer):
        matched = serializers.IntegerField()
        changed = serializers.IntegerField()
        dryRun = serializers.BooleanField()
        limit = serializers.IntegerField()
        withinLimit = serializers.BooleanField()

    @extend_schema(
        request=BulkUpdateInput,
        responses={200: BulkResultOutput, 422: problem("The selection holds more sessions than the limit.")},
        summary="Bulk-update sessions",
    )
    def put(self, request):
        data = self.BulkUpdateInput(data=request.data)
        data.is_valid(raise_exception=True)
        v = data.validated_data
        result = sessions_bulk_update(
            actor=request.user,
            queryset=_selection_queryset(v),
            selection=_selection_for_audit({k: v[k] for k in ("filter", "events", "sessionIds") if k in v}),
            end=v["end"],
            tags_add=v.get("addTags"),
            tags_remove=v.get("removeTags"),
            metadata=v.get("metadata"),
            dry_run=v["dryRun"],
        )
        body = {
            "matched": result.matched,
            "changed": result.changed,
            "dryRun": result.dry_run,
            "limit": result.limit,
            "withinLimit": result.matched <= result.limit,
        }
        return Response(self.BulkResultOutput(body).data)


class AdminSessionDeleteApi(StaffApi):
    required_permissions = {"DELETE": DELETE_SESSIONS}
    schema = BodyOnDeleteSchema()

    class DeleteInput(SelectionInput):
        ids = serializers.ListField(
            child=serializers.UUIDField(),
            required=False,
            allow_empty=False,
            max_length=MAX_SESSION_IDS,
            help_text="Session ids (the same as sessionIds).",
        )
        dryRun = StrictBooleanField(required=False, default=False)

        def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
            if "ids" in attrs and "sessionIds" in attrs:
                raise serializers.ValidationError({"ids": ["Send ids or sessionIds, not both."]})
            if "ids" in attrs:
                attrs["sessionIds"] = attrs.pop("ids")
            if not ({"filter", "sessionIds", "events"} & set(attrs)):
                raise serializers.ValidationError(
                    {"filter": ["Say which sessions: ids, filter or events ({} as filter means all)."]}
                )
            return attrs

    class ErasureRequestOutput(serializers.Serializer):
        requestId = serializers.UUIDField(source="public_id")
        status = serializers.CharField()
        statusUrl = serializers.SerializerMethodField()

        def get_statusUrl(self, obj: Any) -> str:
            return f"/api/sessions/user-data/requests/{obj.public_id}"

    class DeleteResultOutput(serializers.Serializer):
        matched = serializers.IntegerField(help_text="Sessions selected.")
        people = serializers.IntegerField(
            allow_null=True, help_text="People behind them (null for a dry run above the limit)."
        )
        erasedSessions = serializers.IntegerField(
            allow_null=True,
            help_text="Sessions erased so far: each person's other sessions go too. Null while requests run.",
        )
        dryRun = serializers.BooleanField()
        limit = serializers.IntegerField()
        withinLimit = serializers.BooleanField()
        requests = serializers.ListField(child=serializers.DictField())

    @extend_schema(
        request=DeleteInput,
        responses={
            200: DeleteResultOutput,
            202: DeleteResultOutput,
            422: problem("The selection holds more sessions than ADMIN_DELETE_MAX_SESSIONS."),
        },
        summary="Erase sessions (by ids or filter) through data-subject erasure",
        description=(
            "Every person behind the selection gets one erasure request (the same as "
            "DELETE /api/sessions/user-data/{id}): their sessions, events, consent records, fingerprints "
            "and profile leave every table that holds personal data, tombstones keep the ids from coming "
            "back, and the request is verified. 200 when every request finished, 202 while any still runs "
            "(follow statusUrl). At most ADMIN_DELETE_MAX_SESSIONS sessions (422 with the count above); "
            "dryRun counts any selection and erases nothing. Audited with the selection and the counts."
        ),
    )
    def delete(self, request):
        data = self.DeleteInput(data=request.data)
        data.is_valid(raise_exception=True)
        v = data.validated_data
        result = sessions_erase(
            actor=request.user,
            queryset=_selection_queryset(v),
            selection=_selection_for_audit({k: v[k] for k in ("filter", "events", "sessionIds") if k in v}),
            dry_run=v["dryRun"],
        )
        # The requests ran after commit (at once without a broker): read where they are now.
        dsars = data_subject_request_list(public_ids=[r.public_id for r in result.requests])
        finished = all(d.status in (RequestStatus.COMPLETED, RequestStatus.VERIFIED) for d in dsars)
        body = {
            "matched": result.matched,
            "people": result.people,
            "erasedSessions": sum(d.summary.get("deleted", {}).get("sessions_app.UserSession", 0) for d in dsars)
            if finished and not result.dry_run
            else None,
            "dryRun": result.dry_run,
            "limit": result.limit,
            "withinLimit": result.matched <= result.limit,
            "requests": self.ErasureRequestOutput(dsars, many=True).data,
        }
        code = status.HTTP_200_OK if finished else status.HTTP_202_ACCEPTED
        return Response(self.DeleteResultOutput(body).data, status=code)
