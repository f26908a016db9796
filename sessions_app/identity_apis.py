"""Identity API: staff views of profiles and their links, and a session's view of its own profile."""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.authentication import SessionAuthentication
from rest_framework.response import Response
from rest_framework.views import APIView

from config.api.pagination import KeysetPagination
from config.api.permissions import StaffWithPermissions
from config.api.schema import paginated, problem
from config.api.serializers import StrictSerializer
from sessions_app.apis import SessionTokenApi
from sessions_app.identity import bridge_accept, bridge_reject, profile_resolve, profile_split
from sessions_app.identity_selectors import (
    bridge_get_for_profile,
    bridge_list_for_profile,
    merge_get_for_profile,
    profile_devices,
    profile_get,
    profile_merges,
    profile_sessions,
)
from sessions_app.models import GlobalUserProfile, ProfileMerge
from sessions_app.permissions import IsSessionTokenHolder

VIEW_PROFILES = ("sessions_app.view_globaluserprofile",)
CHANGE_PROFILES = ("sessions_app.change_globaluserprofile",)


class StaffApi(APIView):
    """Operators: a staff user signed in to the admin (session cookie, CSRF-protected), with the
    profile model permission matching what the endpoint does."""

    authentication_classes = [SessionAuthentication]
    permission_classes = [StaffWithPermissions]


class BridgeOutput(serializers.Serializer):
    bridgeId = serializers.IntegerField(source="pk")
    method = serializers.CharField()
    status = serializers.CharField()
    confidence = serializers.FloatField()
    evidence = serializers.DictField()
    fromProfileId = serializers.UUIDField(source="from_profile.public_id", allow_null=True, default=None)
    toProfileId = serializers.UUIDField(source="to_profile.public_id", allow_null=True, default=None)
    createdAt = serializers.DateTimeField(source="created_at")
    decidedAt = serializers.DateTimeField(source="decided_at", allow_null=True)


class MergeOutput(serializers.Serializer):
    mergeId = serializers.IntegerField(source="pk")
    sourceProfileId = serializers.UUIDField(source="source.public_id")
    method = serializers.CharField()
    mergedAt = serializers.DateTimeField(source="merged_at")
    undoneAt = serializers.DateTimeField(source="undone_at", allow_null=True)


class LinkedDeviceOutput(serializers.Serializer):
    anonymousId = serializers.CharField(source="anonymous_id")
    deviceType = serializers.CharField(source="device_type")
    browser = serializers.CharField()
    os = serializers.CharField()
    lastSeenAt = serializers.DateTimeField(source="last_seen_at")
    sessionCount = serializers.IntegerField(source="session_count")


class ProfileSessionOutput(serializers.Serializer):
    sessionId = serializers.UUIDField(source="public_id")
    anonymousId = serializers.CharField(source="anonymous_id")
    deviceType = serializers.CharField(source="device_type")
    browser = serializers.CharField()
    os = serializers.CharField()
    country = serializers.CharField()
    startedAt = serializers.DateTimeField(source="started_at")
    lastActivityAt = serializers.DateTimeField(source="last_activity_at")
    endedAt = serializers.DateTimeField(source="ended_at", allow_null=True)
    eventCount = serializers.IntegerField(source="event_count")


class ProfileOutput(serializers.Serializer):
    profileId = serializers.UUIDField()
    identified = serializers.BooleanField()
    mergedInto = serializers.UUIDField(allow_null=True)
    traits = serializers.DictField()
    preferences = serializers.DictField()
    firstSeenAt = serializers.DateTimeField()
    lastSeenAt = serializers.DateTimeField()
    devices = LinkedDeviceOutput(many=True)
    sessions = ProfileSessionOutput(many=True)
    merges = MergeOutput(many=True)


def profile_payload(profile: GlobalUserProfile) -> dict[str, Any]:
    return ProfileOutput(
        {
            "profileId": profile.public_id,
            "identified": profile.is_identified,
            "mergedInto": profile_resolve(profile).public_id if profile.merged_into_id else None,
            "traits": profile.traits,
            "preferences": profile.preferences,
            "firstSeenAt": profile.first_seen_at,
            "lastSeenAt": profile.last_seen_at,
            "devices": profile_devices(profile=profile),
            "sessions": profile_sessions(profile=profile),
            "merges": profile_merges(profile=profile),
        }
    ).data


class ProfileDetailApi(StaffApi):
    required_permissions = {"GET": VIEW_PROFILES}

    @extend_schema(responses={200: ProfileOutput}, summary="A profile: traits, linked devices, sessions, merges")
    def get(self, request, profile_id):
        return Response(profile_payload(profile_get(public_id=profile_id)))


class ProfileLinksApi(StaffApi):
    required_permissions = {"GET": VIEW_PROFILES}
    pagination_class = KeysetPagination

    class PageInput(StrictSerializer):
        """Only the paginator's parameters, which KeysetPagination reads (and refuses when bad)."""

        cursor = serializers.CharField(required=False)
        pageSize = serializers.CharField(required=False)

    @extend_schema(responses={200: paginated(BridgeOutput)}, summary="The profile's links with confidence and evidence")
    def get(self, request, profile_id):
        self.PageInput(data=request.query_params.dict()).is_valid(raise_exception=True)
        bridges = bridge_list_for_profile(profile=profile_get(public_id=profile_id))
        paginator = self.pagination_class()
        page = paginator.paginate_queryset(bridges, request, view=self)
        return paginator.get_paginated_response(BridgeOutput(page, many=True).data)


class BridgeAcceptApi(StaffApi):
    required_permissions = {"POST": CHANGE_PROFILES}

    @extend_schema(
        request=None,
        responses={200: BridgeOutput, 409: problem("Already merged, or profiles identified with different user ids.")},
        summary="Accept a suggested link: merge",
    )
    def post(self, request, profile_id, bridge_id):
        bridge = bridge_get_for_profile(profile=profile_get(public_id=profile_id), bridge_id=bridge_id)
        return Response(BridgeOutput(bridge_accept(bridge=bridge, actor=request.user)).data)


class BridgeRejectApi(StaffApi):
    required_permissions = {"POST": CHANGE_PROFILES}

    @extend_schema(
        request=None,
        responses={200: BridgeOutput, 409: problem("The link is already rejected.")},
        summary="Reject a link (a merged one is undone)",
    )
    def post(self, request, profile_id, bridge_id):
        bridge = bridge_get_for_profile(profile=profile_get(public_id=profile_id), bridge_id=bridge_id)
        return Response(BridgeOutput(bridge_reject(bridge=bridge, actor=request.user)).data)


class ProfileSplitApi(StaffApi):
    required_permissions = {"POST": CHANGE_PROFILES}

    class SplitInput(StrictSerializer):
        mergeId = serializers.IntegerField(required=False, min_value=1)

    class SplitOutput(serializers.Serializer):
        profileId = serializers.UUIDField()
        undone = MergeOutput(many=True)

    @extend_schema(
        request=SplitInput,
        responses={200: SplitOutput, 409: problem("The profile has no merge left to undo.")},
        summary="Split a profile back into its parts",
    )
    def post(self, request, profile_id):
        data = self.SplitInput(data=request.data)
        data.is_valid(raise_exception=True)
        profile = profile_get(public_id=profile_id)
        merge: ProfileMerge | None = None
        if "mergeId" in data.validated_data:
            merge = merge_get_for_profile(profile=profile, merge_id=data.validated_data["mergeId"])
        undone = profile_split(profile=profile, merge=merge, actor=request.user)
        return Response(self.SplitOutput({"profileId": profile.public_id, "undone": undone}).data)


# --- the session's own view -----------------------------------------------------------------------


class OwnDeviceOutput(serializers.Serializer):
    """A linked device as its owner sees it: no identifier of the other device."""

    deviceType = serializers.CharField()
    browser = serializers.CharField()
    os = serializers.CharField()
    lastSeenAt = serializers.DateTimeField()
    current = serializers.BooleanField()


class OwnProfileOutput(serializers.Serializer):
    identified = serializers.BooleanField()
    preferences = serializers.DictField()
    devices = OwnDeviceOutput(many=True)


class SessionProfileApi(SessionTokenApi):
    permission_classes = [IsSessionTokenHolder]

    @extend_schema(responses={200: OwnProfileOutput}, summary="This session's profile: preferences, linked devices")
    def get(self, request, session_id):
        session = self.session
        profile = profile_resolve(session.profile) if session.profile_id else None
        if profile is None:
            devices = [
                {
                    "deviceType": session.device_type,
                    "browser": session.browser,
                    "os": session.os,
                    "lastSeenAt": session.last_activity_at,
                    "current": True,
                }
            ]
        else:
            devices = [
                {
                    "deviceType": d.device_type,
                    "browser": d.browser,
                    "os": d.os,
                    "lastSeenAt": d.last_seen_at,
                    "current": d.anonymous_id == session.anonymous_id,
                }
                for d in profile_devices(profile=profile)
            ]
        body = {
            "identified": bool(profile and profile.is_identified),
            "preferences": profile.preferences if profile else {},
            "devices": devices,
        }
        return Response(OwnProfileOutput(body).data)
