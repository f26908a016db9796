"""Session services: expiry sweep, engagement formula, consent resolution, IP minimisation."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from privacy.consent import consent_resolve
from sessions_app.engagement import engagement_score, engagement_score_sql
from sessions_app.enrichment import truncate_ip
from sessions_app.models import UserSession
from sessions_app.services import session_expire_idle, session_expiry
from tests.sessions_app.factories import UserSessionFactory


def _session_idle_since(minutes: float, *, started_hours_ago: float = 1.0) -> UserSession:
    now = timezone.now()
    started = now - timedelta(hours=started_hours_ago)
    last = now - timedelta(minutes=minutes)
    return UserSessionFactory(
        started_at=started, last_activity_at=last, expires_at=session_expiry(started_at=started, last_activity_at=last)
    )


@pytest.mark.django_db
def test_sweep_ends_only_sessions_idle_past_the_timeout():
    """Idle 31 min: ended at its last activity; idle 10 min: untouched."""
    stale = _session_idle_since(31)
    fresh = _session_idle_since(10)
    assert session_expire_idle() == 1
    stale.refresh_from_db()
    fresh.refresh_from_db()
    assert stale.ended_at == stale.last_activity_at
    assert stale.end_reason == "timeout"
    assert fresh.ended_at is None


@pytest.mark.django_db
def test_sweep_ends_sessions_past_absolute_lifetime_with_lifetime_reason():
    old = _session_idle_since(1, started_hours_ago=25)
    assert session_expire_idle() == 1
    old.refresh_from_db()
    assert old.end_reason == "lifetime"
    assert old.ended_at == old.expires_at


@pytest.mark.django_db
def test_sweep_works_in_batches_and_is_idempotent():
    for _ in range(7):
        _session_idle_since(45)
    assert session_expire_idle(batch_size=3) == 7
    assert session_expire_idle(batch_size=3) == 0
    assert UserSession.objects.filter(ended_at__isnull=True).count() == 0


@pytest.mark.django_db
def test_sweep_leaves_already_ended_sessions_alone():
    ended = _session_idle_since(45)
    ended.ended_at = ended.last_activity_at - timedelta(minutes=1)
    ended.end_reason = "client"
    ended.save()
    assert session_expire_idle() == 0
    ended.refresh_from_db()
    assert ended.end_reason == "client"


def test_engagement_bounce_scores_zero_and_full_visit_scores_hundred():
    assert engagement_score(duration=timedelta(0), page_views=1, interactions=0, conversions=0) == 0
    assert engagement_score(duration=timedelta(minutes=10), page_views=10, interactions=20, conversions=1) == 100


@given(
    seconds=st.integers(min_value=-10, max_value=10**6),
    page_views=st.integers(min_value=0, max_value=10**4),
    interactions=st.integers(min_value=0, max_value=10**4),
    conversions=st.integers(min_value=0, max_value=100),
)
def test_engagement_is_bounded_and_monotonic_in_page_views(seconds, page_views, interactions, conversions):
    score = engagement_score(
        duration=timedelta(seconds=seconds), page_views=page_views, interactions=interactions, conversions=conversions
    )
    more = engagement_score(
        duration=timedelta(seconds=seconds),
        page_views=page_views + 1,
        interactions=interactions,
        conversions=conversions,
    )
    assert 0 <= score <= 100
    assert more >= score


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("81.2.69.142", "81.2.69.0"),
        ("10.0.0.255", "10.0.0.0"),
        ("2001:db8:85a3:1234:8a2e:370:7334:1", "2001:db8:85a3::"),
        ("::ffff:81.2.69.142", "81.2.69.0"),
        ("not-an-ip", ""),
        ("", ""),
    ],
)
def test_truncate_ip_keeps_only_the_network(raw, expected):
    assert truncate_ip(raw) == expected


@given(st.ip_addresses())
def test_truncated_ip_never_equals_a_host_address_with_host_bits(address):
    truncated = truncate_ip(str(address))
    host_bits = int(address) & ((1 << (8 if address.version == 4 else 80)) - 1)
    if address.version == 6 and address.ipv4_mapped:
        return
    assert (truncated == str(address)) == (host_bits == 0)


def test_consent_resolution_order_defaults_previous_given_then_gpc(settings):
    settings.CONSENT_MODE = "opt-in"
    result = consent_resolve(
        given={"marketing": True, "trackingConsent": True},
        previous={"personalization": True},
        gpc=True,
    )
    assert result == {
        "analytics": True,
        "personalization": True,
        "marketing": False,  # GPC wins over a grant
        "fingerprinting": False,
        "saleSharing": False,
    }


@pytest.mark.django_db
@pytest.mark.skipif(connection.vendor != "postgresql", reason="the SQL form runs on PostgreSQL")
@hsettings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    microseconds=st.one_of(
        st.integers(min_value=-(10**7), max_value=2 * 86_400 * 10**6),
        # around the points where the score's last digit is a tie or the duration saturates
        st.integers(min_value=0, max_value=700).map(lambda s: s * 10**6),
        st.integers(min_value=0, max_value=6_000).map(lambda s: s * 10**5 + 1),
    ),
    page_views=st.integers(min_value=0, max_value=40),
    interactions=st.integers(min_value=0, max_value=40),
    conversions=st.integers(min_value=0, max_value=3),
)
def test_engagement_in_sql_equals_engagement_in_python(microseconds, page_views, interactions, conversions):
    """The group commit computes the score in its statement: the same bits as the Python."""
    started = timezone.now().replace(microsecond=0)
    last = started + timedelta(microseconds=microseconds)
    expression = engagement_score_sql(
        seconds="extract(epoch FROM %s::timestamptz - %s::timestamptz)::float8",
        page_views="%s::int",
        interactions="%s::int",
        conversions="%s::int",
    )
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT {expression}", [last, started, page_views, interactions, conversions])
        (in_sql,) = cursor.fetchone()
    in_python = engagement_score(
        duration=last - started, page_views=page_views, interactions=interactions, conversions=conversions
    )
    assert in_sql == in_python
