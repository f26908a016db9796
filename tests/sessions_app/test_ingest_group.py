"""Group commit of single events (sessions_app.ingest_group): PostgreSQL only.

The regular path's behaviour is covered by test_events_apis, whose single-event tests
take the group path on PostgreSQL; here: that the group path is taken, that it stores
what the regular path would, that concurrent requests are written together with each
answered after its own commit, and that everything it does not take falls back. Most
tests run for both ways a group is written: sessions without personalization consent
("plain": the one statement) and with it ("personal": the statement hands them to a
transaction that also updates interest vectors).
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
import uuid
from datetime import timedelta

import psycopg
import pytest
from django.conf import settings as django_settings
from django.db import connection
from django.utils import timezone

from sessions_app import ingest_group
from sessions_app.engagement import engagement_score
from sessions_app.event_input import EventIn
from sessions_app.ingest_group import GROUP
from sessions_app.ingestion import IngestResult
from sessions_app.live import live_reset_backoff, live_snapshot
from sessions_app.models import AnonymousTrafficCount, BehaviorEvent, UserSession
from sessions_app.services import session_end
from tests.federation.factories import NeuronFactory
from tests.helpers import assert_problem, bearer
from tests.sessions_app.factories import GlobalUserProfileFactory, UserSessionFactory

pytestmark = [
    pytest.mark.django_db,
    pytest.mark.skipif(connection.vendor != "postgresql", reason="group commit runs on PostgreSQL only"),
]

CONSENTS = {
    "plain": {"analytics": True, "personalization": False},
    "personal": {"analytics": True, "personalization": True},
}


@pytest.fixture(params=sorted(CONSENTS))
def consent(request) -> dict:
    return CONSENTS[request.param]


def make_session(**kwargs):
    token = uuid.uuid4().hex + uuid.uuid4().hex
    return UserSessionFactory(factory_token=token, **kwargs), token


def digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def post(token: str, session: UserSession, body: dict):
    return bearer(token).post(f"/api/sessions/{session.public_id}/events", body, format="json")


def grouped(before: tuple[int, int]) -> tuple[int, int]:
    return GROUP.groups - before[0], GROUP.events - before[1]


def counts() -> tuple[int, int]:
    return GROUP.groups, GROUP.events


EVENT = {
    "eventType": "page_view",
    "eventName": "Pricing",
    "eventData": {"plan": "pro", "price": 12.5, "tags": ["a"]},
    "page": {"url": "https://shop.example.com/pricing?x=1", "title": "Pricing", "referrer": "https://g.co/"},
    "timestamp": "2026-11-29T12:00:00.000Z",
}


def test_a_single_event_is_committed_by_the_group_path_as_the_regular_path_would(settings, consent):
    """Same row, same counters, engagement and expiry, same answer; only the path differs."""
    started = timezone.now() - timedelta(minutes=3)
    profile = GlobalUserProfileFactory()
    grouped_session, grouped_token = make_session(
        neuron=profile.neuron, profile=profile, started_at=started, consent=consent
    )
    regular_session, regular_token = make_session(
        neuron=profile.neuron, profile=profile, started_at=started, consent=consent
    )

    before = counts()
    sent = {**EVENT, "sentAt": "2026-11-29T12:00:05.000Z"}
    response = post(grouped_token, grouped_session, {**sent, "messageId": "g-1"})
    assert response.status_code == 200, response.content
    assert response.json() == {"stored": 1, "duplicates": 0, "anonymous": 0}
    assert response["Content-Type"] == "application/json"
    assert grouped(before) == (1, 1)

    settings.EVENTS_GROUP_COMMIT = False
    before = counts()
    response = post(regular_token, regular_session, {**sent, "messageId": "r-1"})
    assert response.json() == {"stored": 1, "duplicates": 0, "anonymous": 0}
    assert grouped(before) == (0, 0)

    fields = ["event_type", "event_name", "properties", "page_url", "page_path", "page_title", "referrer", "profile"]
    g = BehaviorEvent.objects.get(session=grouped_session)
    r = BehaviorEvent.objects.get(session=regular_session)
    assert [getattr(g, name) for name in fields] == [getattr(r, name) for name in fields]
    assert (g.neuron_id, g.anonymous_id) == (grouped_session.neuron_id, grouped_session.anonymous_id)
    # Clock skew corrected the same way: five seconds before receipt.
    assert abs((g.received_at - g.timestamp) - timedelta(seconds=5)) < timedelta(milliseconds=1)
    assert abs((r.received_at - r.timestamp) - timedelta(seconds=5)) < timedelta(milliseconds=1)

    grouped_session.refresh_from_db()
    regular_session.refresh_from_db()
    counters = ["event_count", "page_view_count", "interaction_count", "conversion_count"]
    assert [getattr(grouped_session, name) for name in counters] == [1, 1, 0, 0]
    assert [getattr(regular_session, name) for name in counters] == [1, 1, 0, 0]
    assert grouped_session.last_activity_at == g.received_at
    assert grouped_session.expires_at == grouped_session.last_activity_at + django_settings.SESSION_IDLE_TIMEOUT
    assert grouped_session.engagement_score == pytest.approx(regular_session.engagement_score, abs=0.05)
    assert grouped_session.engagement_score == engagement_score(
        duration=grouped_session.last_activity_at - started, page_views=1, interactions=0, conversions=0
    )
    assert grouped_session.engagement_score > 0


def test_a_resent_event_is_a_duplicate_and_still_counts_as_activity(
    consent, caplog, django_capture_on_commit_callbacks
):
    session, token = make_session(last_activity_at=timezone.now() - timedelta(minutes=5), consent=consent)
    assert post(token, session, {**EVENT, "messageId": "m-1"}).json()["stored"] == 1
    session.refresh_from_db()
    first_activity = session.last_activity_at
    before = counts()
    with caplog.at_level(logging.WARNING), django_capture_on_commit_callbacks(execute=True):
        response = post(token, session, {**EVENT, "messageId": "m-1"})
    assert response.json() == {"stored": 0, "duplicates": 1, "anonymous": 0}
    assert not caplog.records  # nothing to publish for a duplicate, and no error logged for it
    assert grouped(before) == (1, 1)
    session.refresh_from_db()
    assert BehaviorEvent.objects.filter(session=session).count() == 1
    assert session.event_count == 1
    assert session.last_activity_at > first_activity
    assert session.expires_at == session.last_activity_at + django_settings.SESSION_IDLE_TIMEOUT


def test_personalization_hooks_run_for_grouped_events():
    """events_stored runs in the group's transaction: the interest vector follows; without
    personalization consent the statement stores the event and no vector is built."""
    from personalization.models import SessionInterest

    shoes = {"eventType": "page_view", "page": {"url": "https://shop.example.com/shoes/trail-42"}}
    personal, personal_token = make_session(consent=CONSENTS["personal"])
    plain, plain_token = make_session(consent=CONSENTS["plain"])
    before = counts()
    assert post(personal_token, personal, {**shoes, "messageId": "p-1"}).status_code == 200
    assert post(plain_token, plain, {**shoes, "messageId": "p-2"}).status_code == 200
    assert grouped(before) == (2, 2)
    assert SessionInterest.objects.filter(session=personal, event_count=1).exists()
    assert not SessionInterest.objects.filter(session=plain).exists()
    assert BehaviorEvent.objects.filter(session__in=[personal, plain]).count() == 2


@pytest.mark.parametrize(
    "case",
    ["batch", "no analytics consent", "ended within grace", "another session's token", "previous token", "bad input"],
)
def test_what_the_group_path_does_not_take_is_answered_by_the_regular_path(case, consent):
    session, token = make_session(consent=consent)
    url_session = session
    body = {**EVENT, "messageId": f"f-{case}"}
    expected = {"stored": 1, "duplicates": 0, "anonymous": 0}
    if case == "batch":
        body = {"events": [body]}
    elif case == "no analytics consent":
        session.consent = {**consent, "analytics": False}
        session.save(update_fields=["consent"])
        expected = {"stored": 0, "duplicates": 0, "anonymous": 1}
    elif case == "ended within grace":
        session_end(session=session)
    elif case == "another session's token":
        url_session, _ = make_session(neuron=session.neuron)
    elif case == "previous token":  # rotated a moment ago: the old token is still good for a while
        session.previous_token_hash = digest(token)
        session.previous_token_valid_until = timezone.now() + timedelta(minutes=1)
        session.token_hash = digest(uuid.uuid4().hex * 2)
        session.save(update_fields=["previous_token_hash", "previous_token_valid_until", "token_hash"])
    elif case == "bad input":
        body = {**body, "eventData": "not an object"}

    before = counts()
    response = post(token, url_session, body)
    assert grouped(before)[1] == 0
    if case == "another session's token":
        assert_problem(response, 404)
        assert not BehaviorEvent.objects.exists()
    elif case == "bad input":
        assert_problem(response, 400)
        assert not BehaviorEvent.objects.exists()
    else:
        assert response.status_code == 200, response.content
        assert response.json() == expected
        stored = BehaviorEvent.objects.filter(session=session).count()
        assert stored == expected["stored"]
        if case == "no analytics consent":
            assert AnonymousTrafficCount.objects.get().events == 1


@pytest.mark.parametrize("failing", ["statement", "transaction"])
def test_a_failed_group_stores_nothing_and_its_requests_take_the_regular_path(monkeypatch, failing):
    session, token = make_session(consent=CONSENTS["plain" if failing == "statement" else "personal"])

    def broken(*args, **kwargs):
        raise psycopg.errors.QueryCanceled("canceling statement due to statement timeout")

    if failing == "statement":
        monkeypatch.setattr(ingest_group, "server_cursor", broken)
    else:
        monkeypatch.setattr(ingest_group, "_update", broken)
    before = counts()
    response = post(token, session, {**EVENT, "messageId": "x-1"})
    assert response.status_code == 200, response.content
    assert response.json() == {"stored": 1, "duplicates": 0, "anonymous": 0}
    assert grouped(before) == (1, 0)  # the group ran and handed its request back
    assert BehaviorEvent.objects.filter(session=session).count() == 1
    session.refresh_from_db()
    assert session.event_count == 1


def _pending(session: UserSession, token: str, message_id: str, event_type: str = "click") -> ingest_group.Pending:
    now = timezone.now()
    return ingest_group.Pending(
        token_hash=digest(token),
        session_id=session.public_id,
        event=EventIn(event_type=event_type, message_id=message_id),
        time=now,
        received_at=now,
    )


@pytest.mark.parametrize(
    ("write", "queries"),
    [
        # Without personalization consent: one statement for any number of events and sessions.
        ("group_write", 1),
        # The transaction: the locking read, the INSERT and the UPDATE (with personalization
        # consent the interest vectors add theirs per session).
        ("_write", 3),
    ],
)
def test_a_group_costs_the_same_queries_whatever_its_size(django_assert_num_queries, write, queries):
    sessions = [make_session(consent=CONSENTS["plain"]) for _ in range(3)]
    group = [_pending(session, token, f"q-{i}") for i, (session, token) in enumerate(sessions * 3)]
    with django_assert_num_queries(queries):
        getattr(ingest_group, write)(group)
    assert all(p.result is not None and p.result.stored == 1 for p in group)
    assert BehaviorEvent.objects.count() == 9
    assert sorted(UserSession.objects.values_list("event_count", flat=True)) == [3, 3, 3]


def test_a_mixed_group_stores_what_it_takes_and_hands_back_the_rest():
    """Plain and personal sessions, a duplicate, a repeated message id, an ended session,
    no analytics consent, a token for another session: each member's answer is what the
    regular path would give, or None for the regular path to give it."""
    neuron = NeuronFactory()
    plain, plain_token = make_session(neuron=neuron, consent=CONSENTS["plain"])
    personal, personal_token = make_session(neuron=neuron, consent=CONSENTS["personal"])
    unasked, unasked_token = make_session(neuron=neuron, consent={"analytics": True})  # personalization never asked
    ended, ended_token = make_session(neuron=neuron, consent=CONSENTS["plain"])
    session_end(session=ended)
    anonymous, anonymous_token = make_session(neuron=neuron, consent={"analytics": False})
    other, _ = make_session(neuron=neuron, consent=CONSENTS["plain"])
    BehaviorEvent.objects.create(
        neuron=neuron,
        session=plain,
        anonymous_id=plain.anonymous_id,
        event_type="click",
        message_id="known",
        timestamp=timezone.now(),
        received_at=timezone.now(),
    )
    group = {
        "plain view": _pending(plain, plain_token, "v-1", "page_view"),
        "plain conversion": _pending(plain, plain_token, "c-1", "conversion"),
        "plain duplicate": _pending(plain, plain_token, "known"),
        "repeat, first": _pending(plain, plain_token, "same"),
        "repeat, second": _pending(personal, personal_token, "same"),
        "repeat inside plain": _pending(plain, plain_token, "twice"),
        "repeat inside plain, second": _pending(plain, plain_token, "twice"),
        "personal": _pending(personal, personal_token, "p-1", "page_view"),
        "unasked": _pending(unasked, unasked_token, "u-1"),
        "ended": _pending(ended, ended_token, "e-1"),
        "no consent": _pending(anonymous, anonymous_token, "a-1"),
        "wrong session": _pending(other, plain_token, "w-1"),
    }
    ingest_group.group_write(list(group.values()))
    results = {name: p.result for name, p in group.items()}
    stored = IngestResult(stored=1, duplicates=0, anonymous=0)
    duplicate = IngestResult(stored=0, duplicates=1, anonymous=0)
    assert results == {
        "plain view": stored,
        "plain conversion": stored,
        "plain duplicate": duplicate,
        "repeat, first": stored,
        "repeat, second": duplicate,  # the personal transaction follows the statement's commit
        "repeat inside plain": stored,
        "repeat inside plain, second": None,
        "personal": stored,
        "unasked": stored,
        "ended": None,
        "no consent": None,
        "wrong session": None,
    }
    plain.refresh_from_db()
    personal.refresh_from_db()
    assert (plain.event_count, plain.page_view_count, plain.conversion_count, plain.interaction_count) == (4, 1, 1, 2)
    assert (personal.event_count, personal.page_view_count) == (1, 1)
    assert UserSession.objects.get(pk=unasked.pk).event_count == 1
    assert plain.last_activity_at == group["repeat inside plain"].received_at  # the last one it took
    assert plain.engagement_score == engagement_score(
        duration=plain.last_activity_at - plain.started_at, page_views=1, interactions=2, conversions=1
    )
    assert BehaviorEvent.objects.filter(session=plain).count() == 5  # "known" and four stored
    assert not BehaviorEvent.objects.filter(session__in=[ended, anonymous, other]).exists()


@pytest.mark.django_db(transaction=True)
def test_requests_arriving_during_a_write_are_committed_together_each_after_its_commit(consent):
    """One request writes while others queue; the queue is then written as one group.

    Holding one session's row lock from another connection stalls the first write, so the
    other requests are sure to queue behind it. The group mixes sessions, a second event
    for one session, a message id already stored (a duplicate) and a message id repeated
    inside the group (left to the regular path, after the group's commit).
    """
    live_reset_backoff()
    neuron = NeuronFactory()
    sessions = [make_session(neuron=neuron, consent=consent) for _ in range(4)]
    (blocked, blocked_token), (a, a_token), (b, b_token), (c, c_token) = sessions
    assert post(c_token, c, {**EVENT, "messageId": "known"}).json()["stored"] == 1

    results: dict[str, object] = {}

    def send(name, token, session, message_id):
        try:
            response = post(token, session, {**EVENT, "eventType": "click", "messageId": message_id})
            results[name] = (response.status_code, response.json())
        finally:
            connection.close()

    holder = _connect()
    before = counts()
    try:
        holder.execute("SELECT id FROM user_sessions WHERE id = %s FOR UPDATE", [blocked.pk])
        first = threading.Thread(target=send, args=("first", blocked_token, blocked, "blocked-1"))
        first.start()
        _wait_for(lambda: GROUP._writing)
        queued = [
            ("a1", a_token, a, "a-1"),
            ("a2", a_token, a, "a-2"),
            ("b1", b_token, b, "b-1"),
            ("dup", c_token, c, "known"),
            ("rep1", b_token, b, "same"),
            ("rep2", a_token, a, "same"),
        ]
        threads = [threading.Thread(target=send, args=args) for args in queued]
        for thread in threads:
            thread.start()
        _wait_for(lambda: len(GROUP._queue) == len(queued))
        assert "first" not in results and not any(name in results for name, *_ in queued)
    finally:
        holder.rollback()
        holder.close()
    first.join(10)
    for thread in threads:
        thread.join(10)

    groups, events = grouped(before)
    assert groups == 2  # the stalled write, then every queued request in one group
    assert events == 1 + len(queued) - 1  # all but the repeated message id's second request
    assert results["first"] == results["a1"] == results["a2"] == results["b1"] == (200, _stored(1))
    assert results["dup"] == (200, {"stored": 0, "duplicates": 1, "anonymous": 0})
    assert sorted([results["rep1"], results["rep2"]], key=str) == sorted(
        [(200, _stored(1)), (200, {"stored": 0, "duplicates": 1, "anonymous": 0})], key=str
    )
    stored = dict(UserSession.objects.filter(pk__in=[s.pk for s, _ in sessions]).values_list("pk", "event_count"))
    rows = {s.pk: BehaviorEvent.objects.filter(session=s).count() for s, _ in sessions}
    assert stored == rows
    assert rows[blocked.pk] == 1 and rows[c.pk] == 1
    assert rows[a.pk] + rows[b.pk] == 4  # a-1, a-2, b-1 and "same" once
    assert BehaviorEvent.objects.filter(neuron=neuron, message_id="same").count() == 1
    # Each group published its sessions' live counters once, after its commit.
    assert live_snapshot(neuron_id=neuron.pk)["events"] == sum(rows.values())


@pytest.mark.django_db(transaction=True)
def test_the_statement_adds_to_what_another_transaction_committed_while_it_waited():
    """The statement waits for a session's row lock; the UPDATE then adds its event to the
    counters of the row as that transaction left it, not as the statement first saw it."""
    live_reset_backoff()
    session, token = make_session(consent=CONSENTS["plain"])
    holder = _connect()
    results = {}

    def send():
        try:
            results["response"] = post(token, session, {**EVENT, "messageId": "late-1"}).json()
        finally:
            connection.close()

    try:
        holder.execute(
            "UPDATE user_sessions SET event_count = event_count + 5, page_view_count = page_view_count + 5 "
            "WHERE id = %s",
            [session.pk],
        )
        thread = threading.Thread(target=send)
        thread.start()
        _wait_for(lambda: _waiting_on_a_lock(holder) == 1)
        holder.commit()
    finally:
        holder.rollback()
        holder.close()
    thread.join(10)
    assert results["response"] == _stored(1)
    session.refresh_from_db()
    assert (session.event_count, session.page_view_count) == (6, 6)
    assert session.engagement_score == engagement_score(
        duration=session.last_activity_at - session.started_at, page_views=6, interactions=0, conversions=0
    )


def _connect() -> psycopg.Connection:
    dsn = connection.settings_dict
    return psycopg.connect(
        host=dsn["HOST"] or None, port=dsn["PORT"] or None, dbname=dsn["NAME"], user=dsn["USER"], autocommit=False
    )


def _waiting_on_a_lock(holder: psycopg.Connection) -> int:
    with psycopg.connect(
        host=holder.info.host, port=holder.info.port, dbname=holder.info.dbname, user=holder.info.user, autocommit=True
    ) as probe:
        return probe.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query LIKE %s",
            ["%json_to_recordset%"],
        ).fetchone()[0]


def _stored(n: int) -> dict:
    return {"stored": n, "duplicates": 0, "anonymous": 0}


def _wait_for(condition, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)
