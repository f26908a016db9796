from django.urls import path

from analytics import dashboard_views as views

app_name = "dashboard"

urlpatterns = [
    path("", views.overview, name="overview"),
    path("sessions/", views.sessions_explorer, name="sessions"),
    path("sessions/<uuid:public_id>/", views.session_page, name="session"),
    path("funnels/", views.funnels, name="funnels"),
    path("journeys/", views.journeys, name="journeys"),
    path("retention/", views.retention, name="retention"),
    path("segments/", views.segments, name="segments"),
    path("privacy/", views.privacy_centre, name="privacy"),
]
