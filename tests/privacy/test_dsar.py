"""Data-subject requests: export completeness and isolation, total erasure, tombstones, lifecycle."""

from __future__ import annotations

import uuid

import pytest
from django.apps import apps
from django.conf import settings
from django.db import models
from django.db.models import Q, TextField
from django.db.models.functions import Cast
from rest_framework.test import APIClient

from privacy.crypto import identifier_hash
from privacy.dsar import dsar_create, dsar_run
from privacy.models import AuditEntry, DataSubjectRequest, ErasureTombstone
from privacy.registry import personal_data_registry
from sessions_app.models import BehaviorEvent, BridgeMethod, GlobalUserProfile, SessionBridge, UserSession
from tests.helpers import assert_problem, bearer

pytestmark = pytest.mark.django_db

TEXTUAL = (models.CharField, models.TextField, models.JSONField, models.UUIDField)


def search_everywhere(needles: list[str]) -> dict[str, int]:
    """Rows of ANY installed model whose text, JSON or UUID fields contain one of the needles."""
    found: dict[str, int] = {}
    for model in apps.get_models():
        fields = [f for f in model._meta.concrete_fields if isinstance(f, TEXTUAL)]
        if not fields:
            continue
        q = Q()
        annotations = {}
        for f in fields:
            alias = f"_t_{f.attname}"
            annotations[alias] = Cast(f.attname, TextField())
            for needle in needles:
                q |= Q(**{f"{alias}__contains": needle})
        n = model._base_manager.annotate(**annotations).filter(q).count()
        if n:
            found[model._meta.label] = n
    return found


class Person:
    def __init__(self, site_client, user_id: str, devices: int = 2, events: int = 3):
        self.user_id = user_id
        self.sessions: list[dict] = []
        for d in range(devices):
            body = site_client.post(
                "/api/sessions/create",
                {
                    "consent": {"analytics": True, "fingerprinting": True},
                    "fingerprint": {"hash": f"{user_id}-device-{d}".ljust(16, "x")},
                },
                format="json",
            ).json()
            client = bearer(body["token"])
            updated = client.put(f"/api/sessions/{body['sessionId']}", {"userId": user_id}, format="json").json()
            if "token" in updated:
                body["token"] = updated["token"]
                client = bearer(updated["token"])
            for e in range(events):
                client.post(
                    f"/api/sessions/{body['sessionId']}/events",
                    {"eventType": "page_view", "page": {"path": f"/{user_id}/{e}"}},
                    format="json",
                )
            self.sessions.append(body)
        self.profile = GlobalUserProfile.objects.get(user_id_hash=identifier_hash(user_id))

    def client(self, n: int = 0) -> APIClient:
        return bearer(self.sessions[n]["token"])

    def needles(self) -> list[str]:
        out = [self.user_id, str(self.profile.public_id), self.profile.user_id_hash]
        for s in self.sessions:
            out += [s["sessionId"], s["anonymousId"]]
        return out


@pytest.fixture
def alice(site_client):
    return Person(site_client, "alice@example.com")


@pytest.fixture
def bob(site_client):
    return Person(site_client, "bob@example.com", devices=1)


@pytest.fixture
def linked(alice, bob):
    """A suggested probabilistic link between Alice and Bob (a shared office network)."""
    return SessionBridge.objects.create(
        neuron=alice.profile.neuron,
        from_profile=alice.profile,
        to_profile=bob.profile,
        method=BridgeMethod.NETWORK,
        confidence=0.4,
        evidence={"network": "81.2.69.0"},
    )


def run(callbacks_fixture, fn):
    with callbacks_fixture(execute=True):
        return fn()


# --- export ----------------------------------------------------------------------------------


def test_staff_export_holds_every_registered_table_and_only_the_subject(
    staff_client, alice, bob, linked, django_capture_on_commit_callbacks
):
    """The document has a section per registered table, Alice's rows, and nothing of Bob's."""
    response = run(
        django_capture_on_commit_callbacks,
        lambda: staff_client.get("/api/sessions/user-data/alice@example.com/export?idType=userId"),
    )
    assert response.status_code == 202, response.content
    status_url = response.json()["statusUrl"]
    detail = staff_client.get(status_url).json()
    assert detail["status"] == "completed"
    document = detail["document"]
    assert set(document["tables"]) == {e.model for e in personal_data_registry().entries}
    assert document["subject"]["userIds"] == ["alice@example.com"]
    assert sorted(document["subject"]["sessionIds"]) == sorted(s["sessionId"] for s in alice.sessions)
    tables = document["tables"]
    assert len(tables["sessions_app.UserSession"]["rows"]) == 2
    assert len(tables["sessions_app.BehaviorEvent"]["rows"]) == 6
    assert len(tables["sessions_app.DeviceFingerprint"]["rows"]) == 2
    assert tables["sessions_app.GlobalUserProfile"]["rows"][0]["user_id_encrypted"] == "alice@example.com"
    assert tables["privacy.ConsentRecord"]["rows"]
    (bridge,) = tables["sessions_app.SessionBridge"]["rows"]
    assert bridge["from_profile_id"] == alice.profile.pk and bridge["to_profile_id"] is None
    assert "evidence" not in bridge
    assert all("token_hash" not in row for row in tables["sessions_app.UserSession"]["rows"])
    text = str(document)
    for needle in bob.needles():
        assert needle not in text
    assert AuditEntry.objects.filter(action="dsar.export.requested").get().actor.startswith("user:")
    assert AuditEntry.objects.filter(action="dsar.export.read").exists()


def test_visitor_exports_their_own_session_with_their_session_token(alice, django_capture_on_commit_callbacks):
    """A session token opens its own session's export (not the person's other devices, which only the
    operator, verifying who asks, exports); the status endpoint hands it out."""
    client = alice.client(0)
    sid = alice.sessions[0]["sessionId"]
    response = run(django_capture_on_commit_callbacks, lambda: client.get(f"/api/sessions/user-data/{sid}/export"))
    assert response.status_code == 202
    detail = client.get(response.json()["statusUrl"]).json()
    assert detail["status"] == "completed"
    document = detail["document"]
    assert document["subject"]["sessionIds"] == [sid]
    tables = document["tables"]
    assert len(tables["sessions_app.UserSession"]["rows"]) == 1
    assert len(tables["sessions_app.BehaviorEvent"]["rows"]) == 3
    assert len(tables["sessions_app.DeviceFingerprint"]["rows"]) == 1  # its device's, used by no other session
    assert tables["sessions_app.GlobalUserProfile"]["rows"] == []
    assert alice.sessions[1]["sessionId"] not in str(document)


def test_a_session_token_naming_its_own_person_by_another_identifier_is_404(alice):
    """The anonymous id, user id and profile a session carries were chosen by the browser: they prove
    nothing, so a token may not name them, not even its own (the same 404 as an unknown subject)."""
    client = alice.client(0)
    own = alice.sessions[0]
    names = [
        own["anonymousId"],
        f"{own['anonymousId']}?idType=anonymousId",
        alice.user_id,
        f"{alice.user_id}?idType=userId",
        str(alice.profile.public_id),
        f"{alice.profile.public_id}?idType=profileId",
        alice.sessions[1]["sessionId"],  # the same person's other device
        f"{own['sessionId']}?idType=anonymousId",
    ]
    for name in names:
        subject, _, query = name.partition("?")
        query = f"?{query}" if query else ""
        assert_problem(client.get(f"/api/sessions/user-data/{subject}/export{query}"), 404)
        assert_problem(client.delete(f"/api/sessions/user-data/{subject}{query}"), 404)
    assert not DataSubjectRequest.objects.exists()
    assert UserSession.objects.filter(profile=alice.profile).count() == 2


def test_a_session_token_asking_for_another_subject_is_404(alice, bob):
    """Bob's token cannot read or erase Alice's data, nor learn whether she exists."""
    client = bob.client(0)
    for response in (
        client.get("/api/sessions/user-data/alice@example.com/export?idType=userId"),
        client.delete(f"/api/sessions/user-data/{alice.profile.public_id}"),
        client.get(f"/api/sessions/user-data/{uuid.uuid4()}/export"),
    ):
        assert response.status_code == 404, response.content
    assert not DataSubjectRequest.objects.exists()


def test_a_session_token_cannot_read_someone_elses_request(staff_client, alice, bob):
    """Request status is visible to staff and to the session that asked, only."""
    request, _ = dsar_create(kind="export", value="alice@example.com", subject_type="userId", requested_by="staff")
    assert bob.client(0).get(f"/api/sessions/user-data/requests/{request.public_id}").status_code == 404
    assert staff_client.get(f"/api/sessions/user-data/requests/{request.public_id}").status_code == 200
    assert staff_client.get(f"/api/sessions/user-data/requests/{uuid.uuid4()}").status_code == 404


def test_unknown_subject_is_404(staff_client):
    for response in (
        staff_client.get("/api/sessions/user-data/nobody@example.com/export"),
        staff_client.delete("/api/sessions/user-data/nobody@example.com"),
        staff_client.get(f"/api/sessions/user-data/{uuid.uuid4()}/export?idType=profileId"),
    ):
        assert response.status_code == 404
        assert response["Content-Type"] == "application/problem+json"


def test_bad_id_type_is_400(staff_client, alice):
    response = staff_client.get("/api/sessions/user-data/alice@example.com/export?idType=email")
    assert response.status_code == 400
    assert "idType" in response.json()["errors"]


def test_bad_id_type_on_erasure_is_400_and_erases_nothing(staff_client, alice, django_capture_on_commit_callbacks):
    """DELETE with an unknown idType is a 400 problem naming it; no request is made, no row removed."""
    needles = alice.needles()
    before = search_everywhere(needles)
    response = run(
        django_capture_on_commit_callbacks,
        lambda: staff_client.delete("/api/sessions/user-data/alice@example.com?idType=email"),
    )
    body = assert_problem(response, 400)
    assert "idType" in body["errors"]
    assert not DataSubjectRequest.objects.exists()
    assert not AuditEntry.objects.filter(action__startswith="dsar.").exists()
    assert UserSession.objects.filter(profile=alice.profile).count() == 2
    assert BehaviorEvent.objects.filter(session__profile=alice.profile).count() == 6
    assert search_everywhere(needles) == before


def test_request_status_needs_credentials(api_client, staff_client, django_user_model, alice):
    """No credentials, or a token no session has: 401; a non-staff operator: 403. No word of the request."""
    request, _ = dsar_create(kind="export", value="alice@example.com", subject_type="userId", requested_by="staff")
    url = f"/api/sessions/user-data/requests/{request.public_id}"
    for response in (api_client.get(url), bearer("no-such-token").get(url)):
        assert_problem(response, 401)
        assert "alice" not in response.content.decode()
    assert_problem(api_client.get(f"/api/sessions/user-data/requests/{uuid.uuid4()}"), 401)  # no existence oracle
    clerk = APIClient()
    clerk.force_authenticate(django_user_model.objects.create_user("clerk", password="pw-clerk-123"))
    assert_problem(clerk.get(url), 403)
    assert staff_client.get(url).status_code == 200  # the same URL with credentials


def test_user_data_endpoints_need_credentials(api_client, db, django_user_model, alice):
    """No credentials: 401. A non-staff operator: 403."""
    assert api_client.get("/api/sessions/user-data/alice@example.com/export").status_code == 401
    assert api_client.delete("/api/sessions/user-data/alice@example.com").status_code == 401
    user = django_user_model.objects.create_user("clerk", password="pw-clerk-123")
    client = APIClient()
    client.force_authenticate(user)
    assert client.get("/api/sessions/user-data/alice@example.com/export").status_code == 403
    assert client.delete("/api/sessions/user-data/alice@example.com").status_code == 403


# --- erasure ---------------------------------------------------------------------------------


def test_erasure_leaves_no_row_with_the_subjects_identifiers_in_any_table(
    staff_client, alice, bob, linked, django_capture_on_commit_callbacks
):
    """Every installed table is searched afterwards; Bob's data is untouched."""
    needles = alice.needles()
    assert search_everywhere(needles)  # the search does find her before
    bob_before = search_everywhere(bob.needles())

    response = run(
        django_capture_on_commit_callbacks,
        lambda: staff_client.delete("/api/sessions/user-data/alice@example.com?idType=userId"),
    )
    assert response.status_code == 202, response.content
    request = DataSubjectRequest.objects.get(public_id=response.json()["requestId"])
    assert request.status == "verified" and request.verified_at is not None
    assert request.subject_encrypted == ""
    assert request.summary["deleted"]["sessions_app.UserSession"] == 2
    assert request.summary["verification"] == {"remaining": {}}

    assert search_everywhere(needles) == {}
    assert search_everywhere(bob.needles()) == bob_before
    assert not SessionBridge.objects.exists()
    assert BehaviorEvent.objects.filter(session__public_id=bob.sessions[0]["sessionId"]).count() == 3
    actions = list(AuditEntry.objects.values_list("action", flat=True))
    assert actions == ["dsar.erase.requested", "dsar.erase.completed", "dsar.erase.verified"]


def test_erasing_twice_is_idempotent(staff_client, alice, django_capture_on_commit_callbacks):
    """The second call returns the first request; nothing new is created."""
    first = run(
        django_capture_on_commit_callbacks,
        lambda: staff_client.delete(f"/api/sessions/user-data/{alice.profile.public_id}"),
    ).json()
    second = staff_client.delete(f"/api/sessions/user-data/{alice.profile.public_id}")
    assert second.status_code == 200
    assert second.json()["requestId"] == first["requestId"] and second.json()["status"] == "verified"
    assert DataSubjectRequest.objects.count() == 1


def test_visitor_erases_their_session_and_late_retries_are_dropped(alice, django_capture_on_commit_callbacks):
    """A token erases its own session: after it the old token opens nothing and the session id never
    comes back; the person's other device and profile stay (only staff erase the whole person)."""
    client = alice.client(0)
    sid = alice.sessions[0]["sessionId"]
    other = alice.sessions[1]["sessionId"]
    response = run(django_capture_on_commit_callbacks, lambda: client.delete(f"/api/sessions/user-data/{sid}"))
    assert response.status_code in (200, 202)
    request = DataSubjectRequest.objects.get(public_id=response.json()["requestId"])
    assert request.status == "verified", request.summary
    assert list(UserSession.objects.values_list("public_id", flat=True)) == [uuid.UUID(other)]

    # The browser's queued events arrive late: rejected, nothing stored.
    late = client.post(f"/api/sessions/{sid}/events", {"eventType": "click"}, format="json")
    assert late.status_code == 401
    assert not BehaviorEvent.objects.filter(session__public_id=sid).exists()
    assert BehaviorEvent.objects.filter(session__public_id=other).count() == 3
    # Only the session id was proven, so only it is tombstoned.
    assert list(ErasureTombstone.objects.values_list("kind", flat=True)) == ["sessionId"]
    assert GlobalUserProfile.objects.filter(user_id_hash=identifier_hash(alice.user_id)).get() == alice.profile
    assert search_everywhere([sid]) == {}


def test_staff_erasure_of_the_person_drops_late_retries_of_every_identifier(
    site_client, staff_client, alice, django_capture_on_commit_callbacks
):
    """After a staff erasure the old token opens nothing, and the erased identifiers never come back."""
    client = alice.client(0)
    sid = alice.sessions[0]["sessionId"]
    anonymous_id = alice.sessions[0]["anonymousId"]
    response = run(
        django_capture_on_commit_callbacks,
        lambda: staff_client.delete(f"/api/sessions/user-data/{alice.user_id}?idType=userId"),
    )
    assert response.status_code in (200, 202)
    assert not UserSession.objects.exists()

    # The browser's queued events arrive late: rejected, nothing stored.
    late = client.post(f"/api/sessions/{sid}/events", {"eventType": "click"}, format="json")
    assert late.status_code == 401
    assert not BehaviorEvent.objects.exists()

    # The same browser comes back with its old anonymous id: it gets a new one.
    fresh = site_client.post(
        "/api/sessions/create", {"anonymousId": anonymous_id, "consent": {"analytics": True}}, format="json"
    ).json()
    assert fresh["anonymousId"] != anonymous_id
    # An identify with the erased user id does not rebuild the profile.
    bearer(fresh["token"]).put(f"/api/sessions/{fresh['sessionId']}", {"userId": alice.user_id}, format="json")
    assert not GlobalUserProfile.objects.filter(user_id_hash=identifier_hash(alice.user_id)).exists()
    assert ErasureTombstone.objects.filter(kind="userId").exists()
    assert search_everywhere([alice.user_id, anonymous_id, sid]) == {}


def test_erasure_by_anonymous_id_spares_another_person_on_the_same_device(site_client, alice):
    """A shared device's anonymous id used by someone else's identified session keeps that session."""
    shared = alice.sessions[0]["anonymousId"]
    other = site_client.post(
        "/api/sessions/create", {"anonymousId": shared, "consent": {"analytics": True}}, format="json"
    ).json()
    bearer(other["token"]).put(f"/api/sessions/{other['sessionId']}", {"userId": "carol"}, format="json")
    request, _ = dsar_create(kind="erase", value="alice@example.com", subject_type="userId", requested_by="staff")
    assert dsar_run(request_id=request.pk).status == "verified"
    assert UserSession.objects.filter(public_id=other["sessionId"]).exists()


# --- lifecycle -------------------------------------------------------------------------------


def test_request_lifecycle_pending_running_completed_verified(alice):
    """A request starts pending; the task moves it through to verified, and a rerun changes nothing."""
    request, created = dsar_create(kind="erase", value=alice.user_id, subject_type="userId", requested_by="staff")
    assert created and request.status == "pending" and request.subject_encrypted
    done = dsar_run(request_id=request.pk)
    assert done.status == "verified" and done.started_at <= done.completed_at <= done.verified_at
    assert dsar_run(request_id=request.pk).status == "verified"


def test_a_failing_request_is_marked_failed_without_a_500(alice, monkeypatch):
    """An error inside the job is recorded (by type only) and audited."""
    request, _ = dsar_create(kind="export", value=alice.user_id, subject_type="userId", requested_by="staff")

    def boom(**kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr("privacy.dsar.subject_export", boom)
    done = dsar_run(request_id=request.pk)
    assert done.status == "failed" and done.error == "RuntimeError" and done.subject_encrypted == ""
    assert AuditEntry.objects.filter(action="dsar.export.failed").exists()


def test_the_task_runs_the_request(alice):
    """privacy.tasks.run_data_subject_request is the Celery entry point."""
    from privacy.tasks import run_data_subject_request

    request, _ = dsar_create(kind="export", value=alice.user_id, subject_type="userId", requested_by="staff")
    assert run_data_subject_request.delay(request.pk).get() == "completed"


@pytest.mark.skipif(not settings.REDIS_URL, reason="needs the real broker (REDIS_URL)")
@pytest.mark.django_db(transaction=True)
def test_erasure_runs_through_a_real_worker(staff_user):
    """The DELETE queues the request on the broker; a worker started here erases and verifies it."""
    import time
    from datetime import timedelta

    from celery.contrib.testing.worker import start_worker
    from django.utils import timezone

    from config.celery import app
    from tests.sessions_app.factories import BehaviorEventFactory, UserSessionFactory

    session = UserSessionFactory()
    BehaviorEventFactory.create_batch(3, session=session)
    client = APIClient()
    client.force_authenticate(staff_user)
    app.conf.task_always_eager = False
    try:
        with start_worker(app, pool="solo", perform_ping_check=False, shutdown_timeout=10):
            response = client.delete(f"/api/sessions/user-data/{session.public_id}?idType=sessionId")
            assert response.status_code == 202 and response.json()["status"] == "pending"
            request = DataSubjectRequest.objects.get(public_id=response.json()["requestId"])
            deadline = timezone.now() + timedelta(seconds=30)
            while timezone.now() < deadline and request.status != "verified":
                time.sleep(0.1)
                request.refresh_from_db()
    finally:
        app.conf.task_always_eager = True
    assert request.status == "verified"
    assert not BehaviorEvent.objects.exists() and not UserSession.objects.exists()


def test_segment_calls_about_an_erased_subject_are_dropped(neuron, alice):
    """A Segment SDK retrying after the erasure: the call is answered but nothing is stored."""
    import base64

    import orjson
    from django.test import Client

    anonymous_id = alice.sessions[0]["anonymousId"]
    request, _ = dsar_create(kind="erase", value=alice.user_id, subject_type="userId", requested_by="staff")
    assert dsar_run(request_id=request.pk).status == "verified"
    auth = "Basic " + base64.b64encode(f"{neuron.publishable_key}:".encode()).decode()
    context = {"consent": {"categoryPreferences": {"Analytics": True}}}
    calls = [
        {"type": "track", "anonymousId": anonymous_id, "event": "Clicked", "context": context},
        {"type": "identify", "userId": alice.user_id, "traits": {"plan": "pro"}, "context": context},
        {"type": "track", "anonymousId": "someone-else", "event": "Clicked", "context": context},
    ]
    response = Client().post(
        "/v1/batch", orjson.dumps({"batch": calls}), content_type="application/json", HTTP_AUTHORIZATION=auth
    )
    assert response.status_code == 200, response.content
    assert search_everywhere([anonymous_id, alice.user_id]) == {}
    assert list(UserSession.objects.values_list("anonymous_id", flat=True)) == ["someone-else"]
    assert not GlobalUserProfile.objects.filter(user_id_hash=identifier_hash(alice.user_id)).exists()
