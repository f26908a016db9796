"""Privacy API: consent, data-subject requests, audit log, privacy report. Parse, call, render."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.http import HttpRequest, JsonResponse
from django.views.decorators.http import require_GET
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers, status
from rest_framework.authentication import SessionAuthentication
from rest_framework.response import Response
from rest_framework.views import APIView

from config.api.errors import NotFound, ValidationFailed
from config.api.pagination import KeysetPagination
from config.api.permissions import StaffWithPermissions, is_operator
from config.api.schema import paginated, problem
from config.api.serializers import StrictCharField, StrictSerializer
from privacy.crypto import identifier_hash
from privacy.dsar import dsar_document_read, dsar_submit
from privacy.ledger import consent_update
from privacy.models import ConsentSource, DataSubjectRequest, RequestKind, RequestStatus, SubjectType
from privacy.permissions import IsStaffOrSessionHolder
from privacy.selectors import (
    audit_entry_list,
    data_subject_request_get,
    privacy_report_for_session,
    privacy_report_site,
    session_get_by_public_id,
)
from privacy.subjects import subject_hash
from sessions_app.apis import ConsentInput, ConsentOutput
from sessions_app.authentication import SessionTokenAuthentication
from sessions_app.enrichment import request_meta_from


def _is_staff(request: Any) -> bool:
    """Whether the staff path runs: the permission class has checked the staff user's model
    permissions for the method (a session token makes the user anonymous)."""
    return is_operator(request.user)


def _visitor_label(session: Any) -> str:
    # A keyed hash, not the session id: the request and audit records outlive an erasure.
    return "visitor:" + identifier_hash(str(session.public_id), namespace="requester")[:32]


def _requester(request: Any) -> Any:
    """The staff user, or a pseudonymous label for a visitor acting on their own data."""
    if _is_staff(request):
        return request.user
    return _visitor_label(request.auth.session)


class StaffOrSessionApi(APIView):
    # The session token first: a request without credentials gets 401 with a Bearer challenge.
    # `required_permissions` binds staff only; a session token holder acts on their own data.
    authentication_classes = [SessionTokenAuthentication, SessionAuthentication]
    permission_classes = [IsStaffOrSessionHolder]


# ---------------------------------------------------------------------------
# Consent
# ---------------------------------------------------------------------------


class ConsentApi(StaffOrSessionApi):
    required_permissions = {"POST": ["privacy.add_consentrecord"]}

    class ConsentUpdateInput(StrictSerializer):
        consent = ConsentInput()
        policyVersion = StrictCharField(required=False, allow_blank=True, max_length=64)
        textHash = serializers.RegexField(
            r"^[0-9a-f]{64}$", required=False, error_messages={"invalid": "A lowercase hex SHA-256 (64 characters)."}
        )
        source = serializers.ChoiceField(
            choices=[ConsentSource.BANNER, ConsentSource.API, ConsentSource.TCF], required=False
        )
        sessionId = serializers.UUIDField(required=False, help_text="Staff only: the session to change.")

        def validate_consent(self, value: dict[str, bool]) -> dict[str, bool]:
            if not value:
                raise serializers.ValidationError("Decide at least one purpose.")
            return value

    class ConsentUpdated(serializers.Serializer):
        sessionId = serializers.UUIDField()
        consent = ConsentOutput()
        recorded = serializers.ListField(child=serializers.CharField(), help_text="Purposes recorded in the ledger.")

    @extend_schema(
        request=ConsentUpdateInput,
        responses={200: ConsentUpdated, 404: problem("No such session (staff, naming sessionId).")},
        summary="Grant or withdraw consent",
    )
    def post(self, request):
        data = self.ConsentUpdateInput(data=request.data)
        data.is_valid(raise_exception=True)
        v = data.validated_data
        staff = _is_staff(request)
        if staff:
            if "sessionId" not in v:
                raise ValidationFailed(errors={"sessionId": ["Staff must name the session to change."]})
            session = session_get_by_public_id(public_id=v["sessionId"])
        else:
            session = request.auth.session
            if "sessionId" in v and v["sessionId"] != session.public_id:
                raise NotFound("No such session.")
        updated = consent_update(
            session=session,
            given=v["consent"],
            source=v.get("source", ConsentSource.API),
            request_meta=request_meta_from(request.META),
            policy_version=v.get("policyVersion", ""),
            text_hash=v.get("textHash", ""),
            actor=request.user if staff else None,
        )
        body = {"sessionId": updated.public_id, "consent": updated.consent, "recorded": sorted(v["consent"])}
        return Response(self.ConsentUpdated(body).data)


# ---------------------------------------------------------------------------
# Data-subject requests
# ---------------------------------------------------------------------------


class RequestOutput(serializers.Serializer):
    requestId = serializers.UUIDField(source="public_id")
    kind = serializers.CharField()
    status = serializers.CharField()
    subjectType = serializers.CharField(source="subject_type")
    createdAt = serializers.DateTimeField(source="created_at")
    startedAt = serializers.DateTimeField(source="started_at", allow_null=True)
    completedAt = serializers.DateTimeField(source="completed_at", allow_null=True)
    verifiedAt = serializers.DateTimeField(source="verified_at", allow_null=True)
    summary = serializers.DictField()
    statusUrl = serializers.SerializerMethodField()

    def get_statusUrl(self, obj: DataSubjectRequest) -> str:
        return f"/api/sessions/user-data/requests/{obj.public_id}"


ID_TYPE = OpenApiParameter(
    "idType",
    str,
    enum=list(SubjectType.values),
    required=False,
    description=(
        "What the id is; by default a profile id, session id, anonymous id, then user id are tried. With a"
        " session token only the token's own session id is accepted (anything else is 404)."
    ),
)


class SubjectInput(StrictSerializer):
    subjectId = StrictCharField(min_length=1, max_length=255)
    idType = serializers.ChoiceField(choices=SubjectType.choices, required=False)


def _subject(request: Any, subject_id: str) -> dict[str, Any]:
    data = SubjectInput(data={"subjectId": subject_id, **request.query_params.dict()})
    data.is_valid(raise_exception=True)
    return data.validated_data


def _own_session(request: Any):
    return None if _is_staff(request) else request.auth.session


def _visible_to_session(dsar: DataSubjectRequest, session: Any) -> bool:
    """A token sees a request of its own site that it made, or one about its own session (the only
    subject it can name); never a staff request (every site). The anonymous id or profile a session
    carries proves nothing (the browser chose them), so requests about those are not shown."""
    if dsar.neuron_id is None or dsar.neuron_id != session.neuron_id:
        return False
    if dsar.requested_by == _visitor_label(session):
        return True
    return dsar.subject_type == SubjectType.SESSION_ID and dsar.subject_hash == subject_hash(
        subject_type=SubjectType.SESSION_ID, value=str(session.public_id)
    )


class UserDataExportApi(StaffOrSessionApi):
    required_permissions = {"GET": ["privacy.add_datasubjectrequest"]}

    @extend_schema(
        parameters=[ID_TYPE],
        responses={200: dict, 202: RequestOutput},
        summary="Export everything held on a subject (Art. 20)",
    )
    def get(self, request, subject_id):
        v = _subject(request, subject_id)
        dsar, _ = dsar_submit(
            kind=RequestKind.EXPORT,
            value=v["subjectId"],
            subject_type=v.get("idType"),
            requested_by=_requester(request),
            session=_own_session(request),
        )
        dsar.refresh_from_db()
        if dsar.status == RequestStatus.COMPLETED:
            return Response(dsar_document_read(request=dsar, actor=_requester(request)))
        return Response(RequestOutput(dsar).data, status=status.HTTP_202_ACCEPTED)


class UserDataApi(StaffOrSessionApi):
    required_permissions = {"DELETE": ["privacy.add_datasubjectrequest"]}

    @extend_schema(
        parameters=[ID_TYPE],
        request=None,
        responses={200: RequestOutput, 202: RequestOutput},
        summary="Erase everything held on a subject (Art. 17); idempotent",
    )
    def delete(self, request, subject_id):
        v = _subject(request, subject_id)
        dsar, created = dsar_submit(
            kind=RequestKind.ERASE,
            value=v["subjectId"],
            subject_type=v.get("idType"),
            requested_by=_requester(request),
            session=_own_session(request),
        )
        dsar.refresh_from_db()
        done = dsar.status in (RequestStatus.COMPLETED, RequestStatus.VERIFIED)
        return Response(RequestOutput(dsar).data, status=status.HTTP_200_OK if done else status.HTTP_202_ACCEPTED)


class DataRequestDetailApi(StaffOrSessionApi):
    required_permissions = {"GET": ["privacy.view_datasubjectrequest"]}

    @extend_schema(responses={200: RequestOutput}, summary="A data-subject request's status (and export)")
    def get(self, request, request_id):
        dsar = data_subject_request_get(public_id=request_id)
        if not _is_staff(request) and not _visible_to_session(dsar, request.auth.session):
            raise NotFound("No such request.")
        body = RequestOutput(dsar).data
        if dsar.kind == RequestKind.EXPORT and dsar.status == RequestStatus.COMPLETED:
            body["document"] = dsar_document_read(request=dsar, actor=_requester(request))
        return Response(body)


# ---------------------------------------------------------------------------
# Audit log and privacy report
# ---------------------------------------------------------------------------


class AuditLogApi(APIView):
    authentication_classes = [SessionAuthentication]
    permission_classes = [StaffWithPermissions]
    required_permissions = {"GET": ["privacy.view_auditentry"]}
    pagination_class = KeysetPagination

    class AuditEntryOutput(serializers.Serializer):
        seq = serializers.IntegerField()
        createdAt = serializers.DateTimeField(source="created_at")
        actor = serializers.CharField()
        action = serializers.CharField()
        subject = serializers.CharField()
        details = serializers.DictField()
        prevHash = serializers.CharField(source="prev_hash")
        entryHash = serializers.CharField(source="entry_hash")

    class Pagination(KeysetPagination):
        ordering = "-seq"

    @extend_schema(
        parameters=[
            OpenApiParameter("actor", str),
            OpenApiParameter("action", str),
            OpenApiParameter("actionPrefix", str),
            OpenApiParameter("subject", str),
            OpenApiParameter("since", str, description="ISO 8601, inclusive"),
            OpenApiParameter("until", str, description="ISO 8601, exclusive"),
        ],
        responses={200: paginated(AuditEntryOutput)},
        summary="The audit log (staff), newest first",
    )
    def get(self, request):
        entries = audit_entry_list(filters=request.query_params)
        paginator = self.Pagination()
        page = paginator.paginate_queryset(entries, request, view=self)
        return paginator.get_paginated_response(self.AuditEntryOutput(page, many=True).data)


class PrivacyReportApi(StaffOrSessionApi):
    required_permissions = {"GET": ["privacy.view_consentrecord"]}

    @extend_schema(responses={200: dict}, summary="What is held and for how long (visitor), or a site summary (staff)")
    def get(self, request):
        if _is_staff(request):
            return Response(privacy_report_site())
        return Response(privacy_report_for_session(session=request.auth.session))


@require_GET
def gpc_well_known(request: HttpRequest) -> JsonResponse:
    """/.well-known/gpc.json: this site honours Global Privacy Control (as a sale/sharing opt-out)."""
    return JsonResponse({"gpc": True, "lastUpdate": settings.GPC_LAST_UPDATE})
