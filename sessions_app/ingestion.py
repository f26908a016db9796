"""Event ingestion: the hot path of the product.

Correct first: a batch is stored in one transaction together with the session's
counters and engagement score, exactly once per message id (the unique
(neuron, message_id) constraint decides, so a retried or concurrently repeated
batch is stored once), and only with analytics consent; without it the events
only increment anonymous aggregates. Then fast: a constant number of queries per
batch whatever its size (lock the session, one multi-row INSERT, one UPDATE; on
PostgreSQL the INSERT and the UPDATE are one statement, and the events view takes the
lock while authenticating).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from datetime import datetime

import orjson
import psycopg
from django.conf import settings
from django.db import connection, transaction

from config.api.errors import Conflict, ValidationFailed
from personalization.services import interest_update_from_events
from privacy.consent import has_consent
from sessions_app.engagement import engagement_score
from sessions_app.event_input import CONVERSION_TYPES, PAGE_VIEW_TYPES, EventIn
from sessions_app.live import LiveRecord, anonymous_first_seen, live_record_events, live_record_many
from sessions_app.models import AnonymousTrafficCount, BehaviorEvent, UserSession
from sessions_app.services import session_expiry

# Columns written per event, in the order of the INSERT below.
EVENT_COLUMNS = (
    "neuron_id",
    "session_id",
    "profile_id",
    "anonymous_id",
    "event_type",
    "event_name",
    "properties",
    "page_url",
    "page_path",
    "page_title",
    "referrer",
    "timestamp",
    "received_at",
    "message_id",
)
# Rows per INSERT on SQLite: 14 parameters each stays under its 32,766 bound parameters
# per statement (the default since 3.32).
INSERT_CHUNK = 2000


@dataclass(frozen=True)
class IngestResult:
    stored: int
    duplicates: int
    anonymous: int  # counted in the anonymous aggregates only (no analytics consent)


@dataclass(frozen=True, slots=True)
class StoredEvent:
    """An event row as written; what the after-store step (and its hooks) receive."""

    event_type: str
    event_name: str
    properties: dict
    page_path: str
    timestamp: datetime
    message_id: str


def event_time(*, event: EventIn, sent_at: datetime | None, received_at: datetime) -> datetime:
    """The event time corrected for client clock skew, as Segment does:
    timestamp = receivedAt − (sentAt − timestamp). Without sentAt the client time is
    taken as sent; without a timestamp the event happened when it was received."""
    if event.timestamp is None:
        return received_at
    if sent_at is None:
        return event.timestamp
    return received_at - (sent_at - event.timestamp)


def session_end_time(session: UserSession, *, now: datetime) -> datetime | None:
    """When the session stopped being alive, or None while it is alive."""
    if session.ended_at is not None:
        return session.ended_at
    if session.expires_at <= now:
        return session.expires_at
    return None


_LOCK_SQL = f"SELECT * FROM {UserSession._meta.db_table} WHERE id = %s"


def _session_lock(session: UserSession) -> UserSession:
    # The row lock serialises batches of one session, so its counters add up and a
    # duplicate batch waits for the first one's commit, then finds its message ids taken.
    # Raw SQL (sessions_app.selectors.session_get_by_token): the ORM compiled this
    # 38-column read in more CPU than the database takes to run it, on every /v1 call.
    sql = _LOCK_SQL + (" FOR UPDATE" if connection.features.has_select_for_update else "")
    for locked in UserSession.objects.raw(sql, [session.pk]):
        return locked
    raise UserSession.DoesNotExist(f"session {session.pk} is gone")


def _corrected_times(
    events: list[EventIn], *, sent_at: datetime | None, received_at: datetime, prefix: str
) -> list[datetime]:
    times: list[datetime] = []
    errors: dict[str, list[str]] = {}
    for index, event in enumerate(events):
        try:
            times.append(event_time(event=event, sent_at=sent_at, received_at=received_at))
        except OverflowError:
            errors[f"{prefix}[{index}].timestamp" if prefix else "timestamp"] = [
                "The timestamp is out of range once corrected for the client clock."
            ]
    if errors:
        raise ValidationFailed(errors=errors)
    return times


# savepoint=False: inside a caller's transaction (the events view, /v1) a savepoint would
# cost two more round trips per batch, and an error here fails the whole request anyway.
@transaction.atomic(savepoint=False)
def events_ingest(
    *,
    session: UserSession,
    events: list[EventIn],
    sent_at: datetime | None,
    received_at: datetime,
    error_prefix: str = "events",
    locked: bool = False,
) -> IngestResult:
    """Store a validated batch for one session, all or nothing.

    A session that ended within EVENTS_GRACE_PERIOD still takes events (the unload
    beacon arrives after the end); later ones raise Conflict so the client restores
    the session and resends. `locked=True`: the caller read `session` with its row lock
    in the current transaction (sessions_app.selectors.session_get_by_token(lock=True)).
    """
    if not events:
        return IngestResult(stored=0, duplicates=0, anonymous=0)
    times = _corrected_times(
        events, sent_at=sent_at, received_at=received_at, prefix=error_prefix if len(events) > 1 else ""
    )
    locked = session if locked else _session_lock(session)
    ended = session_end_time(locked, now=received_at)
    if ended is not None and received_at - ended > settings.EVENTS_GRACE_PERIOD:
        raise Conflict(
            "The session has ended; restore it (or create a new one) and resend the events.",
            extra={"sessionEndedAt": ended.isoformat()},
        )

    if not has_consent(locked.consent, "analytics"):
        return events_count_anonymously(
            neuron_id=locked.neuron_id,
            device_type=locked.device_type,
            country=locked.country,
            events=events,
            received_at=received_at,
        )

    rows = _rows(session=locked, events=events, times=times, received_at=received_at)
    alive = ended is None
    if connection.vendor == "postgresql":
        stored = _insert_and_count(rows, session=locked, alive=alive, now=received_at)
    else:
        stored = _insert(rows)
        _session_count(session=locked, stored=stored, alive=alive, now=received_at)
    events_stored(session=locked, events=stored)
    return IngestResult(
        stored=len(stored),
        duplicates=len(events) - len(stored),
        anonymous=0,
    )


def _rows(*, session: UserSession, events: list[EventIn], times: list[datetime], received_at: datetime) -> list[tuple]:
    seen: set[str] = set()
    rows: list[tuple] = []
    for event, at in zip(events, times, strict=True):
        if event.message_id in seen:
            continue  # the same message twice in one batch is stored once
        seen.add(event.message_id)
        rows.append(
            (
                session.neuron_id,
                session.pk,
                session.profile_id,
                session.anonymous_id,
                event.event_type,
                event.event_name,
                event.properties,
                event.page_url,
                event.page_path,
                event.page_title,
                event.referrer,
                at,
                received_at,
                event.message_id,
            )
        )
    return rows


def _stored_event(row: tuple) -> StoredEvent:
    return StoredEvent(
        event_type=row[4],
        event_name=row[5],
        properties=row[6],
        page_path=row[8],
        timestamp=row[11],
        message_id=row[13],
    )


def _insert(rows: list[tuple]) -> list[StoredEvent]:
    """Write the rows in one statement, skipping message ids the site already has, and
    return the events that went in.

    ON CONFLICT DO NOTHING decides duplicates: on PostgreSQL it waits for a concurrent
    transaction holding the same message id and then skips it, so concurrent duplicates
    are stored exactly once; SQLite serialises writers anyway (BEGIN IMMEDIATE).
    bulk_create(ignore_conflicts=True) cannot say which rows went in, and on SQLite it
    splits a batch into 71-row statements (Django assumes 999 parameters), so the query
    count would grow with the batch size.
    """
    if connection.vendor == "postgresql":
        inserted = _insert_json(rows)
    else:
        inserted = _insert_values(rows)
    by_id = {row[13]: row for row in rows}
    return [_stored_event(by_id[message_id]) for message_id in inserted]


# PostgreSQL: the rows go as one JSON document that json_populate_recordset() turns into
# records of the table's own row type. The statement text and its one parameter are the
# same for any batch size, and orjson writes the document in C. (A multi-row VALUES list
# of 100 events has 1,400 placeholders: psycopg's client-side binding spent ~11 ms of CPU
# per batch splitting that query; one array per column and unnest() still spent ~2 ms
# adapting the arrays element by element.) The document is sent as a separate parameter
# (server-side binding: _server_cursor), not quoted into the query text.
EVENTS_INSERT_SQL = (
    f"INSERT INTO {BehaviorEvent._meta.db_table} ({', '.join(EVENT_COLUMNS)}) "
    f"SELECT {', '.join(EVENT_COLUMNS)} FROM json_populate_recordset(NULL::{BehaviorEvent._meta.db_table}, %s) "
    "ON CONFLICT (neuron_id, message_id) DO NOTHING RETURNING session_id, message_id"
)


def events_json(rows: list[tuple]) -> str:
    """Event rows (in EVENT_COLUMNS order) as the JSON document EVENTS_INSERT_SQL reads."""
    return orjson.dumps([dict(zip(EVENT_COLUMNS, row, strict=True)) for row in rows]).decode()


class _PreparingCursor(psycopg.Cursor):
    """Prepares every statement it executes (once per connection; psycopg keeps them)."""

    def execute(self, query, params=None, *, prepare=None, binary=None):
        return super().execute(query, params, prepare=True if prepare is None else prepare, binary=binary)


def server_cursor(*, prepared: bool = False):
    """A cursor on Django's PostgreSQL connection (same transaction, query log and error
    translation) that binds parameters on the server instead of quoting them into the text.

    `prepared=True`: its statements are prepared on the server the first time the
    connection runs them, so later runs skip parsing and, once PostgreSQL settles on a
    generic plan, planning (the connection's `prepare_threshold` must not be None; the
    settings give a threshold no statement reaches by itself, so only these are prepared).
    """
    connection.ensure_connection()
    raw = (_PreparingCursor if prepared else psycopg.Cursor)(connection.connection)
    return connection.make_debug_cursor(raw) if connection.queries_logged else connection.make_cursor(raw)


def _insert_json(rows: list[tuple]) -> list[str]:
    with server_cursor() as cursor:
        cursor.execute(EVENTS_INSERT_SQL, [events_json(rows)])
        return [message_id for (_, message_id) in cursor.fetchall()]


def _insert_values(rows: list[tuple]) -> list[str]:
    table = BehaviorEvent._meta.db_table
    columns = ", ".join(f'"{name}"' for name in EVENT_COLUMNS)
    one = "(" + ", ".join(["%s"] * len(EVENT_COLUMNS)) + ")"
    adapt_time = connection.ops.adapt_datetimefield_value
    inserted: list[str] = []
    with connection.cursor() as cursor:
        for start in range(0, len(rows), INSERT_CHUNK):
            chunk = rows[start : start + INSERT_CHUNK]
            params: list = []
            for row in chunk:
                params.extend(row[:6])
                params.append(orjson.dumps(row[6]).decode())
                params.extend(row[7:11])
                params.append(adapt_time(row[11]))
                params.append(adapt_time(row[12]))
                params.append(row[13])
            cursor.execute(
                f"INSERT INTO {table} ({columns}) VALUES {', '.join([one] * len(chunk))} "
                'ON CONFLICT ("neuron_id", "message_id") DO NOTHING RETURNING "message_id"',
                params,
            )
            inserted.extend(message_id for (message_id,) in cursor.fetchall())
    return inserted


def _session_counters(
    *, session: UserSession, stored: list[StoredEvent], alive: bool, now: datetime
) -> dict[str, object] | None:
    """The session's new counters, last activity and engagement score once `stored` are in
    (None: nothing to change). Does not touch `session`."""
    if not stored and not alive:
        return None
    page_views = sum(1 for e in stored if e.event_type in PAGE_VIEW_TYPES)
    conversions = sum(1 for e in stored if e.event_type in CONVERSION_TYPES)
    values: dict[str, object] = {
        "event_count": session.event_count + len(stored),
        "page_view_count": session.page_view_count + page_views,
        "conversion_count": session.conversion_count + conversions,
        "interaction_count": session.interaction_count + len(stored) - page_views - conversions,
    }
    last_activity_at = session.last_activity_at
    if alive:
        # Events are activity: they extend the idle timeout like a heartbeat. Late
        # events inside the grace window do not reopen an ended session.
        last_activity_at = max(session.last_activity_at, now)
        values["last_activity_at"] = last_activity_at
        values["expires_at"] = session_expiry(started_at=session.started_at, last_activity_at=last_activity_at)
    values["engagement_score"] = engagement_score(
        duration=last_activity_at - session.started_at,
        page_views=values["page_view_count"],
        interactions=values["interaction_count"],
        conversions=values["conversion_count"],
    )
    return values


def _session_count(*, session: UserSession, stored: list[StoredEvent], alive: bool, now: datetime) -> None:
    """Counters, last activity and engagement score, in the ingest transaction."""
    values = _session_counters(session=session, stored=stored, alive=alive, now=now)
    if values is None:
        return
    for name, value in values.items():
        setattr(session, name, value)
    UserSession.objects.filter(pk=session.pk).update(**values)


def _insert_and_count(rows: list[tuple], *, session: UserSession, alive: bool, now: datetime) -> list[StoredEvent]:
    """PostgreSQL: the INSERT and the session's UPDATE in one statement (a data-modifying CTE).

    The counters are computed up front as if every row goes in, and the UPDATE applies
    only if the INSERT's RETURNING count says so. Duplicates are the exception (retries),
    so the common batch costs one round trip; a batch with duplicates pays a second
    statement with the counters of what was really stored. The session row is locked,
    so nothing else moves its counters in between.
    """
    expected = _session_counters(session=session, stored=[_stored_event(row) for row in rows], alive=alive, now=now)
    assert expected is not None  # rows is never empty here
    names = list(expected)
    sql = (
        f"WITH ins AS ({EVENTS_INSERT_SQL}), "
        f"upd AS (UPDATE {UserSession._meta.db_table} SET {', '.join(f'{name} = %s' for name in names)} "
        "WHERE id = %s AND (SELECT count(*) FROM ins) = %s) "
        "SELECT message_id FROM ins"
    )
    params = [events_json(rows), *(expected[name] for name in names), rows[0][1], len(rows)]
    with server_cursor() as cursor:
        cursor.execute(sql, params)
        inserted = [message_id for (message_id,) in cursor.fetchall()]
    by_id = {row[13]: row for row in rows}
    stored = [_stored_event(by_id[message_id]) for message_id in inserted]
    if len(stored) == len(rows):
        for name, value in expected.items():
            setattr(session, name, value)
    else:
        _session_count(session=session, stored=stored, alive=alive, now=now)
    return stored


def events_stored(*, session: UserSession, events: list[StoredEvent], publish: bool = True) -> LiveRecord | None:
    """Everything that follows newly stored events, inside the ingest transaction.

    The single place for consumers of new events (interest vectors, segments): a hook
    called here commits or rolls back with the events. Duplicates never reach it. The
    group commit's one statement (ingest_group.PLAIN_SQL) stores single events without
    calling this for sessions where it only publishes live counters (no personalization
    consent); a hook that does more for such sessions must narrow that statement's `plain`.
    Live counters are published only after commit, so they never count a rolled-back event;
    with `publish=False` the caller publishes the returned record after its commit (the
    group commit publishes its sessions' records together).
    """
    if not events:
        return None
    # Interest vectors in the same transaction: the visitor's next request already sees them.
    interest_update_from_events(session=session, events=events)
    record = LiveRecord(
        neuron_id=session.neuron_id,
        event_types=Counter(e.event_type for e in events),
        session_key=str(session.public_id),
    )
    if publish:
        transaction.on_commit(lambda: live_record_many([record]))
    return record


def _anonymous_fresh(*, neuron_id: int, events: list[EventIn]) -> list[EventIn]:
    """The events to count: one per client message id (a repeat inside the batch, or of a
    batch counted within ANONYMOUS_DEDUPE_SECONDS, is a resend), and every event whose id
    the server generated (nothing to recognise a resend by)."""
    first: dict[str, EventIn] = {}
    for event in events:
        if not event.generated_id:
            first.setdefault(event.message_id, event)
    fresh_ids = anonymous_first_seen(neuron_id=neuron_id, message_ids=list(first)) if first else None
    if fresh_ids is None:  # the cache could not answer: count what the batch itself does not repeat
        fresh_ids = set(first)
    kept = []
    for event in events:
        if event.generated_id:
            kept.append(event)
        elif event.message_id in fresh_ids and first.get(event.message_id) is event:
            kept.append(event)
    return kept


@transaction.atomic(savepoint=False)
def events_count_anonymously(
    *, neuron_id: int, device_type: str, country: str, events: list[EventIn], received_at: datetime
) -> IngestResult:
    """No analytics consent: one upsert of per-day aggregates by path, device type and
    country. No event row, no session counter, nothing that tells visitors apart. A resend
    (the same client message ids) is recognised by a short-lived keyed hash in the cache
    (sessions_app.live.anonymous_first_seen) and answered as duplicates."""
    if not events:
        return IngestResult(stored=0, duplicates=0, anonymous=0)
    counted = _anonymous_fresh(neuron_id=neuron_id, events=events)
    if not counted:
        return IngestResult(stored=0, duplicates=len(events), anonymous=0)
    merged: dict[str, list[int]] = {}
    for event in counted:
        totals = merged.setdefault(event.page_path[:1024], [0, 0])
        totals[0] += 1 if event.is_page_view else 0
        totals[1] += 1
    day = received_at.date().isoformat()
    table = AnonymousTrafficCount._meta.db_table
    values = []
    params: list = []
    for path, (views, count) in merged.items():
        values.append("(%s, %s, %s, %s, %s, %s, %s)")
        params += [neuron_id, day, path, device_type, country, views, count]
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {table} (neuron_id, day, path, device_type, country, page_views, events) "
            f"VALUES {', '.join(values)} "
            "ON CONFLICT (neuron_id, day, path, device_type, country) DO UPDATE SET "
            f"page_views = {table}.page_views + excluded.page_views, events = {table}.events + excluded.events",
            params,
        )
    anonymous = len(counted)
    transaction.on_commit(lambda: live_record_events(neuron_id=neuron_id, event_types={}, anonymous=anonymous))
    return IngestResult(stored=0, duplicates=len(events) - anonymous, anonymous=anonymous)
