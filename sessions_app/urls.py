from django.urls import path

from sessions_app import apis

app_name = "sessions"

urlpatterns = [
    path("create", apis.SessionCreateApi.as_view(), name="create"),
    path("<uuid:session_id>", apis.SessionDetailApi.as_view(), name="detail"),
    path("<uuid:session_id>/activity", apis.SessionActivityApi.as_view(), name="activity"),
    path("<uuid:session_id>/events", apis.EventsIngestApi.as_view(), name="events"),
    path("<uuid:session_id>/end", apis.SessionEndApi.as_view(), name="end"),
]
