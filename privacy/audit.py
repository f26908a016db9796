"""The hash-chained, append-only audit log.

Each entry stores `entry_hash = sha256(prev_hash ‖ canonical JSON of the entry)`,
where the canonical JSON holds seq, time, actor, action, subject and details
with sorted keys. Editing, deleting or reordering any row breaks the chain at
that row, and `audit_verify` says where.

Appends are serialised so the log stays one chain: on PostgreSQL by a
transaction-scoped advisory lock (held until the caller's transaction commits,
so the predecessor read is never stale); on SQLite every write transaction is
already exclusive (`transaction_mode=IMMEDIATE`). The unique `seq` is the
backstop: a racing append could only fail, never fork the chain.

Entries are written by the service that performs the action, inside its
transaction, so the action and its record commit or roll back together
(signals would miss bulk writes).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson
from django.db import connection, transaction
from django.utils import timezone

from privacy.models import AuditEntry

GENESIS_HASH = "0" * 64
# pg_advisory_xact_lock key: any constant shared by every process of this app.
AUDIT_LOCK_KEY = 0x5A0D17
PURGE_ACTION = "audit.purge"


def actor_label(actor: Any) -> str:
    """A stable, human-readable actor: `user:<id>:<username>`, `neuron:<slug>`, `system`, or the string given."""
    if actor is None:
        return "system"
    if isinstance(actor, str):
        return actor[:200] or "system"
    if getattr(actor, "is_authenticated", False) and hasattr(actor, "get_username"):
        return f"user:{actor.pk}:{actor.get_username()}"[:200]
    slug = getattr(actor, "slug", None)
    if slug:
        return f"neuron:{slug}"[:200]
    return str(actor)[:200]


def _json_safe(details: dict[str, Any]) -> dict[str, Any]:
    # Round-trip through JSON so the hashed value equals what the database returns later.
    return orjson.loads(orjson.dumps(details, default=str, option=orjson.OPT_NON_STR_KEYS))


def _timestamp(value: datetime) -> str:
    return value.astimezone(UTC).isoformat(timespec="microseconds")


# orjson writes a float of this size or more with an exponent (1e19), which PostgreSQL's jsonb
# gives back as an integer literal (10000000000000000000): the same number, read as an int when
# orjson can render it (config.api.json_numbers), as a float otherwise.
_EXPONENT_FLOATS = 1e16


def _numbers_canonical(value: Any) -> Any:
    """`value` with each float that jsonb would give back as an integer (orjson can render) made
    that int, so an entry hashes the same written and read back."""
    if isinstance(value, float) and abs(value) >= _EXPONENT_FLOATS and -(2.0**63) <= value < 2.0**64:
        return int(value)
    if isinstance(value, dict):
        return {key: _numbers_canonical(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_numbers_canonical(item) for item in value]
    return value


def entry_digest(
    *, prev_hash: str, seq: int, created_at: datetime, actor: str, action: str, subject: str, details: Any
) -> str:
    canonical = orjson.dumps(
        {
            "seq": seq,
            "createdAt": _timestamp(created_at),
            "actor": actor,
            "action": action,
            "subject": subject,
            "details": _numbers_canonical(details),
        },
        option=orjson.OPT_SORT_KEYS,
    )
    return hashlib.sha256(prev_hash.encode() + canonical).hexdigest()


def _lock_chain() -> None:
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", [AUDIT_LOCK_KEY])


@transaction.atomic
def audit_log(*, actor: Any, action: str, subject: str = "", details: dict[str, Any] | None = None) -> AuditEntry:
    """Append one entry for a privileged action. Call it inside the action's own transaction.

    `actor`: a staff user, a neuron, a string ("system", "cli:<user>"), or None (system).
    `subject`: an opaque reference such as "profile:<uuid>" or "dsar:<uuid>" — never a raw user id.
    `details`: JSON-serialisable facts (counts, ids, flags); no personal data.
    """
    _lock_chain()
    last = AuditEntry.objects.order_by("-seq").values("seq", "entry_hash").first()
    seq = last["seq"] + 1 if last else 1
    prev_hash = last["entry_hash"] if last else GENESIS_HASH
    # Truncated to microseconds, as both databases store it.
    created_at = timezone.now()
    actor_str = actor_label(actor)
    subject_str = str(subject)[:200]
    clean = _json_safe(details or {})
    digest = entry_digest(
        prev_hash=prev_hash,
        seq=seq,
        created_at=created_at,
        actor=actor_str,
        action=action,
        subject=subject_str,
        details=clean,
    )
    return AuditEntry.objects.create(
        seq=seq,
        created_at=created_at,
        actor=actor_str,
        action=action[:100],
        subject=subject_str,
        details=clean,
        prev_hash=prev_hash,
        entry_hash=digest,
    )


@dataclass
class ChainReport:
    ok: bool
    checked: int = 0
    first_seq: int | None = None
    last_seq: int | None = None
    problems: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "checked": self.checked,
            "firstSeq": self.first_seq,
            "lastSeq": self.last_seq,
            "problems": self.problems,
        }


def _purge_anchor(first_seq: int) -> str | None:
    """The hash a documented purge promised the first surviving entry would point to."""
    for details in AuditEntry.objects.filter(action=PURGE_ACTION).order_by("-seq").values_list("details", flat=True):
        if isinstance(details, dict) and details.get("purgedThroughSeq") == first_seq - 1:
            return details.get("anchorHash")
    return None


def audit_verify(*, batch_size: int = 2000, max_problems: int = 50) -> ChainReport:
    """Walk the chain in seq order and name every row that was edited, deleted or reordered.

    Edited: the row's recomputed hash differs from its stored hash. Deleted: a gap
    in seq, or a row whose prev_hash is not its predecessor's hash. Reordered:
    rows swapped (their seq or times changed) fail both checks at that position.
    A chain that starts after seq 1 must start where an `audit.purge` entry says.
    """
    report = ChainReport(ok=True)
    prev_hash: str | None = None
    prev_seq: int | None = None
    last_seq = 0
    while True:
        rows = list(
            AuditEntry.objects.filter(seq__gt=last_seq)
            .order_by("seq")
            .values_list("seq", "created_at", "actor", "action", "subject", "details", "prev_hash", "entry_hash")[
                :batch_size
            ]
        )
        if not rows:
            break
        for seq, created_at, actor, action, subject, details, stored_prev, stored_hash in rows:
            if prev_seq is None:
                report.first_seq = seq
                if seq == 1:
                    expected_prev = GENESIS_HASH
                else:
                    expected_prev = _purge_anchor(seq)
                    if expected_prev is None:
                        report.problems.append(
                            f"entry #{seq}: the chain starts after #1 but no audit.purge entry covers #1..#{seq - 1}"
                            " (entries deleted)"
                        )
                        expected_prev = stored_prev
            else:
                expected_prev = prev_hash
                if seq != prev_seq + 1:
                    report.problems.append(f"entries #{prev_seq + 1}..#{seq - 1} are missing (deleted)")
            if stored_prev != expected_prev:
                report.problems.append(
                    f"entry #{seq}: prev_hash does not match the entry before it (deleted, inserted or reordered)"
                )
            recomputed = entry_digest(
                prev_hash=stored_prev,
                seq=seq,
                created_at=created_at,
                actor=actor,
                action=action,
                subject=subject,
                details=details,
            )
            if recomputed != stored_hash:
                report.problems.append(f"entry #{seq}: content does not match its hash (edited)")
            prev_hash, prev_seq = stored_hash, seq
            report.checked += 1
            if len(report.problems) >= max_problems:
                break
        last_seq = rows[-1][0]
        if len(report.problems) >= max_problems:
            report.problems.append("too many problems; stopped")
            break
    report.last_seq = prev_seq
    report.ok = not report.problems
    return report


@transaction.atomic
def audit_purge(*, before: datetime, actor: Any, dry_run: bool = False, batch_size: int = 5000) -> int:
    """The one documented way to remove old audit entries, keeping the chain verifiable.

    Deletes the oldest entries created before `before` (a prefix of the chain, never
    a hole) and appends an `audit.purge` entry naming the last purged seq and its
    hash: the first surviving entry's prev_hash must equal that anchor, so the
    verifier can still prove nothing after it was touched. On PostgreSQL the
    append-only trigger lets the DELETE through only inside this transaction
    (`SET LOCAL privacy.audit_purge = 'on'`).
    """
    _lock_chain()
    last = AuditEntry.objects.filter(created_at__lt=before).order_by("-seq").values("seq", "entry_hash").first()
    if last is None:
        return 0
    through, anchor = last["seq"], last["entry_hash"]
    count = AuditEntry.objects.filter(seq__lte=through).count()
    if dry_run:
        return count
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SET LOCAL privacy.audit_purge = 'on'")
    deleted = 0
    while True:
        ids = list(AuditEntry.objects.filter(seq__lte=through).values_list("pk", flat=True)[:batch_size])
        if not ids:
            break
        # The default manager refuses deletes; this is the one place allowed to use the base manager.
        deleted += AuditEntry._base_manager.filter(pk__in=ids).delete()[0]
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SET LOCAL privacy.audit_purge = 'off'")
    # The newest purge entry always covers the whole removed prefix (older purge entries
    # are part of that prefix), so the verifier finds the anchor there.
    audit_log(
        actor=actor,
        action=PURGE_ACTION,
        subject="audit-log",
        details={"purgedThroughSeq": through, "anchorHash": anchor, "deleted": deleted, "before": before.isoformat()},
    )
    return deleted
