from django.urls import path

from sessions_app import admin_apis

urlpatterns = [
    path("sessions", admin_apis.AdminSessionListApi.as_view(), name="admin-sessions"),
    path("search", admin_apis.AdminSessionSearchApi.as_view(), name="admin-search"),
    path("export", admin_apis.AdminSessionExportApi.as_view(), name="admin-export"),
    path("delete", admin_apis.AdminSessionDeleteApi.as_view(), name="admin-delete"),
    path("bulk-update", admin_apis.AdminSessionBulkUpdateApi.as_view(), name="admin-bulk-update"),
]
