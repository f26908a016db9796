from django.contrib import admin
from django.urls import include, path, re_path
from django.views.decorators.csrf import csrf_exempt
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from config import health, views
from privacy import apis as privacy_apis
from sessions_app.views import demo_page

urlpatterns = [
    path("healthz", health.healthz, name="healthz"),
    path("readyz", health.readyz, name="readyz"),
    path("favicon.ico", views.favicon),
    path("admin/", admin.site.urls),
    path("dashboard/", include("analytics.dashboard_urls")),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="docs"),
    path(".well-known/gpc.json", privacy_apis.gpc_well_known, name="gpc"),
    # Before the sessions routes: fixed paths (metrics, devices, ...) are matched first.
    path("api/sessions/", include("analytics.urls")),
    path("api/sessions/", include("sessions_app.urls")),
    path("api/sessions/", include("privacy.urls")),
    path("api/personalization/", include("personalization.urls")),
    path("v1/", include("sessions_app.segment_urls")),
    path("demo/", demo_page, name="demo"),
    path("demo/<path:rest>", demo_page, name="demo-path"),
    # Anything else under the API prefixes is a problem-details 404, even with DEBUG on, and
    # for any method: a POST without a CSRF cookie is a 404 too, not a CSRF failure.
    re_path(r"^(api|v1)(?:/|$)", csrf_exempt(views.not_found)),
]

handler400 = "config.views.bad_request"
handler403 = "config.views.permission_denied"
handler404 = "config.views.not_found"
handler500 = "config.views.server_error"
