"""Data-subject requests made with a session token stay on the token's session; erasures are not doubled.

A visitor chooses their anonymous id, so two sites can hold the same one (and the same user id), and
two visitors of one site too: a token proves only its own session, so it may name only that session,
and never reaches another session (of its site or of site B) nor learns that it exists. Staff keep
their reach over the whole person on every site. A second erasure of a subject while the first is
open returns the first request.
"""

from __future__ import annotations

import base64

import pytest
from rest_framework.test import APIClient

from privacy.crypto import identifier_hash
from privacy.models import DataSubjectRequest, ErasureTombstone
from sessions_app.models import GlobalUserProfile
from tests.conftest import IPHONE_UA
from tests.federation.factories import NeuronFactory
from tests.helpers import assert_problem, in_parallel, needs_postgres
from tests.privacy.visits import Visit, export_document, run, site_client

pytestmark = pytest.mark.django_db

SHARED = "shared-1"


@pytest.fixture
def site_b(db):
    return NeuronFactory()


@pytest.fixture
def mine(neuron):
    """Site A's visitor, anonymous id `shared-1`."""
    return Visit(neuron, SHARED)


@pytest.fixture
def theirs(site_b):
    """Site B's visitor, who chose the same anonymous id."""
    return Visit(site_b, SHARED, events=3)


# --- a token stays on its own site -----------------------------------------------------------


def test_token_export_of_its_session_holds_only_its_ownsite_client(mine, theirs, django_capture_on_commit_callbacks):
    client = mine.client()
    response = run(
        django_capture_on_commit_callbacks,
        lambda: client.get(f"/api/sessions/user-data/{mine.session_id}/export"),
    )
    document = export_document(client, response)
    assert document["subject"]["sessionIds"] == [mine.session_id]
    tables = document["tables"]
    assert [r["neuron_id"] for r in tables["sessions_app.UserSession"]["rows"]] == [mine.neuron.pk]
    assert len(tables["sessions_app.BehaviorEvent"]["rows"]) == 2
    assert {r["neuron_id"] for r in tables["privacy.ConsentRecord"]["rows"]} == {mine.neuron.pk}
    assert theirs.session_id not in str(document)
    assert theirs.neuron.slug not in str(document)


def test_token_naming_its_anonymous_id_is_404_on_everysite_client(mine, theirs, django_capture_on_commit_callbacks):
    """The anonymous id is the browser's choice (site B's visitor chose it too): it proves nothing."""
    for visit in (mine, theirs):
        client = visit.client()
        for response in run(
            django_capture_on_commit_callbacks,
            lambda client=client: (
                client.get(f"/api/sessions/user-data/{SHARED}/export?idType=anonymousId"),
                client.get(f"/api/sessions/user-data/{SHARED}/export"),
                client.delete(f"/api/sessions/user-data/{SHARED}?idType=anonymousId"),
                client.delete(f"/api/sessions/user-data/{SHARED}"),
            ),
        ):
            assert_problem(response, 404)
    assert not DataSubjectRequest.objects.exists()
    assert mine.exists() and mine.events() == 2
    assert theirs.exists() and theirs.events() == 3


def test_token_erasure_of_its_session_spares_the_othersite_client(mine, theirs, django_capture_on_commit_callbacks):
    client = mine.client()
    response = run(
        django_capture_on_commit_callbacks,
        lambda: client.delete(f"/api/sessions/user-data/{mine.session_id}?idType=sessionId"),
    )
    assert response.status_code in (200, 202), response.content
    request = DataSubjectRequest.objects.get(public_id=response.json()["requestId"])
    assert request.status == "verified", request.summary
    assert request.neuron_id == mine.neuron.pk and request.subject_type == "sessionId"
    assert not mine.exists()
    assert theirs.exists() and theirs.events() == 3
    assert request.summary["deleted"]["sessions_app.UserSession"] == 1


def _v1_track(neuron, anonymous_id: str) -> dict:
    client = APIClient(REMOTE_ADDR="81.2.69.142", HTTP_USER_AGENT=IPHONE_UA)
    client.credentials(HTTP_AUTHORIZATION="Basic " + base64.b64encode(f"{neuron.publishable_key}:".encode()).decode())
    consent = {"consent": {"categoryPreferences": {"analytics": True}}}
    return client.post(
        "/v1/track", {"anonymousId": anonymous_id, "event": "Came back", "context": consent}, format="json"
    ).json()


def test_a_tokens_erasure_tombstones_its_session_id_on_its_own_site_only(
    mine, theirs, django_capture_on_commit_callbacks
):
    """The tombstones of a visitor's own erasure are its session id, on its site: the anonymous id it
    carried was not proven to be the visitor's (anyone may choose it), so later data carrying it is
    kept, on site A as on site B, where the same id is someone else."""
    client = mine.client()
    run(
        django_capture_on_commit_callbacks,
        lambda: client.delete(f"/api/sessions/user-data/{mine.session_id}"),
    )
    assert not mine.exists()
    assert list(ErasureTombstone.objects.values_list("kind", "neuron_id")) == [("sessionId", mine.neuron.pk)]
    assert client.get(f"/api/sessions/{mine.session_id}").status_code == 401
    assert Visit(mine.neuron, SHARED).exists()  # Visit asserts the anonymous id was kept
    assert _v1_track(mine.neuron, SHARED)["stored"] == 1

    assert Visit(theirs.neuron, SHARED).exists()
    assert _v1_track(theirs.neuron, SHARED)["stored"] == 1


def test_a_staff_erasure_drops_later_data_of_the_identifier_on_everysite_client(
    staff_client, mine, theirs, django_capture_on_commit_callbacks
):
    run(
        django_capture_on_commit_callbacks,
        lambda: staff_client.delete(f"/api/sessions/user-data/{SHARED}?idType=anonymousId"),
    )
    assert not mine.exists() and not theirs.exists()
    for neuron in (mine.neuron, theirs.neuron):
        created = site_client(neuron).post("/api/sessions/create", {"anonymousId": SHARED}, format="json").json()
        assert created["anonymousId"] != SHARED
        assert _v1_track(neuron, SHARED)["dropped"] == 1


def test_token_naming_another_sites_session_is_404_and_erases_nothing(mine, theirs, django_capture_on_commit_callbacks):
    """Site B's session carries the same anonymous id, but on another site: not the token's subject."""
    client = mine.client()
    for response in run(
        django_capture_on_commit_callbacks,
        lambda: (
            client.get(f"/api/sessions/user-data/{theirs.session_id}/export"),
            client.get(f"/api/sessions/user-data/{theirs.session_id}/export?idType=sessionId"),
            client.delete(f"/api/sessions/user-data/{theirs.session_id}"),
            client.delete(f"/api/sessions/user-data/{theirs.session_id}?idType=sessionId"),
        ),
    ):
        assert_problem(response, 404)
    assert not DataSubjectRequest.objects.exists()
    assert theirs.exists() and theirs.events() == 3
    assert mine.exists()


def test_same_site_session_with_the_same_anonymous_id_is_not_the_tokens(
    neuron, mine, theirs, django_capture_on_commit_callbacks
):
    """Another session of its site with the same anonymous id may be another person who chose the
    same id: a token may not name it (404), nor reach it through its own session's export."""
    sibling = Visit(neuron, SHARED, events=1)
    client = mine.client()
    for response in run(
        django_capture_on_commit_callbacks,
        lambda: (
            client.get(f"/api/sessions/user-data/{sibling.session_id}/export"),
            client.get(f"/api/sessions/user-data/{sibling.session_id}/export?idType=sessionId"),
            client.delete(f"/api/sessions/user-data/{sibling.session_id}"),
        ),
    ):
        assert_problem(response, 404)
    assert not DataSubjectRequest.objects.exists()
    assert sibling.exists() and sibling.events() == 1

    response = run(
        django_capture_on_commit_callbacks,
        lambda: client.get(f"/api/sessions/user-data/{mine.session_id}/export"),
    )
    document = export_document(client, response)
    assert document["subject"]["sessionIds"] == [mine.session_id]
    assert sibling.session_id not in str(document) and theirs.session_id not in str(document)
    assert len(document["tables"]["sessions_app.BehaviorEvent"]["rows"]) == 2


def test_token_naming_a_user_id_is_404_and_its_export_holds_no_profile(
    neuron, site_b, django_capture_on_commit_callbacks
):
    """The same user id signed in on two sites is two profiles; a token reaches neither by the user id
    (anyone can set it on a session), and its own session's export shows no profile."""
    here = Visit(neuron, anonymous_id="dev-a", user_id="u@example.com")
    there = Visit(site_b, anonymous_id="dev-b", user_id="u@example.com")
    assert GlobalUserProfile.objects.filter(user_id_hash=identifier_hash("u@example.com")).count() == 2
    client = here.client()
    for response in run(
        django_capture_on_commit_callbacks,
        lambda: (
            client.get("/api/sessions/user-data/u@example.com/export?idType=userId"),
            client.get("/api/sessions/user-data/u@example.com/export"),
            client.delete("/api/sessions/user-data/u@example.com?idType=userId"),
        ),
    ):
        assert_problem(response, 404)
    assert not DataSubjectRequest.objects.exists()

    response = run(
        django_capture_on_commit_callbacks,
        lambda: client.get(f"/api/sessions/user-data/{here.session_id}/export"),
    )
    document = export_document(client, response)
    assert document["subject"]["sessionIds"] == [here.session_id]
    assert document["subject"]["userIds"] == [] and document["subject"]["profileIds"] == []
    assert document["tables"]["sessions_app.GlobalUserProfile"]["rows"] == []
    assert "u@example.com" not in str(document)
    assert there.session_id not in str(document) and "dev-b" not in str(document)

    response = run(
        django_capture_on_commit_callbacks,
        lambda: client.delete(f"/api/sessions/user-data/{here.session_id}"),
    )
    assert response.status_code in (200, 202), response.content
    assert not here.exists()
    assert there.exists() and there.events() == 2
    assert GlobalUserProfile.objects.filter(user_id_hash=identifier_hash("u@example.com")).count() == 2


def test_staff_keep_their_reach_over_everysite_client(staff_client, mine, theirs, django_capture_on_commit_callbacks):
    response = run(
        django_capture_on_commit_callbacks,
        lambda: staff_client.get(f"/api/sessions/user-data/{SHARED}/export?idType=anonymousId"),
    )
    document = export_document(staff_client, response)
    assert sorted(document["subject"]["sessionIds"]) == sorted([mine.session_id, theirs.session_id])
    assert DataSubjectRequest.objects.get().neuron_id is None


def test_request_status_is_for_the_token_that_asked_or_its_own_session_on_itssite_client(
    neuron, staff_client, mine, theirs, django_capture_on_commit_callbacks
):
    """Site B's token (same anonymous id) never sees site A's request, nor does site A's other session
    with the same anonymous id; a staff request over every site is not shown to any token."""
    response = run(
        django_capture_on_commit_callbacks,
        lambda: mine.client().get(f"/api/sessions/user-data/{mine.session_id}/export"),
    )
    url = response.json()["statusUrl"]
    assert mine.client().get(url).status_code == 200
    assert_problem(theirs.client().get(url), 404)
    sibling = Visit(neuron, SHARED, events=0)
    assert_problem(sibling.client().get(url), 404)

    staff = run(
        django_capture_on_commit_callbacks,
        lambda: staff_client.get(f"/api/sessions/user-data/{SHARED}/export?idType=anonymousId"),
    )
    staff_url = staff.json()["statusUrl"]
    assert staff_client.get(staff_url).status_code == 200
    for visit in (mine, theirs, sibling):
        assert_problem(visit.client().get(staff_url), 404)


def test_privacy_report_counts_only_the_tokenssite_client(mine, theirs):
    report = mine.client().get("/api/sessions/privacy-report").json()
    assert report["held"]["sessions_app.UserSession"]["rows"] == 1
    assert report["held"]["sessions_app.BehaviorEvent"]["rows"] == 2


# --- erasing twice returns the open request ----------------------------------------------------


def test_a_second_erasure_while_the_first_is_pending_returns_it(staff_client, mine, theirs):
    """No on-commit callbacks run here: the first request stays pending."""
    first = staff_client.delete(f"/api/sessions/user-data/{mine.session_id}?idType=sessionId")
    assert first.status_code == 202 and first.json()["status"] == "pending"
    second = staff_client.delete(f"/api/sessions/user-data/{mine.session_id}?idType=sessionId")
    assert second.status_code == 202
    assert second.json()["requestId"] == first.json()["requestId"]
    assert DataSubjectRequest.objects.count() == 1
    # Another subject, or an export of the same one, is a request of its own.
    assert staff_client.delete(f"/api/sessions/user-data/{theirs.session_id}").status_code == 202
    assert staff_client.get(f"/api/sessions/user-data/{mine.session_id}/export").status_code == 202
    assert DataSubjectRequest.objects.count() == 3


def test_an_export_asked_again_while_the_first_is_pending_returns_it(mine):
    """A client repeating its export request gets the one being prepared, not another document."""
    client = mine.client()
    url = f"/api/sessions/user-data/{mine.session_id}/export"
    first = client.get(url)
    assert first.status_code == 202 and first.json()["status"] == "pending"
    assert [client.get(url).json()["requestId"] for _ in range(3)] == [first.json()["requestId"]] * 3
    assert DataSubjectRequest.objects.count() == 1


def test_a_tokens_second_erasure_while_pending_returns_the_first(mine, theirs):
    client = mine.client()
    first = client.delete(f"/api/sessions/user-data/{mine.session_id}")
    second = client.delete(f"/api/sessions/user-data/{mine.session_id}?idType=sessionId")
    assert first.status_code == second.status_code == 202
    assert second.json()["requestId"] == first.json()["requestId"]
    # Site B's visitor erasing its own session is another subject (another session, another site).
    other = theirs.client().delete(f"/api/sessions/user-data/{theirs.session_id}")
    assert other.status_code == 202 and other.json()["requestId"] != first.json()["requestId"]
    assert DataSubjectRequest.objects.filter(kind="erase").count() == 2


@needs_postgres
@pytest.mark.django_db(transaction=True)
def test_concurrent_erasures_of_one_subject_make_one_request(staff_user, neuron, monkeypatch):
    """Six DELETEs at once: one request, and every caller gets it."""
    visit = Visit(neuron, SHARED)
    # The requests stay pending (the task is not queued), as they would behind a busy worker.
    monkeypatch.setattr("privacy.tasks.run_data_subject_request.delay", lambda *args, **kwargs: None)
    threads_n = 6

    def erase() -> tuple[int, dict]:
        client = APIClient()
        client.force_authenticate(staff_user)
        response = client.delete(f"/api/sessions/user-data/{visit.session_id}?idType=sessionId")
        return response.status_code, response.json()

    results = in_parallel([erase] * threads_n)
    assert [status for status, _ in results] == [202] * threads_n, results
    assert len({body["requestId"] for _, body in results}) == 1
    assert DataSubjectRequest.objects.filter(kind="erase").count() == 1
    assert visit.exists()
