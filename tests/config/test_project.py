"""Project-wide guards: every API view declares its permissions; every admin page renders."""

from __future__ import annotations

import pytest
from django.contrib import admin
from django.urls import URLPattern, URLResolver, get_resolver, reverse
from rest_framework.views import APIView


def _walk(patterns, prefix=""):
    for entry in patterns:
        if isinstance(entry, URLResolver):
            yield from _walk(entry.url_patterns, prefix + str(entry.pattern))
        elif isinstance(entry, URLPattern):
            yield prefix + str(entry.pattern), entry.callback


def _api_views():
    for route, callback in _walk(get_resolver().url_patterns):
        view_class = getattr(callback, "view_class", None) or getattr(callback, "cls", None)
        if isinstance(view_class, type) and issubclass(view_class, APIView):
            yield route, view_class


def test_every_api_view_declares_its_permission_classes():
    """Deny by default is a backstop, not a design: each DRF view names who may call it."""
    undeclared = [
        route
        for route, view_class in _api_views()
        if view_class.__module__.split(".")[0] not in {"drf_spectacular", "rest_framework"}
        and not any("permission_classes" in vars(klass) for klass in view_class.__mro__ if klass is not APIView)
    ]
    assert not undeclared, f"views without explicit permission_classes: {undeclared}"


def test_api_views_were_found():
    routes = [route for route, _ in _api_views()]
    assert any("sessions/" in route for route in routes)


@pytest.mark.django_db
def test_every_admin_changelist_and_add_page_renders(client, rf, django_user_model):
    user = django_user_model.objects.create_superuser("root", "root@example.com", "pw")
    client.force_login(user)
    request = rf.get("/admin/")
    request.user = user
    failures = []
    for model, model_admin in admin.site._registry.items():
        prefix = f"admin:{model._meta.app_label}_{model._meta.model_name}"
        response = client.get(reverse(f"{prefix}_changelist"))
        if response.status_code != 200:
            failures.append((prefix, "changelist", response.status_code))
        if model_admin.has_add_permission(request):
            response = client.get(reverse(f"{prefix}_add"))
            if response.status_code != 200:
                failures.append((prefix, "add", response.status_code))
    assert not failures
