"""PUT /api/sessions/{id}: concurrent updates of one session serialise on its row lock.

Setting `userId` rotates the token. The rule for a request that holds the token a
concurrent (or earlier) identify just rotated out, still inside its grace period: it is
applied (the session is locked, so updates run one after another) but rotates nothing: the
client already has the newer token in flight, and a rotated-out token must never mint a new
one (it would outlive its grace period). A token that is neither the current one nor the
previous one inside its grace once the session's lock is held is a 401, exactly as if the
request had arrived after the update that retired it.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
import time_machine
from django.utils import timezone

from config.api.errors import Unauthorized
from sessions_app.models import GlobalUserProfile, UserSession
from sessions_app.services import session_update, token_hash
from tests.helpers import assert_problem, bearer, in_parallel, needs_postgres

PARALLEL = 8


def _put_in_parallel(url: str, token: str, payloads: list[dict]) -> list:
    return in_parallel([lambda payload=payload: bearer(token).put(url, payload, format="json") for payload in payloads])


@needs_postgres
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("attempt", range(3))
def test_concurrent_user_id_updates_of_one_session_all_succeed(live_session, attempt):
    """Eight PUTs of different userIds with the same token at once: all 200, never a 500.

    Before the row lock was taken without joining the profile, a request that waited for the
    lock read the session row as the winner left it (a new profile id) joined to the profile
    row of its own snapshot: no profile, and identify failed on None."""
    client, body = live_session
    url = f"/api/sessions/{body['sessionId']}"
    responses = _put_in_parallel(url, body["token"], [{"userId": f"u-{attempt}-{i}"} for i in range(PARALLEL)])

    statuses = sorted(r.status_code for r in responses)
    assert statuses == [200] * PARALLEL, [(r.status_code, r.content[:300]) for r in responses]
    # The token was current for the first one only: it alone rotates; the others ran on the
    # rotated-out token inside its grace period and issued none.
    tokens = [r.json()["token"] for r in responses if "token" in r.json()]
    assert len(tokens) == 1
    session = UserSession.objects.select_related("profile").get(public_id=body["sessionId"])
    assert session.token_hash == token_hash(tokens[0])
    assert session.previous_token_hash == token_hash(body["token"])
    # Each update was applied in turn: the session belongs to one of the eight users, each got a profile.
    assert GlobalUserProfile.objects.filter(user_id_hash__isnull=False).count() == PARALLEL
    assert session.profile is not None and session.profile.user_id_hash is not None
    # Both tokens open the session; the old one only until its grace period ends.
    assert bearer(tokens[0]).get(url).status_code == 200
    assert client.get(url).status_code == 200
    with time_machine.travel(timezone.now() + timedelta(seconds=61)):
        assert_problem(client.get(url), 401)
        assert bearer(tokens[0]).get(url).status_code == 200


@needs_postgres
@pytest.mark.django_db(transaction=True)
def test_concurrent_trait_updates_of_one_session_are_all_kept(live_session):
    """Concurrent PUTs of traits serialise: each merge sees the previous one, nothing is lost."""
    _, body = live_session
    url = f"/api/sessions/{body['sessionId']}"
    responses = _put_in_parallel(
        url, body["token"], [{"userId": "u-1", "traits": {f"t{i}": i}} for i in range(PARALLEL)]
    )
    assert sorted(r.status_code for r in responses) == [200] * PARALLEL
    session = UserSession.objects.select_related("profile").get(public_id=body["sessionId"])
    assert session.profile.traits == {f"t{i}": i for i in range(PARALLEL)}
    assert GlobalUserProfile.objects.count() == 1


# --- the same rules, one request after another ------------------------------------------------


@pytest.mark.django_db
def test_put_with_the_rotated_out_token_in_grace_applies_and_rotates_nothing(live_session):
    """A second identify on the token the first one rotated out (a tab that had not seen the new
    token yet) is applied, issues no token and leaves both tokens as they were."""
    client, body = live_session
    url = f"/api/sessions/{body['sessionId']}"
    first = client.put(url, {"userId": "u-1"}, format="json")
    assert first.status_code == 200
    new_token = first.json()["token"]

    second = client.put(url, {"userId": "u-2"}, format="json")
    assert second.status_code == 200, second.content
    assert "token" not in second.json()
    session = UserSession.objects.get(public_id=body["sessionId"])
    assert session.token_hash == token_hash(new_token)
    assert session.previous_token_hash == token_hash(body["token"])
    # The new token keeps working; the old one still only for its grace period.
    assert bearer(new_token).get(url).status_code == 200
    with time_machine.travel(timezone.now() + timedelta(seconds=61)):
        assert_problem(client.put(url, {"userId": "u-3"}, format="json"), 401)
        assert bearer(new_token).get(url).status_code == 200


@pytest.mark.django_db
def test_update_whose_token_was_retired_while_it_waited_is_401(live_session):
    """The token matched when the request read the session, but two rotations happened before it
    held the lock: the token opens nothing any more, so the update is refused (401), unapplied."""
    _, body = live_session
    url = f"/api/sessions/{body['sessionId']}"
    stale = UserSession.objects.get(public_id=body["sessionId"])  # as authentication read it
    first = bearer(body["token"]).put(url, {"userId": "u-1"}, format="json").json()["token"]
    assert bearer(first).put(url, {"userId": "u-2"}, format="json").status_code == 200

    with pytest.raises(Unauthorized):
        session_update(session=stale, via_previous_token=False, user_id="u-3")
    assert GlobalUserProfile.objects.filter(user_id_hash__isnull=False).count() == 2


@pytest.mark.django_db
def test_update_of_a_session_that_ended_while_it_waited_is_401(live_session):
    _, body = live_session
    stale = UserSession.objects.get(public_id=body["sessionId"])
    UserSession.objects.filter(pk=stale.pk).update(ended_at=timezone.now(), expires_at=timezone.now())
    with pytest.raises(Unauthorized):
        session_update(session=stale, via_previous_token=False, metadata={"a": 1})
    assert UserSession.objects.get(pk=stale.pk).metadata == {}
