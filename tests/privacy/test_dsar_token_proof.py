"""A session token proves one thing: that its holder holds that session. Not the identifiers it carries.

Any visitor can create a session with the site's public key and any `anonymousId`, or set any
`userId` on it: the session then shares the identity (profile) of whoever really uses them. A
data-subject request made with that token must reach only the token's own session (GDPR Art. 12(6):
identity is verified, and a browser-chosen identifier is no verification). Naming the user id, the
anonymous id, the profile or another session is the same 404 as an unknown subject; the own
session's export and erasure hold and delete only that session's rows, never the victim's.
Requests for the whole person are made by staff.
"""

from __future__ import annotations

import pytest

from privacy.dsar import identifier_is_erased
from privacy.models import DataSubjectRequest, ErasureTombstone
from sessions_app.models import BehaviorEvent, GlobalUserProfile
from tests.helpers import assert_problem
from tests.privacy.visits import Visit, export_document, run

pytestmark = pytest.mark.django_db


VICTIM_USER = "customer-42"


def _victim(neuron, kind: str) -> Visit:
    """The real visitor: signed in as customer-42 on their device, or never signed in; three page views."""
    if kind == "identified":
        return Visit(neuron, anonymous_id="victim-device", events=3, user_id=VICTIM_USER)
    return Visit(neuron, anonymous_id="victim-device", events=3)


def _attacker(neuron, victim: Visit, claim: str) -> Visit:
    """The attacker's own session, which claims the victim's user id or anonymous id (nothing checks either)."""
    if claim == "userId":
        return Visit(neuron, anonymous_id="attacker-device", events=1, user_id=VICTIM_USER)
    return Visit(neuron, anonymous_id=victim.anonymous_id, events=1)


CASES = [("identified", "userId"), ("identified", "anonymousId"), ("anonymous", "anonymousId")]


@pytest.fixture(params=CASES, ids=["userId", "anonymousId", "anonymousId-of-an-anonymous-visitor"])
def pair(request, neuron) -> tuple[Visit, Visit]:
    kind, claim = request.param
    victim = _victim(neuron, kind)
    attacker = _attacker(neuron, victim, claim)
    if claim == "userId":
        # The claim worked: both sessions now count as one person.
        assert attacker.row().profile_id == victim.row().profile_id is not None
    return victim, attacker


def _victim_state(victim: Visit) -> dict:
    row = victim.row()
    return {
        "session": row.pk,
        "profile": row.profile_id,
        "anonymousId": row.anonymous_id,
        "events": victim.events(),
        "profiles": sorted(GlobalUserProfile.objects.values_list("pk", "user_id_hash")),
    }


def _victim_needles(victim: Visit, attacker: Visit) -> list[str]:
    row = victim.row()
    out = [victim.session_id]
    if row.profile_id:
        out += [str(row.profile.public_id), VICTIM_USER]
    if victim.anonymous_id != attacker.anonymous_id:
        out.append(victim.anonymous_id)
    return out


def test_a_claimed_identifier_opens_no_one_elses_data(neuron, pair, django_capture_on_commit_callbacks):
    """The repro: export or erase by the claimed user id / anonymous id / the profile it joined → 404."""
    victim, attacker = pair
    before = _victim_state(victim)
    client = attacker.client()
    names = [
        f"{VICTIM_USER}?idType=userId",
        VICTIM_USER,
        f"{victim.anonymous_id}?idType=anonymousId",
        victim.anonymous_id,
        victim.session_id,
        f"{victim.session_id}?idType=sessionId",
        # Its own identifiers other than the session id prove nothing either.
        f"{attacker.anonymous_id}?idType=anonymousId",
        f"{attacker.session_id}?idType=profileId",
        f"{attacker.session_id}?idType=anonymousId",
    ]
    for row in (victim.row(), attacker.row()):
        if row.profile_id:
            names += [f"{row.profile.public_id}?idType=profileId", str(row.profile.public_id)]

    def url(name: str, export: bool) -> str:
        subject, _, query = name.partition("?")
        return f"/api/sessions/user-data/{subject}{'/export' if export else ''}{'?' + query if query else ''}"

    responses = run(
        django_capture_on_commit_callbacks,
        lambda: [
            *(client.get(url(name, export=True)) for name in names),
            *(client.delete(url(name, export=False)) for name in names),
        ],
    )
    for name, response in zip(names + names, responses, strict=True):
        assert response.status_code == 404, (name, response.content)
        assert_problem(response, 404)
    assert not DataSubjectRequest.objects.exists()
    assert not ErasureTombstone.objects.exists()
    assert _victim_state(victim) == before
    assert before["events"] == 3


def test_the_attackers_own_export_holds_only_its_own_session(pair, django_capture_on_commit_callbacks):
    """Even while the two sessions share an identity, the attacker's export is its own session's rows."""
    victim, attacker = pair
    client = attacker.client()
    response = run(
        django_capture_on_commit_callbacks,
        lambda: client.get(f"/api/sessions/user-data/{attacker.session_id}/export"),
    )
    document = export_document(client, response)
    assert document["subject"]["sessionIds"] == [attacker.session_id]
    assert document["subject"]["profileIds"] == [] and document["subject"]["userIds"] == []
    tables = document["tables"]
    own = attacker.row().pk
    (session_row,) = tables["sessions_app.UserSession"]["rows"]
    assert session_row["id"] == own
    assert session_row["profile_id"] is None  # the profile it joined is not the token's to see
    events = tables["sessions_app.BehaviorEvent"]["rows"]
    assert len(events) == 1 and {e["session_id"] for e in events} == {own}
    assert tables["sessions_app.GlobalUserProfile"]["rows"] == []
    assert tables["sessions_app.ProfileAlias"]["rows"] == []
    assert tables["analytics.Visitor"]["rows"] == []  # keyed by the anonymous id, which anyone can claim
    assert {r["session_id"] for r in tables["privacy.ConsentRecord"]["rows"]} == {own}
    text = str(document)
    for needle in _victim_needles(victim, attacker):
        assert needle not in text
    assert DataSubjectRequest.objects.get().subject_type == "sessionId"


def test_the_attackers_own_erasure_leaves_the_victim_untouched(neuron, pair, django_capture_on_commit_callbacks):
    victim, attacker = pair
    before = _victim_state(victim)
    response = run(
        django_capture_on_commit_callbacks,
        lambda: attacker.client().delete(f"/api/sessions/user-data/{attacker.session_id}"),
    )
    assert response.status_code in (200, 202), response.content
    request = DataSubjectRequest.objects.get(public_id=response.json()["requestId"])
    assert request.status == "verified", request.summary
    assert request.neuron_id == neuron.pk and request.subject_type == "sessionId"
    assert request.summary["deleted"]["sessions_app.UserSession"] == 1
    assert request.summary["deleted"].get("sessions_app.GlobalUserProfile", 0) == 0
    assert not attacker.exists()
    assert not BehaviorEvent.objects.filter(session__public_id=attacker.session_id).exists()

    assert _victim_state(victim) == before  # session, profile, anonymous id, events, every profile
    # Only the erased session id is tombstoned: the victim's identifiers keep working.
    assert list(ErasureTombstone.objects.values_list("kind", flat=True)) == ["sessionId"]
    for kind, value in (("userId", VICTIM_USER), ("anonymousId", victim.anonymous_id)):
        assert not identifier_is_erased(subject_type=kind, value=value, neuron_id=neuron.pk)
    assert identifier_is_erased(subject_type="sessionId", value=attacker.session_id, neuron_id=neuron.pk)
    assert victim.client().get(f"/api/sessions/{victim.session_id}").status_code == 200
    later = victim.client().post(
        f"/api/sessions/{victim.session_id}/events", {"eventType": "page_view", "page": {"path": "/x"}}, format="json"
    )
    assert later.status_code in (200, 201, 202), later.content
    assert victim.events() == 4


def test_the_attacker_sees_neither_the_victims_requests_nor_their_counts(
    pair, staff_client, django_capture_on_commit_callbacks
):
    """The victim's own request and a staff request about the victim are not shown to the attacker's
    token; its privacy report counts its own session only."""
    victim, attacker = pair
    own = run(
        django_capture_on_commit_callbacks,
        lambda: victim.client().get(f"/api/sessions/user-data/{victim.session_id}/export"),
    )
    staff = run(
        django_capture_on_commit_callbacks,
        lambda: staff_client.get(f"/api/sessions/user-data/{victim.anonymous_id}/export?idType=anonymousId"),
    )
    for response in (own, staff):
        assert response.status_code == 202, response.content
        assert_problem(attacker.client().get(response.json()["statusUrl"]), 404)
    assert victim.client().get(own.json()["statusUrl"]).status_code == 200

    report = attacker.client().get("/api/sessions/privacy-report").json()
    assert report["held"]["sessions_app.UserSession"]["rows"] == 1
    assert report["held"]["sessions_app.BehaviorEvent"]["rows"] == 1
    assert report["held"]["sessions_app.GlobalUserProfile"]["rows"] == 0


def test_staff_still_reach_the_whole_person(neuron, staff_client, django_capture_on_commit_callbacks):
    """The operator, who verifies who is asking, exports by user id: every session that carries it."""
    victim = _victim(neuron, "identified")
    attacker = _attacker(neuron, victim, "userId")
    response = run(
        django_capture_on_commit_callbacks,
        lambda: staff_client.get(f"/api/sessions/user-data/{VICTIM_USER}/export?idType=userId"),
    )
    document = export_document(staff_client, response)
    assert sorted(document["subject"]["sessionIds"]) == sorted([victim.session_id, attacker.session_id])
    assert document["subject"]["userIds"] == [VICTIM_USER]
    assert DataSubjectRequest.objects.get().neuron_id is None


def test_a_tokens_request_naming_anything_but_a_session_fails_when_it_runs(neuron):
    """A token-made request about an anonymous id (recorded before tokens were held to their session)
    is refused when it runs: nothing exported, erased or tombstoned."""
    from django.utils import timezone

    from privacy.crypto import encrypt
    from privacy.dsar import dsar_run
    from privacy.subjects import subject_hash

    victim = _victim(neuron, "identified")
    before = _victim_state(victim)
    requests = [
        DataSubjectRequest.objects.create(
            kind=kind,
            neuron=neuron,
            subject_type="anonymousId",
            subject_hash=subject_hash(subject_type="anonymousId", value=victim.anonymous_id),
            subject_encrypted=encrypt(victim.anonymous_id),
            requested_by="visitor:someone",
            created_at=timezone.now(),
        )
        for kind in ("export", "erase")
    ]
    for request in requests:
        done = dsar_run(request_id=request.pk)
        assert done.status == "failed" and done.error == "ValueError"
        assert not done.result_encrypted
    assert not ErasureTombstone.objects.exists()
    assert _victim_state(victim) == before
