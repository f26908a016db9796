"""Admin API delete: sessions leave through data-subject erasure, bounded, dry-runnable and audited."""

from __future__ import annotations

import uuid

import pytest
from rest_framework.test import APIClient

from privacy.models import AuditEntry, ConsentRecord, DataSubjectRequest, ErasureTombstone
from sessions_app.models import BehaviorEvent, GlobalUserProfile, UserSession
from tests.helpers import assert_problem, bearer
from tests.privacy.test_dsar import Person
from tests.sessions_app.factories import BehaviorEventFactory, GlobalUserProfileFactory, UserSessionFactory
from tests.sessions_app.test_admin_apis import DELETE

pytestmark = pytest.mark.django_db


def delete(client, body, **kwargs):
    return client.delete(DELETE, body, format="json", **kwargs)


def erase(client, callbacks, body):
    """Send the delete and run what it queued after commit (the erasure tasks), as production does."""
    with callbacks(execute=True):
        return delete(client, body)


def delete_entries() -> list[dict]:
    return list(AuditEntry.objects.filter(action="sessions.delete").values("actor", "subject", "details"))


@pytest.fixture
def alice(site_client):
    return Person(site_client, "alice@example.com", events=2)


@pytest.fixture
def bob(site_client):
    return Person(site_client, "bob@example.com", devices=1, events=2)


# --- success ---------------------------------------------------------------------------------


def test_delete_by_ids_erases_the_person_through_a_verified_request(
    staff_client, staff_user, alice, bob, django_capture_on_commit_callbacks
):
    """One id: its person's request runs and verifies; every session, event and consent of hers goes."""
    sid = alice.sessions[0]["sessionId"]
    response = erase(staff_client, django_capture_on_commit_callbacks, {"ids": [sid]})
    assert response.status_code == 202, response.content  # answered before the queued erasure ran
    body = response.json()
    assert body["matched"] == 1 and body["people"] == 1 and body["dryRun"] is False
    assert body["withinLimit"] is True and body["limit"] == 1_000
    [item] = body["requests"]
    assert item["statusUrl"] == f"/api/sessions/user-data/requests/{item['requestId']}"

    request = DataSubjectRequest.objects.get()
    assert str(request.public_id) == item["requestId"]
    assert request.kind == "erase" and request.subject_type == "sessionId" and request.status == "verified"
    assert request.requested_by == f"user:{staff_user.pk}:staff"
    assert request.summary["deleted"]["sessions_app.UserSession"] == 2  # her other device too
    alice_anonymous = [s["anonymousId"] for s in alice.sessions]
    assert not UserSession.objects.filter(anonymous_id__in=alice_anonymous).exists()
    assert not BehaviorEvent.objects.filter(anonymous_id__in=alice_anonymous).exists()
    assert not ConsentRecord.objects.filter(anonymous_id__in=alice_anonymous).exists()
    assert not GlobalUserProfile.objects.filter(pk=alice.profile.pk).exists()
    # Bob is untouched.
    assert UserSession.objects.filter(public_id=bob.sessions[0]["sessionId"]).exists()
    assert BehaviorEvent.objects.filter(session__public_id=bob.sessions[0]["sessionId"]).count() == 2

    [entry] = delete_entries()
    assert entry["actor"] == f"user:{staff_user.pk}:staff" and entry["subject"] == "sessions:1"
    assert entry["details"] == {
        "selection": {"sessionIds": [sid]},
        "matched": 1,
        "people": 1,
        "requests": [item["requestId"]],
    }
    actions = list(AuditEntry.objects.order_by("seq").values_list("action", flat=True))
    assert actions == ["dsar.erase.requested", "sessions.delete", "dsar.erase.completed", "dsar.erase.verified"]


def test_delete_by_filter_files_one_request_per_person(
    staff_client, neuron, alice, bob, django_capture_on_commit_callbacks
):
    """A filter selecting three sessions of two people files two requests; sessions outside it stay."""
    outside = UserSessionFactory(neuron=neuron, country="FR")
    selection = {"filter": {"neuron": neuron.slug, "country": "GB"}}
    response = erase(staff_client, django_capture_on_commit_callbacks, selection)
    body = response.json()
    assert body["matched"] == 3 and body["people"] == 2 and len(body["requests"]) == 2
    statuses = set(DataSubjectRequest.objects.values_list("status", flat=True))
    assert statuses == {"verified"}
    assert list(UserSession.objects.values_list("pk", flat=True)) == [outside.pk]
    [entry] = delete_entries()
    assert entry["details"]["selection"] == selection
    assert entry["details"]["matched"] == 3 and entry["details"]["people"] == 2


def test_delete_by_search_document_with_event_criteria(staff_client, django_capture_on_commit_callbacks):
    """The same document as search: sessions that have a matching event are erased, the others kept."""
    spam = UserSessionFactory(profile=GlobalUserProfileFactory())
    BehaviorEventFactory(session=spam, event_type="track", event_name="Spam")
    kept = UserSessionFactory(neuron=spam.neuron, profile=GlobalUserProfileFactory(neuron=spam.neuron))
    BehaviorEventFactory(session=kept)
    body = erase(
        staff_client, django_capture_on_commit_callbacks, {"filter": {}, "events": [{"type": "track", "name": "Spam"}]}
    ).json()
    assert body["matched"] == 1
    assert list(UserSession.objects.values_list("pk", flat=True)) == [kept.pk]
    assert BehaviorEvent.objects.filter(session=kept).count() == 1


@pytest.mark.django_db(transaction=True)
def test_delete_answers_200_with_counts_when_the_erasure_ran_at_commit(staff_user):
    """Without a wrapping test transaction the erasure runs at commit (no broker): 200 with what went."""
    client = APIClient()
    client.force_authenticate(staff_user)
    profile = GlobalUserProfileFactory()
    first = UserSessionFactory(neuron=profile.neuron, profile=profile)
    UserSessionFactory(neuron=profile.neuron, profile=profile)
    response = delete(client, {"ids": [str(first.public_id)]})
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["erasedSessions"] == 2 and body["requests"][0]["status"] == "verified"
    assert not UserSession.objects.exists()


def test_deleting_erased_ids_again_matches_nothing(staff_client, alice, django_capture_on_commit_callbacks):
    """DELETE is idempotent: the ids are gone, so the second call selects nothing and files nothing."""
    ids = [s["sessionId"] for s in alice.sessions]
    erase(staff_client, django_capture_on_commit_callbacks, {"ids": ids})
    again = erase(staff_client, django_capture_on_commit_callbacks, {"ids": ids})
    assert again.status_code == 200
    assert again.json()["matched"] == 0 and again.json()["requests"] == []
    assert DataSubjectRequest.objects.count() == 1


# --- dry run and limits ----------------------------------------------------------------------


def test_dry_run_counts_sessions_and_people_without_erasing(staff_client, alice, bob):
    """A dry run says how many sessions and people would go, writes nothing and audits nothing."""
    response = delete(staff_client, {"filter": {}, "dryRun": True})
    assert response.status_code == 200
    assert response.json() == {
        "matched": 3,
        "people": 2,
        "erasedSessions": None,
        "dryRun": True,
        "limit": 1_000,
        "withinLimit": True,
        "requests": [],
    }
    assert UserSession.objects.count() == 3
    assert not DataSubjectRequest.objects.exists() and not AuditEntry.objects.exists()


def test_delete_above_the_limit_is_refused_whole(staff_client, settings, django_capture_on_commit_callbacks):
    """Above ADMIN_DELETE_MAX_SESSIONS: a 422 with the count; nothing is erased or filed."""
    settings.ADMIN_DELETE_MAX_SESSIONS = 2
    UserSessionFactory.create_batch(3, country="NL")
    body = assert_problem(erase(staff_client, django_capture_on_commit_callbacks, {"filter": {"country": "NL"}}), 422)
    assert body["matched"] == 3 and body["limit"] == 2
    assert UserSession.objects.count() == 3
    assert not DataSubjectRequest.objects.exists() and not AuditEntry.objects.exists()

    dry = delete(staff_client, {"filter": {"country": "NL"}, "dryRun": True}).json()
    assert dry["matched"] == 3 and dry["withinLimit"] is False and dry["people"] is None


def test_delete_body_above_the_size_cap_is_413(staff_client):
    """A body past the API's byte cap is refused before it is parsed."""
    ids = [str(uuid.uuid4()) for _ in range(5_000)]
    assert_problem(delete(staff_client, {"ids": ids}), 413)


# --- permissions and bad input ---------------------------------------------------------------


def test_delete_refuses_anonymous_non_staff_and_session_tokens(db, django_user_model, live_session):
    """No login: 401; a non-staff user: 403; a visitor's session token opens no admin endpoint."""
    session = UserSession.objects.get()
    body = {"ids": [str(session.public_id)]}
    assert_problem(delete(APIClient(), body), 401)
    user = APIClient()
    user.force_authenticate(django_user_model.objects.create_user("clerk", "c@example.com", "pw-clerk-123"))
    assert_problem(delete(user, body), 403)
    visitor, _ = live_session
    assert_problem(delete(visitor, body), 401)
    assert UserSession.objects.filter(pk=session.pk).exists()


def test_delete_needs_the_admin_csrf_token_with_a_login_session(client, staff_user):
    """With a real login cookie the CSRF check applies, as on every admin write."""
    session = UserSessionFactory()
    client.force_login(staff_user)
    api = APIClient(enforce_csrf_checks=True)
    api.cookies = client.cookies
    assert_problem(delete(api, {"ids": [str(session.public_id)]}), 403)
    assert UserSession.objects.filter(pk=session.pk).exists()


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "filter"),
        ({"dryRun": True}, "filter"),
        ({"ids": []}, "ids"),
        ({"ids": ["not-a-uuid"]}, "ids"),
        ({"ids": [str(uuid.uuid4())], "sessionIds": [str(uuid.uuid4())]}, "ids"),
        ({"filter": {"contry": "GB"}}, "contry"),
        ({"filter": {"device": "fridge"}}, "device"),
        ({"filter": []}, "filter"),
        ({"filter": {"startedAfter": {"a": 1}}}, "startedAfter"),
        ({"filter": {}, "dryRun": "yes"}, "dryRun"),
        ({"filter": {}, "end": True}, "end"),
        ({"events": [{"colour": "red"}]}, "events"),
    ],
)
def test_delete_rejects_malformed_requests(staff_client, body, field):
    """No selection, bad ids, unknown filters or fields, wrong types: a 400 naming the field, nothing erased."""
    UserSessionFactory()
    problem = assert_problem(delete(staff_client, body), 400)
    assert any(key.startswith(field) for key in problem["errors"]), problem
    assert UserSession.objects.count() == 1 and not AuditEntry.objects.exists()


def test_delete_rejects_malformed_json(staff_client):
    assert_problem(staff_client.delete(DELETE, b"{nope", content_type="application/json"), 400)


# --- erasure rules ---------------------------------------------------------------------------


def test_erased_session_token_opens_nothing_and_its_ids_are_tombstoned(
    staff_client, alice, django_capture_on_commit_callbacks
):
    """After the delete the visitor's token is refused and the erased ids are kept only as keyed hashes."""
    sid, token = alice.sessions[0]["sessionId"], alice.sessions[0]["token"]
    erase(staff_client, django_capture_on_commit_callbacks, {"ids": [sid]})
    assert bearer(token).get(f"/api/sessions/{sid}").status_code == 401
    assert ErasureTombstone.objects.filter(kind="sessionId").count() == 2
    assert not ErasureTombstone.objects.filter(identifier_hash__contains=sid).exists()


def test_another_person_on_a_shared_device_is_not_erased(staff_client, neuron, django_capture_on_commit_callbacks):
    """Erasure widens to the person, never to a second person who used the same device."""
    first = GlobalUserProfileFactory(neuron=neuron, user_id_hash="a" * 64)
    second = GlobalUserProfileFactory(neuron=neuron, user_id_hash="b" * 64)
    theirs = UserSessionFactory(neuron=neuron, profile=first, anonymous_id="family-tablet")
    other = UserSessionFactory(neuron=neuron, profile=second, anonymous_id="family-tablet")
    BehaviorEventFactory(session=other)
    body = erase(staff_client, django_capture_on_commit_callbacks, {"ids": [str(theirs.public_id)]}).json()
    assert body["people"] == 1
    assert not UserSession.objects.filter(pk=theirs.pk).exists()
    assert UserSession.objects.filter(pk=other.pk).exists() and GlobalUserProfile.objects.filter(pk=second.pk).exists()
    assert BehaviorEvent.objects.filter(session=other).count() == 1


def test_schema_documents_the_delete_endpoint(staff_client):
    """drf-spectacular publishes the operation with its request and both answers."""
    spec = staff_client.get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json").json()
    operation = spec["paths"]["/api/sessions/admin/delete"]["delete"]
    assert {"200", "202"} <= set(operation["responses"])
    assert "requestBody" in operation
