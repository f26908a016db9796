from django.urls import path

from personalization import apis

app_name = "personalization"

urlpatterns = [
    path("segments", apis.SegmentListApi.as_view(), name="segments"),
    path("segments/<int:segment_id>", apis.SegmentDetailApi.as_view(), name="segment"),
    path("segments/<int:segment_id>/members", apis.SegmentMembersApi.as_view(), name="segment-members"),
    path("archetypes", apis.ArchetypeListApi.as_view(), name="archetypes"),
    path("<uuid:session_id>/content", apis.ContentApi.as_view(), name="content"),
    path("<uuid:session_id>/recommendations", apis.RecommendationsApi.as_view(), name="recommendations"),
    path("<uuid:session_id>/interests", apis.InterestsApi.as_view(), name="interests"),
    path("<uuid:session_id>/preferences", apis.PreferencesApi.as_view(), name="preferences"),
]
