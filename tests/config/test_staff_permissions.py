"""Staff endpoints need the Django model permission matching what they do, as the admin checks it.

`is_staff` only opens the door: a staff user without the permission gets a 403 (problem details
from the API, Django's 403 from the dashboard, 4403 from the live socket) and changes nothing;
with exactly that permission the endpoint answers as usual. Superusers hold every permission.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

import pytest
from asgiref.sync import async_to_sync
from channels.layers import channel_layers
from django.apps import apps
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver, resolve
from rest_framework.permissions import IsAdminUser
from rest_framework.test import APIClient
from rest_framework.views import APIView

from analytics import ticker as ticker_module
from analytics.consumers import CLOSE_FORBIDDEN
from config.api.permissions import StaffWithPermissions, declared_permissions
from privacy.dsar import dsar_submit
from privacy.models import RequestKind, SubjectType
from privacy.permissions import IsStaffOrSessionHolder
from sessions_app.identity import profile_find_for_user_id, profile_identify
from sessions_app.linking import identity_link_sweep
from sessions_app.models import BridgeStatus, SessionBridge
from tests.analytics.test_consumers import communicator, cookie_for, next_snapshot
from tests.federation.factories import NeuronFactory
from tests.helpers import assert_problem, grant, project_permissions
from tests.personalization.factories import ArchetypeFactory, SegmentFactory
from tests.sessions_app.factories import BehaviorEventFactory, DeviceFingerprintFactory, GlobalUserProfileFactory
from tests.sessions_app.test_linking import visit

VIEW_SESSIONS = "sessions_app.view_usersession"


@dataclass(frozen=True)
class Case:
    method: str
    path: str  # formatted with the world's ids
    permission: str
    body: dict[str, Any] | None = None
    ok: tuple[int, ...] = (200,)

    def __str__(self) -> str:
        return f"{self.method} {self.path}"


CASES = [
    # The admin API over sessions.
    Case("GET", "/api/sessions/admin/sessions", VIEW_SESSIONS),
    Case("POST", "/api/sessions/admin/search", VIEW_SESSIONS, {"filter": {}}),
    Case("GET", "/api/sessions/admin/export?format=json", VIEW_SESSIONS),
    Case("GET", "/api/sessions/admin/export?format=csv", VIEW_SESSIONS),
    Case(
        "PUT",
        "/api/sessions/admin/bulk-update",
        "sessions_app.change_usersession",
        {"sessionIds": ["{session}"], "addTags": ["vip"]},
    ),
    Case("DELETE", "/api/sessions/admin/delete", "sessions_app.delete_usersession", {"ids": ["{session}"]}, (200, 202)),
    # Profiles and their links.
    Case("GET", "/api/sessions/profiles/{user}", "sessions_app.view_globaluserprofile"),
    Case("GET", "/api/sessions/profiles/{user}/links", "sessions_app.view_globaluserprofile"),
    Case(
        "POST",
        "/api/sessions/profiles/{suggested_from}/links/{bridge}/accept",
        "sessions_app.change_globaluserprofile",
    ),
    Case(
        "POST",
        "/api/sessions/profiles/{suggested_from}/links/{bridge}/reject",
        "sessions_app.change_globaluserprofile",
    ),
    Case("POST", "/api/sessions/profiles/{user}/split", "sessions_app.change_globaluserprofile", {}),
    # Personalization.
    Case("GET", "/api/personalization/segments", "personalization.view_segment"),
    Case(
        "POST",
        "/api/personalization/segments",
        "personalization.add_segment",
        {"neuronId": "{neuron}", "name": "Mobile", "rule": {"field": "device", "op": "eq", "value": "mobile"}},
        (201,),
    ),
    Case("GET", "/api/personalization/segments/{segment}", "personalization.view_segment"),
    Case("PATCH", "/api/personalization/segments/{segment}", "personalization.change_segment", {"name": "Renamed"}),
    Case("DELETE", "/api/personalization/segments/{segment}", "personalization.delete_segment", None, (204,)),
    Case("GET", "/api/personalization/segments/{segment}/members", "personalization.view_segment"),
    Case("GET", "/api/personalization/archetypes", "personalization.view_archetype"),
    # Privacy: the staff path (a session token holder needs no model permission).
    Case(
        "POST",
        "/api/sessions/consent",
        "privacy.add_consentrecord",
        {"consent": {"marketing": False}, "sessionId": "{session}"},
    ),
    Case(
        "GET",
        "/api/sessions/user-data/{session}/export?idType=sessionId",
        "privacy.add_datasubjectrequest",
        None,
        (200, 202),
    ),
    Case(
        "DELETE",
        "/api/sessions/user-data/{session}?idType=sessionId",
        "privacy.add_datasubjectrequest",
        None,
        (200, 202),
    ),
    Case("GET", "/api/sessions/user-data/requests/{request}", "privacy.view_datasubjectrequest"),
    Case("GET", "/api/sessions/audit-log", "privacy.view_auditentry"),
    Case("GET", "/api/sessions/privacy-report", "privacy.view_consentrecord"),
    # Analytics reports.
    Case("GET", "/api/sessions/metrics", VIEW_SESSIONS),
    *[Case("GET", f"/api/sessions/analytics/{kind}", VIEW_SESSIONS) for kind in ("trends", "pages", "engagement")],
    Case("GET", "/api/sessions/devices", VIEW_SESSIONS),
    Case("GET", "/api/sessions/geographic", VIEW_SESSIONS),
    Case("GET", "/api/sessions/segments", VIEW_SESSIONS),
]

DASHBOARD_PAGES = [
    "/dashboard/",
    "/dashboard/sessions/",
    "/dashboard/sessions/{session}/",
    "/dashboard/funnels/",
    "/dashboard/journeys/",
    "/dashboard/retention/",
    "/dashboard/segments/",
    "/dashboard/privacy/",
]

# Any value of the right shape, to resolve a path without a database.
DUMMY_IDS = {
    "session": uuid.UUID(int=1),
    "user": uuid.UUID(int=2),
    "suggested_from": uuid.UUID(int=3),
    "bridge": 4,
    "segment": 5,
    "request": uuid.UUID(int=6),
    "neuron": "shop",
}


# --- the world the requests act on ----------------------------------------------------------------


@pytest.fixture
def world(db) -> dict[str, Any]:
    """A site with a consented session and events, an identified profile that absorbed a device (a
    merge to split), a suggested link on another site, a segment, an archetype and a pending request."""
    neuron = NeuronFactory(slug="shop")
    fingerprint = DeviceFingerprintFactory(neuron=neuron)
    laptop = visit(neuron, fingerprint=fingerprint, ip="10.1.0.0", profile=GlobalUserProfileFactory(neuron=neuron))
    profile_identify(session=laptop, user_id="u-1")
    visit(neuron, fingerprint=fingerprint, ip="10.1.0.0", device_type="mobile", browser="Mobile Safari", os="iOS")
    other = NeuronFactory(slug="blog")
    visit(other)
    visit(other)
    identity_link_sweep()
    bridge = SessionBridge.objects.get(status=BridgeStatus.SUGGESTED)
    for path in ("/", "/pricing"):
        BehaviorEventFactory(session=laptop, page_path=path)
    segment = SegmentFactory(neuron=neuron)
    ArchetypeFactory(neuron=neuron)
    request, _ = dsar_submit(
        kind=RequestKind.EXPORT, value=str(laptop.public_id), subject_type=SubjectType.SESSION_ID, requested_by="test"
    )
    return {
        "session": laptop.public_id,
        "user": profile_find_for_user_id(neuron=neuron, user_id="u-1").public_id,
        "suggested_from": bridge.from_profile.public_id,
        "bridge": bridge.pk,
        "segment": segment.pk,
        "request": request.public_id,
        "neuron": neuron.slug,
    }


def _fill(value: Any, ids: dict[str, Any]) -> Any:
    if isinstance(value, str):
        return value.format(**{k: str(v) for k, v in ids.items()})
    if isinstance(value, list):
        return [_fill(item, ids) for item in value]
    if isinstance(value, dict):
        return {key: _fill(item, ids) for key, item in value.items()}
    return value


def call(client: APIClient, case: Case, ids: dict[str, Any]):
    handler = getattr(client, case.method.lower())
    path = _fill(case.path, ids)
    if case.body is None:
        return handler(path)
    return handler(path, _fill(case.body, ids), format="json")


def database_state() -> dict[str, list[dict[str, Any]]]:
    """Every row of the project's tables (audit log included): a refused request changes none."""
    state = {}
    for app_label in ("federation", "sessions_app", "privacy", "personalization", "analytics"):
        for model in apps.get_app_config(app_label).get_models():
            rows = list(model.objects.order_by("pk").values())
            state[model._meta.label] = [
                {k: bytes(v) if isinstance(v, memoryview) else v for k, v in row.items()} for row in rows
            ]
    return state


def staff(django_user_model, name: str, *perms: str, **extra: Any):
    user = django_user_model.objects.create_user(name, f"{name}@example.com", f"pw-{name}-123", is_staff=True, **extra)
    return grant(user, *perms) if perms else user


def all_but(permission: str) -> list[str]:
    everything = project_permissions()
    assert permission in everything
    return [perm for perm in everything if perm != permission]


def api_client(user) -> APIClient:
    client = APIClient()
    client.force_authenticate(user)
    return client


def consume(response) -> None:
    """Read a streamed body to its end (the export's audit entry is written as it finishes)."""
    if getattr(response, "streaming", False):
        b"".join(response.streaming_content)


# --- the API --------------------------------------------------------------------------------------


@pytest.mark.parametrize("case", CASES, ids=str)
def test_staff_without_the_permission_is_refused_and_nothing_changes(world, django_user_model, case):
    """Staff holding every other project permission, but not this one: a 403 problem, no change."""
    user = staff(django_user_model, "intern", *all_but(case.permission))
    before = database_state()
    body = assert_problem(call(api_client(user), case, world), 403)
    assert body["title"] == "Forbidden"
    assert database_state() == before


@pytest.mark.parametrize("case", CASES, ids=str)
def test_staff_without_any_permission_is_refused(world, django_user_model, case):
    """The security review's case: a bare staff account (is_staff, no permission) opens nothing."""
    user = staff(django_user_model, "intern")
    before = database_state()
    assert_problem(call(api_client(user), case, world), 403)
    assert database_state() == before


@pytest.mark.parametrize("case", CASES, ids=str)
def test_staff_with_exactly_the_permission_gets_the_normal_answer(world, django_user_model, case):
    user = staff(django_user_model, "operator", case.permission)
    response = call(api_client(user), case, world)
    assert response.status_code in case.ok, response.content
    consume(response)


@pytest.mark.parametrize("case", CASES, ids=str)
def test_a_superuser_holds_every_permission(world, django_user_model, case):
    user = django_user_model.objects.create_superuser("root", "root@example.com", "pw-root-123")
    response = call(api_client(user), case, world)
    assert response.status_code in case.ok, response.content
    consume(response)


@pytest.mark.parametrize("case", CASES, ids=str)
def test_non_staff_stay_refused_whatever_their_permissions(world, django_user_model, case):
    """Permissions without staff status open nothing, as in the admin."""
    user = grant(django_user_model.objects.create_user("visitor", "v@example.com", "pw-visitor-1"), case.permission)
    before = database_state()
    assert_problem(call(api_client(user), case, world), 403)
    assert database_state() == before


# An anonymous caller: 401 with a challenge where the view's first authenticator names one (the
# admin API's Session, the privacy endpoints' Bearer), else 403 (DRF's SessionAuthentication).
CHALLENGE_OF = {
    "/api/sessions/admin/": "Session ",
    "/api/sessions/consent": "Bearer ",
    "/api/sessions/user-data/": "Bearer ",
    "/api/sessions/privacy-report": "Bearer ",
}


@pytest.mark.parametrize("case", CASES, ids=str)
def test_anonymous_callers_keep_their_401_or_403(db, case):
    """Refusing an anonymous caller is unchanged by the permission check."""
    response = call(APIClient(), case, DUMMY_IDS)
    challenge = next((c for prefix, c in CHALLENGE_OF.items() if case.path.startswith(prefix)), None)
    if challenge:
        assert_problem(response, 401)
        assert response["WWW-Authenticate"].startswith(challenge)
    else:
        assert_problem(response, 403)


def test_a_session_token_keeps_its_own_privacy_paths_without_any_permission(live_session):
    """The privacy endpoints serve visitors too: their token needs no model permission."""
    client, body = live_session
    sid = body["sessionId"]
    assert client.post("/api/sessions/consent", {"consent": {"marketing": True}}, format="json").status_code == 200
    assert client.get("/api/sessions/privacy-report").status_code == 200
    assert client.get(f"/api/sessions/user-data/{sid}/export").status_code in (200, 202)
    assert client.delete(f"/api/sessions/user-data/{sid}").status_code in (200, 202)


def test_a_permission_taken_away_closes_the_api_at_the_next_request(world, django_user_model):
    """Permissions are read per request (a logged-in client loads its user each time)."""
    user = staff(django_user_model, "operator", VIEW_SESSIONS)
    client = APIClient()
    client.force_login(user)
    assert client.get("/api/sessions/admin/sessions").status_code == 200
    user.user_permissions.clear()
    assert_problem(client.get("/api/sessions/admin/sessions"), 403)


# --- every staff endpoint is listed above, and declares what it needs ---------------------------------


def _routed_api_views(resolver: URLResolver | None = None, prefix: str = "") -> list[tuple[str, type[APIView]]]:
    views = []
    for pattern in (resolver or get_resolver()).url_patterns:
        if isinstance(pattern, URLResolver):
            views += _routed_api_views(pattern, prefix + str(pattern.pattern))
        elif isinstance(pattern, URLPattern):
            cls = getattr(pattern.callback, "cls", None)
            if isinstance(cls, type) and issubclass(cls, APIView):
                views.append((prefix + str(pattern.pattern), cls))
    return views


def _staff_methods(cls: type[APIView]) -> list[str]:
    return [m.upper() for m in cls.http_method_names if m not in ("options", "head") and hasattr(cls, m)]


def test_no_routed_api_view_is_opened_by_staff_status_alone():
    """IsAdminUser (DRF's default here, for a view that names no permission) checks only is_staff."""
    offenders = []
    for route, cls in _routed_api_views():
        classes = [*cls().get_permissions()]
        if any(isinstance(permission, IsAdminUser) for permission in classes):
            offenders.append(route)
    assert offenders == []


def test_every_staff_endpoint_declares_existing_permissions_and_is_tested_here(db):
    from django.contrib.auth.models import Permission

    existing = {f"{p.content_type.app_label}.{p.codename}" for p in Permission.objects.select_related("content_type")}
    declared = set()
    for _route, cls in _routed_api_views():
        if not {StaffWithPermissions, IsStaffOrSessionHolder} & set(cls.permission_classes):
            continue
        for method in _staff_methods(cls):
            [perms] = declared_permissions(cls(), method)
            assert set(perms) <= existing, (cls, method, perms)
            declared |= {(cls, method, perm) for perm in perms}
    tested = {(resolve(_fill(c.path, DUMMY_IDS).split("?")[0]).func.cls, c.method, c.permission) for c in CASES}
    assert declared == tested


# --- the dashboard --------------------------------------------------------------------------------


def page_client(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


@pytest.mark.parametrize("page", DASHBOARD_PAGES)
def test_dashboard_pages_refuse_staff_without_the_permission(world, django_user_model, page):
    before = database_state()
    for user in (staff(django_user_model, "intern"), staff(django_user_model, "almost", *all_but(VIEW_SESSIONS))):
        assert page_client(user).get(_fill(page, world)).status_code == 403
    assert database_state() == before


@pytest.mark.parametrize("page", DASHBOARD_PAGES)
def test_dashboard_pages_open_with_exactly_the_permission(world, django_user_model, page):
    user = staff(django_user_model, "operator", VIEW_SESSIONS)
    assert page_client(user).get(_fill(page, world)).status_code == 200


def test_dashboard_pages_still_send_non_staff_to_the_login(world, django_user_model):
    user = grant(django_user_model.objects.create_user("visitor", "v@example.com", "pw-visitor-1"), VIEW_SESSIONS)
    response = page_client(user).get("/dashboard/")
    assert response.status_code == 302 and response["Location"].startswith("/admin/login/")


def test_a_dashboard_write_is_still_a_405_before_anything_else(world, django_user_model):
    """require_safe stays outermost: the method is refused before the login or the permission."""
    assert page_client(staff(django_user_model, "intern")).post("/dashboard/").status_code == 405


# --- the live socket ------------------------------------------------------------------------------


@pytest.fixture
def _socket(settings):
    settings.DASHBOARD_TICK_SECONDS = 0.1
    ticker_module.ticker.last_event_id = None
    channel_layers.backends.clear()
    yield
    channel_layers.backends.clear()


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("others", [False, True], ids=["no permission", "every other permission"])
def test_the_live_socket_refuses_staff_without_the_permission(_socket, django_user_model, others):
    user = staff(django_user_model, "intern", *(all_but(VIEW_SESSIONS) if others else ()))
    headers = cookie_for(user)

    async def scenario():
        connected, code = await communicator(headers).connect()
        assert connected is False and code == CLOSE_FORBIDDEN

    async_to_sync(scenario)()


@pytest.mark.django_db(transaction=True)
def test_the_live_socket_opens_with_exactly_the_permission(_socket, django_user_model):
    headers = cookie_for(staff(django_user_model, "operator", VIEW_SESSIONS))

    async def scenario():
        comm = communicator(headers)
        connected, _ = await comm.connect()
        assert connected
        assert "activeSessions" in await next_snapshot(comm)
        await comm.disconnect()

    async_to_sync(scenario)()
