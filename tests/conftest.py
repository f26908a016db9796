from __future__ import annotations

import pytest
from django.core.cache import cache
from rest_framework.test import APIClient

from tests.federation.factories import NeuronFactory

IPHONE_UA = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Version/17.0 Mobile/15E148 Safari/604.1"
)
DESKTOP_UA = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0 Safari/537.36"
)


@pytest.fixture(autouse=True)
def _clean_cache():
    """Throttle counters, cached lookups and sums, and unpublished live counters must not leak between tests."""
    from analytics.day_cache import DAY_RESULT_CACHE
    from analytics.rollup_cache import ROLLUP_CACHE, VISITOR_SET_CACHE
    from federation.selectors import neuron_cache_clear
    from sessions_app.live import live_discard_pending

    live_discard_pending()
    cache.clear()
    neuron_cache_clear()
    ROLLUP_CACHE.clear()
    VISITOR_SET_CACHE.clear()
    DAY_RESULT_CACHE.clear()
    yield
    live_discard_pending()
    cache.clear()
    neuron_cache_clear()
    ROLLUP_CACHE.clear()
    VISITOR_SET_CACHE.clear()
    DAY_RESULT_CACHE.clear()


@pytest.fixture(autouse=True)
def _eager_celery(settings):
    """Unit tests run tasks in-process; tests marked `celery_worker` use a real worker instead."""
    from config.celery import app

    previous = app.conf.task_always_eager
    app.conf.task_always_eager = True
    app.conf.task_eager_propagates = True
    yield
    app.conf.task_always_eager = previous


@pytest.fixture
def neuron(db):
    return NeuronFactory()


@pytest.fixture
def api_client():
    return APIClient(REMOTE_ADDR="81.2.69.142", HTTP_USER_AGENT=IPHONE_UA)


@pytest.fixture
def site_client(neuron):
    """A browser of `neuron`: sends its publishable key."""
    return APIClient(REMOTE_ADDR="81.2.69.142", HTTP_USER_AGENT=IPHONE_UA, HTTP_X_SITE_KEY=neuron.publishable_key)


@pytest.fixture
def staff_user(db, django_user_model):
    """An operator: staff with every model permission of the project's apps (not a superuser)."""
    from tests.helpers import grant_all

    return grant_all(django_user_model.objects.create_user("staff", "staff@example.com", "pw-staff-123", is_staff=True))


@pytest.fixture
def staff_client(staff_user):
    # force_authenticate keeps the user's loading out of the queries a test counts; its
    # permissions are loaded now too (the object caches them), as they are part of that.
    staff_user.get_all_permissions()
    client = APIClient()
    client.force_authenticate(staff_user)
    return client


@pytest.fixture
def live_session(site_client):
    """A created session: (client, body) where body holds sessionId and token."""
    response = site_client.post("/api/sessions/create", {"consent": {"analytics": True}}, format="json")
    assert response.status_code == 201, response.content
    body = response.json()
    client = APIClient(REMOTE_ADDR="81.2.69.142", HTTP_USER_AGENT=IPHONE_UA)
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {body['token']}")
    return client, body
