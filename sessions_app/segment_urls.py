from django.urls import path

from sessions_app import segment_apis

app_name = "segment"

# Segment's paths, and the one-letter aliases analytics.js posts to.
urlpatterns = [
    path("track", segment_apis.track, name="track"),
    path("page", segment_apis.page, name="page"),
    path("screen", segment_apis.screen, name="screen"),
    path("identify", segment_apis.identify, name="identify"),
    path("group", segment_apis.group, name="group"),
    path("alias", segment_apis.alias, name="alias"),
    path("batch", segment_apis.batch, name="batch"),
    path("import", segment_apis.batch, name="import"),
    path("t", segment_apis.track),
    path("p", segment_apis.page),
    path("s", segment_apis.screen),
    path("i", segment_apis.identify),
    path("g", segment_apis.group),
    path("a", segment_apis.alias),
]
