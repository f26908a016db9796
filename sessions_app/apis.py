"""Session lifecycle API: parse, call one service, render."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import orjson
from django.conf import settings
from django.db import transaction
from django.http import HttpResponse
from django.utils import timezone
from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.response import Response
from rest_framework.views import APIView

from config.api.parsers import JSONParser, TextJSONParser
from config.api.schema import problem
from config.api.serializers import JSONObjectField, StrictBooleanField, StrictCharField, StrictSerializer
from config.api.throttling import CountingRateThrottle
from federation.authentication import SiteKeyAuthentication
from federation.permissions import HasSiteKey
from privacy.consent import PURPOSES
from sessions_app.authentication import BeaconTokenAuthentication, SessionTokenAuthentication
from sessions_app.create_input import session_create_parse
from sessions_app.enrichment import RequestMeta, request_meta_from
from sessions_app.event_input import events_payload_parse
from sessions_app.ingest_group import single_event_try
from sessions_app.ingestion import IngestResult, events_ingest
from sessions_app.models import UserSession
from sessions_app.permissions import IsSessionTokenHolder, IsSessionTokenHolderEvenEnded
from sessions_app.services import (
    SessionResult,
    session_create,
    session_end,
    session_heartbeat,
    session_update,
)


class ConsentInput(StrictSerializer):
    analytics = StrictBooleanField(required=False)
    personalization = StrictBooleanField(required=False)
    marketing = StrictBooleanField(required=False)
    fingerprinting = StrictBooleanField(required=False)
    saleSharing = StrictBooleanField(required=False)
    # Aliases used by the original client.
    trackingConsent = StrictBooleanField(required=False)
    marketingConsent = StrictBooleanField(required=False)


class UtmInput(StrictSerializer):
    source = StrictCharField(required=False, allow_blank=True, max_length=200)
    medium = StrictCharField(required=False, allow_blank=True, max_length=200)
    campaign = StrictCharField(required=False, allow_blank=True, max_length=200)
    term = StrictCharField(required=False, allow_blank=True, max_length=200)
    content = StrictCharField(required=False, allow_blank=True, max_length=200)


class FingerprintInput(StrictSerializer):
    hash = StrictCharField(min_length=8, max_length=128)
    components = JSONObjectField(required=False, max_bytes=8 * 1024)


def request_meta_with_gpc(request: Any, gpc: bool | None) -> RequestMeta:
    """Request metadata, with a `gpc: true` from the body counted like `Sec-GPC: 1`.

    The browser session manager reads navigator.globalPrivacyControl, which an extension
    or a browser may expose without sending the header. It can only opt out, never in.
    """
    meta = request_meta_from(request.META)
    return replace(meta, gpc=True) if gpc and not meta.gpc else meta


class RestoreInput(StrictSerializer):
    sessionId = serializers.UUIDField()
    token = StrictCharField(max_length=256)


class ConsentOutput(serializers.Serializer):
    analytics = serializers.BooleanField()
    personalization = serializers.BooleanField()
    marketing = serializers.BooleanField()
    fingerprinting = serializers.BooleanField()
    saleSharing = serializers.BooleanField()


class DeviceOutput(serializers.Serializer):
    type = serializers.CharField()
    browser = serializers.CharField()
    os = serializers.CharField()


class SessionOutput(serializers.Serializer):
    sessionId = serializers.UUIDField()
    anonymousId = serializers.CharField()
    identified = serializers.BooleanField()
    startedAt = serializers.DateTimeField()
    lastActivityAt = serializers.DateTimeField()
    expiresAt = serializers.DateTimeField()
    endedAt = serializers.DateTimeField(allow_null=True)
    idleTimeoutSeconds = serializers.IntegerField()
    device = DeviceOutput()
    country = serializers.CharField()
    referrer = serializers.CharField()
    landingPage = serializers.CharField()
    utm = serializers.DictField(child=serializers.CharField())
    eventCount = serializers.IntegerField()
    pageViewCount = serializers.IntegerField()
    engagementScore = serializers.FloatField()
    consent = ConsentOutput()
    traits = serializers.DictField()
    preferences = serializers.DictField()
    metadata = serializers.DictField()
    token = serializers.CharField(required=False, help_text="Present only when the token was rotated.")


def session_payload(session: UserSession, *, token: str | None = None) -> dict[str, Any]:
    from django.conf import settings

    profile = session.profile
    data: dict[str, Any] = {
        "sessionId": session.public_id,
        "anonymousId": session.anonymous_id,
        "identified": bool(profile and profile.user_id_hash),
        "startedAt": session.started_at,
        "lastActivityAt": session.last_activity_at,
        "expiresAt": session.expires_at,
        "endedAt": session.ended_at,
        "idleTimeoutSeconds": int(settings.SESSION_IDLE_TIMEOUT.total_seconds()),
        "device": {"type": session.device_type, "browser": session.browser, "os": session.os},
        "country": session.country,
        "referrer": session.referrer,
        "landingPage": session.landing_page,
        "utm": {
            key: getattr(session, f"utm_{key}")
            for key in ("source", "medium", "campaign", "term", "content")
            if getattr(session, f"utm_{key}")
        },
        "eventCount": session.event_count,
        "pageViewCount": session.page_view_count,
        "engagementScore": session.engagement_score,
        "consent": session.consent,
        "traits": profile.traits if profile else {},
        "preferences": profile.preferences if profile else {},
        "metadata": session.metadata,
    }
    if token:
        data["token"] = token
    return SessionOutput(data).data


_EXPIRES_AT = serializers.DateTimeField()


class SessionCreateApi(APIView):
    authentication_classes = [SiteKeyAuthentication]
    permission_classes = [HasSiteKey]
    throttle_classes = [CountingRateThrottle]
    throttle_scope = "session_create"

    class SessionCreateInput(StrictSerializer):
        anonymousId = StrictCharField(required=False, min_length=1, max_length=128)
        consent = ConsentInput(required=False)
        referrer = StrictCharField(required=False, allow_blank=True, max_length=2048)
        landingPage = StrictCharField(required=False, allow_blank=True, max_length=2048)
        utm = UtmInput(required=False)
        fingerprint = FingerprintInput(required=False)
        restore = RestoreInput(required=False)
        gpc = StrictBooleanField(required=False, help_text="navigator.globalPrivacyControl, as Sec-GPC.")

    class SessionCreated(serializers.Serializer):
        sessionId = serializers.UUIDField()
        token = serializers.CharField()
        anonymousId = serializers.CharField()
        expiresAt = serializers.DateTimeField()
        idleTimeoutSeconds = serializers.IntegerField()
        restored = serializers.BooleanField()
        consent = ConsentOutput()

    @extend_schema(
        request=SessionCreateInput,
        responses={201: SessionCreated},
        summary="Create or restore a session",
    )
    def post(self, request):
        v = session_create_parse(request.data)  # SessionCreateInput's rules, checked by hand (create_input)
        result = session_create(
            neuron=request.auth,
            request_meta=request_meta_with_gpc(request, v.get("gpc")),
            anonymous_id=v.get("anonymousId"),
            consent=v.get("consent"),
            referrer=v.get("referrer", ""),
            landing_page=v.get("landingPage", ""),
            utm=v.get("utm"),
            fingerprint=v.get("fingerprint"),
            restore=v.get("restore"),
        )
        return Response(self._render(result), status=status.HTTP_201_CREATED)

    def _render(self, result: SessionResult) -> dict[str, Any]:
        # The shape SessionCreated documents, built directly: the renderer formats the
        # UUID and the time (a serializer here cost a tenth of the request's CPU).
        s = result.session
        return {
            "sessionId": s.public_id,
            "token": result.token,
            "anonymousId": s.anonymous_id,
            "expiresAt": _EXPIRES_AT.to_representation(s.expires_at),  # as the serializer wrote it (…Z)
            "idleTimeoutSeconds": int(settings.SESSION_IDLE_TIMEOUT.total_seconds()),
            "restored": result.restored,
            "consent": {name: bool(s.consent.get(name)) for name in PURPOSES},
        }


class SessionTokenApi(APIView):
    authentication_classes = [SessionTokenAuthentication]
    permission_classes = [IsSessionTokenHolder]

    @property
    def session(self) -> UserSession:
        return self.request.auth.session


class SessionDetailApi(SessionTokenApi):
    class SessionUpdateInput(StrictSerializer):
        userId = StrictCharField(required=False, min_length=1, max_length=255)
        traits = JSONObjectField(required=False, max_bytes=16 * 1024)
        preferences = JSONObjectField(required=False, max_bytes=8 * 1024)
        consent = ConsentInput(required=False)
        metadata = JSONObjectField(required=False, max_bytes=16 * 1024)
        fingerprint = FingerprintInput(required=False)
        gpc = StrictBooleanField(required=False, help_text="navigator.globalPrivacyControl, as Sec-GPC.")

    @extend_schema(responses={200: SessionOutput}, summary="Read the session")
    def get(self, request, session_id):
        return Response(session_payload(self.session))

    @extend_schema(request=SessionUpdateInput, responses={200: SessionOutput}, summary="Update the session")
    def put(self, request, session_id):
        data = self.SessionUpdateInput(data=request.data)
        data.is_valid(raise_exception=True)
        v = data.validated_data
        result = session_update(
            session=self.session,
            request_meta=request_meta_with_gpc(request, v.get("gpc")),
            user_id=v.get("userId"),
            traits=v.get("traits"),
            preferences=v.get("preferences"),
            consent=v.get("consent"),
            metadata=v.get("metadata"),
            fingerprint=v.get("fingerprint"),
            via_previous_token=request.auth.via_previous,
        )
        return Response(session_payload(result.session, token=result.token))


class SessionActivityApi(SessionTokenApi):
    class HeartbeatOutput(serializers.Serializer):
        sessionId = serializers.UUIDField()
        expiresAt = serializers.DateTimeField()
        token = serializers.CharField(required=False, help_text="A rotated token, when one was issued.")

    @extend_schema(request=None, responses={200: HeartbeatOutput}, summary="Heartbeat")
    def post(self, request, session_id):
        result = session_heartbeat(session=self.session, via_previous_token=request.auth.via_previous)
        body: dict[str, Any] = {"sessionId": result.session.public_id, "expiresAt": result.session.expires_at}
        if result.token:
            body["token"] = result.token
        return Response(self.HeartbeatOutput(body).data)


class SessionEndApi(SessionTokenApi):
    @extend_schema(request=None, responses={200: SessionOutput}, summary="End the session")
    def post(self, request, session_id):
        return Response(session_payload(session_end(session=self.session)))


class EventsIngestApi(SessionTokenApi):
    """One event, or {"events": [...]} up to EVENTS_MAX_BATCH; a 200 means committed."""

    # A beacon carries its token in the body: it can set neither headers nor a JSON type.
    authentication_classes = [SessionTokenAuthentication, BeaconTokenAuthentication]
    # Both read the session with its row lock: the request runs in one transaction
    # (dispatch below), so authentication doubles as ingestion's session lock.
    lock_session = True
    permission_classes = [IsSessionTokenHolderEvenEnded]
    # text/plain too: navigator.sendBeacon (the unload beacon) cannot set a JSON content type.
    parser_classes = [JSONParser, TextJSONParser]

    class EventInput(serializers.Serializer):
        """For the schema only: events are validated by sessions_app.event_input."""

        eventType = serializers.CharField(max_length=32)
        eventName = serializers.CharField(required=False, max_length=200)
        eventData = serializers.DictField(required=False)
        page = serializers.DictField(required=False, child=serializers.CharField())
        timestamp = serializers.DateTimeField(required=False)
        messageId = serializers.CharField(required=False, max_length=128)

    class BatchInput(serializers.Serializer):
        events = serializers.ListField(child=serializers.DictField(), max_length=500)
        sentAt = serializers.DateTimeField(required=False)

    class IngestOutput(serializers.Serializer):
        stored = serializers.IntegerField()
        duplicates = serializers.IntegerField()
        anonymous = serializers.IntegerField(help_text="Counted in anonymous aggregates only (no analytics consent).")

    @property
    def max_body_bytes(self) -> int:
        return settings.EVENTS_MAX_BODY_BYTES

    def dispatch(self, request, *args, **kwargs):
        # The common request, one plain event, is committed together with the others
        # arriving at the same time (sessions_app.ingest_group); anything else, or
        # anything that group cannot take, comes here.
        result = single_event_try(request, session_id=kwargs["session_id"])
        if result is not None:
            return self._ingested(result)
        # One transaction from authentication (which locks the session) to the response:
        # BEGIN, the locking read, the write, COMMIT: four round trips for a batch instead
        # of seven (a separate read, BEGIN, a second locking read, INSERT, UPDATE, COMMIT).
        # DRF turns errors into responses inside dispatch, so any error status rolls back.
        with transaction.atomic():
            response = super().dispatch(request, *args, **kwargs)
            if response.status_code >= 400:
                transaction.set_rollback(True)
        return response

    @extend_schema(
        request=BatchInput,
        responses={
            200: IngestOutput,
            409: problem("The session ended longer ago than the grace period: restore and resend."),
        },
        summary="Send one event or a batch",
    )
    def post(self, request, session_id):
        received_at = timezone.now()
        payload = request.data
        if isinstance(request.successful_authenticator, BeaconTokenAuthentication):
            payload = {key: value for key, value in payload.items() if key != BeaconTokenAuthentication.body_field}
        events, sent_at = events_payload_parse(payload)
        result = events_ingest(
            session=self.session, events=events, sent_at=sent_at, received_at=received_at, locked=True
        )
        return Response(_ingest_body(result))

    def _ingested(self, result: IngestResult) -> HttpResponse:
        # What DRF would answer, without its request and response machinery.
        response = HttpResponse(orjson.dumps(_ingest_body(result)), content_type="application/json")
        response["Allow"] = ", ".join(self.allowed_methods)
        response["Vary"] = "Accept"
        return response


def _ingest_body(result: IngestResult) -> dict[str, int]:
    return {"stored": result.stored, "duplicates": result.duplicates, "anonymous": result.anonymous}
