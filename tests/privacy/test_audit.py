"""The hash-chained audit log: appends, tamper detection, the trigger, concurrency, purge."""

from __future__ import annotations

import threading
from datetime import timedelta
from io import StringIO

import pytest
import time_machine
from django.core.management import CommandError, call_command
from django.db import DatabaseError, connection, connections, transaction
from django.utils import timezone

from privacy.audit import GENESIS_HASH, audit_log, audit_purge, audit_verify, entry_digest
from privacy.models import AppendOnlyError, AuditEntry

pytestmark = pytest.mark.django_db

postgres_only = pytest.mark.skipif(connection.vendor != "postgresql", reason="needs PostgreSQL")


def _tamper(sql: str, params: list) -> None:
    """Write behind the application's back, as an attacker with SQL access would."""
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            # Disables user triggers for this transaction (superuser only): simulates a DBA edit.
            cursor.execute("SET LOCAL session_replication_role = replica")
        cursor.execute(sql, params)
        if connection.vendor == "postgresql":
            cursor.execute("SET LOCAL session_replication_role = origin")


def _entries(n: int) -> list[AuditEntry]:
    return [audit_log(actor="system", action="test.action", subject=f"thing:{i}", details={"i": i}) for i in range(n)]


def test_entries_chain_from_genesis_and_verify():
    """Each entry points at its predecessor's hash and recomputes to its own."""
    first, second, third = _entries(3)
    assert (first.seq, second.seq, third.seq) == (1, 2, 3)
    assert first.prev_hash == GENESIS_HASH
    assert second.prev_hash == first.entry_hash and third.prev_hash == second.entry_hash
    report = audit_verify()
    assert report.ok and report.checked == 3


def test_hash_covers_every_field_of_the_entry():
    """Changing any field changes the digest."""
    base = {
        "prev_hash": GENESIS_HASH,
        "seq": 1,
        "created_at": timezone.now(),
        "actor": "a",
        "action": "b",
        "subject": "c",
        "details": {"k": 1},
    }
    digest = entry_digest(**base)
    for key, value in [
        ("seq", 2),
        ("actor", "x"),
        ("action", "x"),
        ("subject", "x"),
        ("details", {"k": 2}),
        ("prev_hash", "1" * 64),
        ("created_at", base["created_at"] + timedelta(microseconds=1)),
    ]:
        assert entry_digest(**{**base, key: value}) != digest, key


def test_actor_is_rendered_from_users_neurons_and_strings(staff_user, neuron):
    """A user, a neuron and None each get a stable label."""
    assert audit_log(actor=staff_user, action="a", subject="s").actor == f"user:{staff_user.pk}:staff"
    assert audit_log(actor=neuron, action="a", subject="s").actor == f"neuron:{neuron.slug}"
    assert audit_log(actor=None, action="a", subject="s").actor == "system"


def test_details_are_stored_as_json_and_still_verify():
    """Non-JSON values (UUIDs, datetimes) are stored as strings and the chain still verifies after a reload."""
    import uuid

    audit_log(actor="system", action="a", subject="s", details={"id": uuid.uuid4(), "at": timezone.now(), "n": 1.5})
    assert audit_verify().ok


@pytest.mark.parametrize("number", [1e16, 1e19, 1.5e19, -5e18, 2.0**64, -1e19, 1e20, 1e300, 2.5, 2.0, 10**19])
def test_any_number_in_the_details_still_verifies(number):
    """PostgreSQL's jsonb gives 1e19 back as 10000000000000000000: the hash is of the same number either way."""
    audit_log(actor="system", action="segment.create", subject="segment:1", details={"rule": {"value": number}})
    assert audit_verify().ok


def test_edited_entry_is_named():
    """An edited row is reported as edited, with its seq."""
    _entries(5)
    _tamper("UPDATE privacy_audit_log SET subject = %s WHERE seq = %s", ["thing:forged", 3])
    report = audit_verify()
    assert not report.ok
    assert report.problems == ["entry #3: content does not match its hash (edited)"]


def test_deleted_entry_is_named():
    """A deleted row is reported as a gap."""
    _entries(5)
    _tamper("DELETE FROM privacy_audit_log WHERE seq = %s", [2])
    report = audit_verify()
    assert not report.ok
    assert "entries #2..#2 are missing (deleted)" in report.problems


def test_deleted_first_entries_are_detected():
    """Cutting the head of the chain without the documented purge is detected."""
    _entries(4)
    _tamper("DELETE FROM privacy_audit_log WHERE seq <= %s", [2])
    report = audit_verify()
    assert not report.ok
    assert "no audit.purge entry covers #1..#2" in report.problems[0]


def test_reordered_entries_are_detected():
    """Swapping two rows' positions breaks the chain at both."""
    _entries(4)
    _tamper("UPDATE privacy_audit_log SET seq = -1 WHERE seq = 2", [])
    _tamper("UPDATE privacy_audit_log SET seq = 2 WHERE seq = 3", [])
    _tamper("UPDATE privacy_audit_log SET seq = 3 WHERE seq = -1", [])
    report = audit_verify()
    assert not report.ok
    assert any(p.startswith("entry #2") for p in report.problems)
    assert any(p.startswith("entry #3") for p in report.problems)


def test_orm_cannot_update_or_delete_entries():
    """The model and its manager refuse to change history."""
    (entry,) = _entries(1)
    entry.subject = "changed"
    with pytest.raises(AppendOnlyError):
        entry.save()
    with pytest.raises(AppendOnlyError):
        AuditEntry.objects.filter(pk=entry.pk).update(subject="changed")
    with pytest.raises(AppendOnlyError):
        AuditEntry.objects.all().delete()
    with pytest.raises(AppendOnlyError):
        entry.delete()


@postgres_only
@pytest.mark.parametrize(
    "sql",
    [
        "UPDATE privacy_audit_log SET subject = 'x'",
        "DELETE FROM privacy_audit_log",
    ],
)
def test_postgres_trigger_rejects_update_and_delete(sql):
    """Even raw SQL cannot change the log on PostgreSQL."""
    _entries(2)
    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(sql)
    assert AuditEntry.objects.count() == 2


@postgres_only
@pytest.mark.django_db(transaction=True)
def test_concurrent_appends_keep_one_chain():
    """Appends from many connections at once form one gap-free chain."""
    threads_n, per_thread = 6, 15
    errors: list[BaseException] = []
    barrier = threading.Barrier(threads_n)

    def worker(n: int) -> None:
        try:
            barrier.wait()
            for i in range(per_thread):
                audit_log(actor=f"worker:{n}", action="test.concurrent", subject=f"{n}:{i}")
        except BaseException as exc:  # collected and re-raised in the main thread
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(threads_n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert AuditEntry.objects.count() == threads_n * per_thread
    assert list(AuditEntry.objects.values_list("seq", flat=True)) == list(range(1, threads_n * per_thread + 1))
    assert audit_verify().ok


def test_purge_removes_a_prefix_and_keeps_the_chain_verifiable():
    """The documented purge deletes old entries and anchors the survivors."""
    start = timezone.now()
    with time_machine.travel(start - timedelta(days=10), tick=False):
        _entries(3)
    _entries(2)
    assert audit_purge(before=start - timedelta(days=1), actor="system", dry_run=True) == 3
    assert AuditEntry.objects.count() == 5
    assert audit_purge(before=start - timedelta(days=1), actor="system") == 3
    assert list(AuditEntry.objects.values_list("seq", flat=True)) == [4, 5, 6]
    purge = AuditEntry.objects.get(seq=6)
    assert purge.action == "audit.purge" and purge.details["purgedThroughSeq"] == 3
    assert audit_verify().ok
    # A second purge that also removes the first purge record still verifies.
    with time_machine.travel(start + timedelta(days=5)):
        assert audit_purge(before=start + timedelta(days=4), actor="system") == 3
    assert audit_verify().ok


def test_verify_command_reports_ok_and_broken():
    """`manage.py verify_audit_log` says which entry broke and exits non-zero."""
    _entries(3)
    out = StringIO()
    call_command("verify_audit_log", stdout=out)
    assert "intact: 3 entries" in out.getvalue()
    _tamper("UPDATE privacy_audit_log SET action = %s WHERE seq = %s", ["forged", 2])
    err = StringIO()
    with pytest.raises(CommandError, match="chain broken"):
        call_command("verify_audit_log", stdout=StringIO(), stderr=err)
    assert "entry #2: content does not match its hash (edited)" in err.getvalue()
