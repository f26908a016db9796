"""Group commit for single events on PostgreSQL.

A page sends most events one at a time (a page view, a click), so the single-event
request is the common one, and its cost was four round trips and a commit of its own
(BEGIN, the locking read, the write, COMMIT) for one row. Here the requests that arrive
while another one is being written wait for it and are then written together. Each
request still answers only once its own event is committed, so "a 200 means stored" holds.

There is no flusher thread and no timer. The first request to find no write in progress
writes its own event at once (a lone request waits for nobody); those arriving meanwhile
queue, and when the write ends one of them writes the whole queue. A batch is at most as
large as the requests the server runs at once (its threads), and each request runs its
own thread's database connection, as Django expects.

A group is written by one prepared statement in autocommit (PLAIN_SQL): it locks the
group's sessions, keeps the events whose session is live with analytics consent, inserts
them (ON CONFLICT DO NOTHING tells duplicates), and updates those sessions' counters, last
activity, expiry and engagement score from what went in, all in one round trip and one
commit. That covers the sessions for which nothing else follows a stored event. Events of
sessions with personalization consent, whose interest vectors change in the same
transaction (ingestion.events_stored), are then written together in a transaction of
their own (the locking read, one INSERT, one UPDATE, the interest vectors, COMMIT).

Only the plain case takes this path: one event with a valid bearer token, for a live
session with analytics consent. Everything else (batches, beacons, the previous token
during its grace, ended sessions, no consent, bad input, a message id repeated inside
the group) falls back to the regular view, which answers exactly as before. If a group's
statement or transaction fails for any reason, nothing of it is stored and every request
in it falls back, one by one.

A group locks all its sessions' rows. While another transaction holds one of them (a
batch for that session, an ending or rotation), the whole group waits for it, and so do
the requests queued behind the group in this process: one slow session holds up the
others' single events for as long as its lock is held (such transactions are short: a
batch's is one INSERT and one UPDATE).
"""

from __future__ import annotations

import hashlib
import logging
import threading
from collections import Counter, defaultdict
from dataclasses import dataclass
from datetime import datetime
from uuid import UUID

import orjson
from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from config.api.errors import ApplicationError
from privacy.consent import has_consent
from sessions_app.engagement import engagement_score_sql
from sessions_app.event_input import CONVERSION_TYPES, PAGE_VIEW_TYPES, EventIn, events_payload_parse
from sessions_app.ingestion import (
    EVENT_COLUMNS,
    EVENTS_INSERT_SQL,
    IngestResult,
    StoredEvent,
    _corrected_times,
    _rows,
    _session_counters,
    _stored_event,
    events_json,
    events_stored,
    server_cursor,
    session_end_time,
)
from sessions_app.live import LiveRecord, live_record_many
from sessions_app.models import BehaviorEvent, UserSession

logger = logging.getLogger(__name__)

# The body of one event is far below this; anything larger goes the regular way.
SINGLE_EVENT_MAX_BYTES = 64 * 1024

COUNTER_COLUMNS = (
    "event_count",
    "page_view_count",
    "conversion_count",
    "interaction_count",
    "last_activity_at",
    "expires_at",
    "engagement_score",
)
# What the checks, the counters and the after-store hooks read of a session, in the
# model's field order (Model.from_db fills the other fields as deferred by position).
_READ = {
    "id",
    "public_id",
    "neuron_id",
    "profile_id",
    "anonymous_id",
    "token_hash",
    "consent",
    "started_at",
    "ended_at",
}
SESSION_COLUMNS = tuple(
    f.attname for f in UserSession._meta.concrete_fields if f.attname in _READ or f.attname in COUNTER_COLUMNS
)
_SESSIONS = UserSession._meta.db_table
_LOCK_SQL = f"SELECT {', '.join(SESSION_COLUMNS)} FROM {_SESSIONS} WHERE token_hash = ANY(%s) ORDER BY id FOR UPDATE"

# The counters go as one JSON document, as the events do (ingestion.EVENTS_INSERT_SQL).
_UPDATE_SQL = (
    f"UPDATE {_SESSIONS} AS s SET {', '.join(f'{name} = u.{name}' for name in COUNTER_COLUMNS)} "
    f"FROM json_populate_recordset(NULL::{_SESSIONS}, %s) AS u WHERE s.id = u.id"
)


def _sql_strings(values) -> str:
    return ", ".join(f"'{value}'" for value in sorted(values))


# The new counters of a session `u` once `n` (what went in for it) is added; the UPDATE
# refers to the row it updates, so under a concurrent update it adds to the newest version.
_NEW = {
    "event_count": "u.event_count + n.stored",
    "page_view_count": "u.page_view_count + n.page_views",
    "conversion_count": "u.conversion_count + n.conversions",
    "interaction_count": "u.interaction_count + n.stored - n.page_views - n.conversions",
    "last_activity_at": "greatest(u.last_activity_at, n.now)",
}
# One group in one statement (module docstring). Parameters: the group as a JSON array
# (k: its index in the group), its token hashes, the idle timeout and the absolute lifetime.
# Events are kept (m) for a live session with analytics consent (the regular path answers
# the others); `plain`: without personalization consent, written here; the others are
# returned for the transaction. A message id repeated inside the group is written once (nth).
PLAIN_SQL = f"""
WITH j AS (
  SELECT * FROM json_to_recordset(%s::json) AS j(
    k int, token_hash text, public_id uuid, event_type text, event_name text, properties jsonb,
    page_url text, page_path text, page_title text, referrer text, timestamp timestamptz,
    received_at timestamptz, message_id text)
),
s AS (
  SELECT id, public_id, neuron_id, profile_id, anonymous_id, token_hash, consent, expires_at, ended_at
  FROM {_SESSIONS} WHERE token_hash = ANY(%s::text[]) ORDER BY id FOR UPDATE
),
m AS (
  SELECT j.*, s.id AS session_id, s.neuron_id, s.profile_id, s.anonymous_id,
    coalesce(s.consent -> 'personalization' IN ('false'::jsonb, 'null'::jsonb), true) AS plain
  FROM j JOIN s ON s.token_hash = j.token_hash AND s.public_id = j.public_id
  WHERE s.ended_at IS NULL AND s.expires_at > j.received_at AND s.consent -> 'analytics' = 'true'::jsonb
),
acc AS (
  SELECT m.*, row_number() OVER (PARTITION BY neuron_id, message_id ORDER BY k) AS nth FROM m WHERE plain
),
ins AS (
  INSERT INTO {BehaviorEvent._meta.db_table} ({", ".join(EVENT_COLUMNS)})
  SELECT {", ".join(EVENT_COLUMNS)} FROM acc WHERE nth = 1
  ON CONFLICT (neuron_id, message_id) DO NOTHING RETURNING session_id, message_id, event_type
),
n AS (
  SELECT acc.session_id, max(acc.received_at) AS now, count(ins.message_id) AS stored,
    count(ins.message_id) FILTER (WHERE ins.event_type IN ({_sql_strings(PAGE_VIEW_TYPES)})) AS page_views,
    count(ins.message_id) FILTER (WHERE ins.event_type IN ({_sql_strings(CONVERSION_TYPES)})) AS conversions
  FROM acc LEFT JOIN ins ON ins.session_id = acc.session_id AND ins.message_id = acc.message_id
  WHERE acc.nth = 1 GROUP BY acc.session_id
),
upd AS (
  UPDATE {_SESSIONS} AS u SET {", ".join(f"{name} = {value}" for name, value in _NEW.items())},
    expires_at = least({_NEW["last_activity_at"]} + %s, u.started_at + %s),
    engagement_score = {
    engagement_score_sql(
        seconds=f"extract(epoch FROM {_NEW['last_activity_at']} - u.started_at)::float8",
        page_views=_NEW["page_view_count"],
        interactions=_NEW["interaction_count"],
        conversions=_NEW["conversion_count"],
    )
}
  FROM n WHERE u.id = n.session_id
)
SELECT m.k, m.plain, acc.nth = 1, ins.message_id IS NOT NULL, m.neuron_id
FROM m LEFT JOIN acc ON acc.k = m.k
LEFT JOIN ins ON acc.nth = 1 AND ins.session_id = acc.session_id AND ins.message_id = acc.message_id
"""


@dataclass(eq=False, slots=True)
class Pending:
    """One request's event, waiting for its group's commit."""

    token_hash: str
    session_id: UUID
    event: EventIn
    time: datetime  # corrected for the client clock
    received_at: datetime
    done: bool = False
    result: IngestResult | None = None  # None once done: the request takes the regular path
    session_pk: int = 0  # set once accepted into the group's write
    row: tuple = ()  # its events row (ingestion.EVENT_COLUMNS), once accepted
    stored: bool = False


class GroupCommit:
    """Per process: queues concurrent single events and commits them together."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._queue: list[Pending] = []
        self._writing = False
        self.groups = 0  # groups written, and events in them (for tests and the benchmark)
        self.events = 0

    def submit(self, item: Pending) -> IngestResult | None:
        """Block until `item` is committed (its result) or handed back (None)."""
        with self._cond:
            self._queue.append(item)
            while self._writing and not item.done:
                self._cond.wait()
            if item.done:
                return item.result
            # Nothing is being written and `item` is still queued: this request writes the queue.
            self._writing = True
            group, self._queue = self._queue, []
        try:
            group_write(group)
        finally:
            with self._cond:
                for pending in group:
                    pending.done = True
                self._writing = False
                self.groups += 1
                self.events += sum(1 for pending in group if pending.result is not None)
                self._cond.notify_all()
        return item.result


GROUP = GroupCommit()


def group_write(group: list[Pending]) -> None:
    """Write a group and set each member's result (None: the regular path answers it); on
    any failure nothing of the failed statement or transaction is stored and its members'
    results stay None."""
    try:
        personal = _write_plain(group)
    except Exception:
        logger.exception("group commit of %d events failed; each takes the regular path", len(group))
        for pending in group:
            pending.result = None
        return
    if not personal:
        return
    try:
        with transaction.atomic():
            _write(personal)
    except Exception:
        logger.exception("group commit of %d events failed; each takes the regular path", len(personal))
        for pending in personal:
            pending.result = None


def _write_plain(group: list[Pending]) -> list[Pending]:
    """PLAIN_SQL: one statement, its own transaction. Returns the members whose sessions
    have personalization consent, for _write."""
    document = orjson.dumps(
        [
            {
                "k": k,
                "token_hash": p.token_hash,
                "public_id": p.session_id,
                "event_type": p.event.event_type,
                "event_name": p.event.event_name,
                "properties": p.event.properties,
                "page_url": p.event.page_url,
                "page_path": p.event.page_path,
                "page_title": p.event.page_title,
                "referrer": p.event.referrer,
                "timestamp": p.time,
                "received_at": p.received_at,
                "message_id": p.event.message_id,
            }
            for k, p in enumerate(group)
        ]
    ).decode()
    params = [
        document,
        sorted({p.token_hash for p in group}),
        settings.SESSION_IDLE_TIMEOUT,
        settings.SESSION_ABSOLUTE_LIFETIME,
    ]
    with server_cursor(prepared=True) as cursor:
        cursor.execute(PLAIN_SQL, params)
        rows = cursor.fetchall()
    personal: list[Pending] = []
    stored: dict[UUID, LiveRecord] = {}
    for k, plain, first, inserted, neuron_id in rows:
        pending = group[k]
        if not plain:
            personal.append(pending)
        elif first:  # a repeat of a message id in the group stays None: the regular path answers it
            pending.result = IngestResult(stored=int(inserted), duplicates=int(not inserted), anonymous=0)
            if inserted:
                record = stored.setdefault(
                    pending.session_id,
                    LiveRecord(neuron_id=neuron_id, event_types=Counter(), session_key=str(pending.session_id)),
                )
                record.event_types[pending.event.event_type] += 1
    if stored:
        records = list(stored.values())
        transaction.on_commit(lambda: live_record_many(records))  # at once in autocommit
    return personal


def _write(group: list[Pending]) -> None:
    sessions = _sessions_lock(sorted({pending.token_hash for pending in group}))
    accepted: dict[int, list[Pending]] = defaultdict(list)
    message_ids: set[tuple[int, str]] = set()
    by_id: dict[int, UserSession] = {}
    for pending in group:
        session = sessions.get(pending.token_hash)
        if (
            session is None
            or session.public_id != pending.session_id
            or session_end_time(session, now=pending.received_at) is not None
            or not has_consent(session.consent, "analytics")
            or (session.neuron_id, pending.event.message_id) in message_ids
        ):
            continue  # the regular path answers it (and, for a repeated message id, after this commit)
        message_ids.add((session.neuron_id, pending.event.message_id))
        pending.session_pk = session.pk
        accepted[session.pk].append(pending)
        by_id[session.pk] = session
    if not accepted:
        return

    members = [pending for pendings in accepted.values() for pending in pendings]
    for p in members:
        (p.row,) = _rows(session=by_id[p.session_pk], events=[p.event], times=[p.time], received_at=p.received_at)
    inserted = _insert([pending.row for pending in members])
    stored: dict[int, list[StoredEvent]] = defaultdict(list)
    for pending in members:
        pending.stored = (pending.session_pk, pending.event.message_id) in inserted
        if pending.stored:
            stored[pending.session_pk].append(_stored_event(pending.row))

    updates: list[tuple[int, dict[str, object]]] = []
    for session_id, pendings in accepted.items():
        session = by_id[session_id]
        now = max(pending.received_at for pending in pendings)
        values = _session_counters(session=session, stored=stored.get(session_id, []), alive=True, now=now)
        assert values is not None  # alive sessions always move their last activity
        for name, value in values.items():
            setattr(session, name, value)
        updates.append((session_id, values))
    _update(updates)
    # A session whose events were all duplicates has no entry: nothing follows for it.
    records = [events_stored(session=by_id[pk], events=events, publish=False) for pk, events in stored.items()]
    if records:
        transaction.on_commit(lambda: live_record_many(records))
    for pending in members:
        pending.result = IngestResult(stored=int(pending.stored), duplicates=int(not pending.stored), anonymous=0)


def _sessions_lock(token_hashes: list[str]) -> dict[str, UserSession]:
    with connection.cursor() as cursor:
        cursor.execute(_LOCK_SQL, [token_hashes])
        rows = cursor.fetchall()
    consent = SESSION_COLUMNS.index("consent")
    sessions = {}
    for row in rows:
        values = list(row)
        if isinstance(values[consent], str):  # Django reads jsonb as text
            values[consent] = orjson.loads(values[consent])
        session = UserSession.from_db(connection.alias, SESSION_COLUMNS, values)
        sessions[session.token_hash] = session
    return sessions


def _insert(rows: list[tuple]) -> set[tuple[int, str]]:
    with server_cursor() as cursor:
        cursor.execute(EVENTS_INSERT_SQL, [events_json(rows)])
        return set(cursor.fetchall())


def _update(updates: list[tuple[int, dict[str, object]]]) -> None:
    rows = [{"id": session_id, **values} for session_id, values in updates]
    with server_cursor() as cursor:
        cursor.execute(_UPDATE_SQL, [orjson.dumps(rows).decode()])


def single_event_try(request, *, session_id: UUID) -> IngestResult | None:
    """Ingest a plain single-event request by group commit; None: take the regular path."""
    if not settings.EVENTS_GROUP_COMMIT or connection.vendor != "postgresql":
        return None
    if connection.settings_dict.get("ATOMIC_REQUESTS"):
        return None  # the view's transaction would hold the others' events until it ends
    if request.method != "POST" or request.content_type != "application/json":
        return None
    accept = request.headers.get("Accept", "*/*")
    if "*/*" not in accept and "application/json" not in accept:
        return None
    parts = request.headers.get("Authorization", "").split()
    if len(parts) != 2 or parts[0].lower() != "bearer" or not parts[1].isascii() or len(parts[1]) > 256:
        return None
    try:
        if not 0 < int(request.META.get("CONTENT_LENGTH") or 0) <= SINGLE_EVENT_MAX_BYTES:
            return None
        payload = orjson.loads(request.body)
    except (ValueError, orjson.JSONDecodeError):
        return None
    if not isinstance(payload, dict) or "events" in payload:
        return None
    received_at = timezone.now()
    try:
        events, sent_at = events_payload_parse(payload)
        (time,) = _corrected_times(events, sent_at=sent_at, received_at=received_at, prefix="")
    except ApplicationError:
        return None
    pending = Pending(
        token_hash=hashlib.sha256(parts[1].encode()).hexdigest(),
        session_id=session_id,
        event=events[0],
        time=time,
        received_at=received_at,
    )
    return GROUP.submit(pending)
