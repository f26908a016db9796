from django.urls import path

from analytics import apis

app_name = "analytics"

urlpatterns = [
    path("metrics", apis.MetricsApi.as_view(), name="metrics"),
    path("analytics/<str:type>", apis.AnalyticsTypeApi.as_view(), name="analytics"),
    path("devices", apis.DevicesApi.as_view(), name="devices"),
    path("geographic", apis.GeographicApi.as_view(), name="geographic"),
    path("segments", apis.SegmentsApi.as_view(), name="segments"),
]
