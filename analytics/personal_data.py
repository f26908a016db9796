"""Personal data held by this app (see privacy.registry).

Rollups are counts per period, site, dimension value and filter value; no
column identifies a visitor, so there is nothing to export or erase. Erasing a
subject's raw rows changes the counts of closed periods, which the reconcile job
rebuilds from what remains.

Session sequences (and their visitors' integer ids) are a packed copy of a session's events (for funnels and
journeys): they belong to the session's subject, are erased with the session
(foreign key) or by anonymous id, and expire with the events they copy.
"""

from privacy.registry import PersonalData

PERSONAL_DATA = [
    PersonalData(
        model="analytics.SessionSequence",
        links={"sessions": "session", "anonymous_ids": ("anonymous_id", "visitor__anonymous_id")},
        # The packed events are a derived copy of the behaviour events, exported from there.
        exclude=("events",),
        retention="events",
        # A session starts before any of its events is received: purged no later than they are.
        retention_field="started_at",
        description="Each session's events in order, packed, for funnels and journeys.",
    ),
    PersonalData(
        model="analytics.Visitor",
        links={"anonymous_ids": "anonymous_id"},
        retention="sessions",
        retention_field="last_seen_at",
        description="The integer id a site's visitor (anonymous id) has in session sequences.",
    ),
]

EXEMPT = {
    "analytics.HourlyRollup": "aggregate counts per hour; no visitor identifier",
    "analytics.DailyRollup": "aggregate counts per day; no visitor identifier",
    "analytics.RollupPeriod": "bookkeeping of rollup runs; row counts only",
    "analytics.RollupWatermark": "bookkeeping of rollup runs",
    "analytics.Action": "the distinct event types, names and page paths seen; no link to any visit",
    "analytics.SequenceDay": (
        "one day's session sequences concatenated, a read copy of SessionSequence rows (registered above): "
        "deleting any of them (with its session, by erasure or retention) blanks the day's row in the same "
        "transaction, and the rollup job builds it again from what remains"
    ),
    "analytics.VisitorRollup": (
        "per hour, the integer Visitor ids of its distinct visitors, only to count them; an id names no one once "
        "its Visitor row is erased, and the reconcile job rebuilds the hours whose sessions changed"
    ),
}
