from django.urls import include, path

from sessions_app import apis, identity_apis

app_name = "sessions"

urlpatterns = [
    path("admin/", include("sessions_app.admin_urls")),
    path("create", apis.SessionCreateApi.as_view(), name="create"),
    path("<uuid:session_id>", apis.SessionDetailApi.as_view(), name="detail"),
    path("<uuid:session_id>/activity", apis.SessionActivityApi.as_view(), name="activity"),
    path("<uuid:session_id>/events", apis.EventsIngestApi.as_view(), name="events"),
    path("<uuid:session_id>/end", apis.SessionEndApi.as_view(), name="end"),
    path("<uuid:session_id>/profile", identity_apis.SessionProfileApi.as_view(), name="session-profile"),
    path("profiles/<uuid:profile_id>", identity_apis.ProfileDetailApi.as_view(), name="profile"),
    path("profiles/<uuid:profile_id>/links", identity_apis.ProfileLinksApi.as_view(), name="profile-links"),
    path(
        "profiles/<uuid:profile_id>/links/<int:bridge_id>/accept",
        identity_apis.BridgeAcceptApi.as_view(),
        name="profile-link-accept",
    ),
    path(
        "profiles/<uuid:profile_id>/links/<int:bridge_id>/reject",
        identity_apis.BridgeRejectApi.as_view(),
        name="profile-link-reject",
    ),
    path("profiles/<uuid:profile_id>/split", identity_apis.ProfileSplitApi.as_view(), name="profile-split"),
]
