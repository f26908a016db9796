from django.urls import path

from privacy import apis

app_name = "privacy"

urlpatterns = [
    path("consent", apis.ConsentApi.as_view(), name="consent"),
    path("privacy-report", apis.PrivacyReportApi.as_view(), name="privacy-report"),
    path("audit-log", apis.AuditLogApi.as_view(), name="audit-log"),
    path("user-data/requests/<uuid:request_id>", apis.DataRequestDetailApi.as_view(), name="user-data-request"),
    path("user-data/<str:subject_id>/export", apis.UserDataExportApi.as_view(), name="user-data-export"),
    path("user-data/<str:subject_id>", apis.UserDataApi.as_view(), name="user-data"),
]
