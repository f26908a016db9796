"""Key rotation for identifiers encrypted at rest.

Put the new key first in FIELD_ENCRYPTION_KEYS (keep the old ones after it),
deploy, then run `manage.py rotate_encryption_keys`: every encrypted field the
registry declares is re-encrypted under the newest key (MultiFernet.rotate).
When it reports no failures, the old keys can be removed.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from cryptography.fernet import InvalidToken
from django.apps import apps
from django.db import transaction

from privacy.audit import audit_log
from privacy.crypto import fernet
from privacy.registry import personal_data_registry


def encryption_keys_rotate(
    *, actor: Any, batch_size: int = 1000, progress: Callable[[str, int], None] | None = None
) -> dict[str, dict[str, int]]:
    """Re-encrypt every registered encrypted field under the newest key. Returns counts per model."""
    progress = progress or (lambda label, n: None)
    multi = fernet()
    report: dict[str, dict[str, int]] = {}
    for label, field_names in personal_data_registry().encrypted_fields().items():
        model = apps.get_model(label)
        rotated = failed = 0
        last_pk: Any = None
        while True:
            with transaction.atomic():
                rows = model._default_manager.select_for_update().order_by("pk")
                if last_pk is not None:
                    rows = rows.filter(pk__gt=last_pk)
                batch = list(rows.only("pk", *field_names)[:batch_size])
                if not batch:
                    break
                changed = []
                for row in batch:
                    dirty = False
                    for name in field_names:
                        token = getattr(row, name)
                        if not token:
                            continue
                        try:
                            setattr(row, name, multi.rotate(token.encode()).decode())
                            dirty = True
                        except InvalidToken:
                            failed += 1  # encrypted under a key no longer configured: reported, left as is
                    if dirty:
                        changed.append(row)
                model._default_manager.bulk_update(changed, list(field_names))
                rotated += len(changed)
                last_pk = batch[-1].pk
            progress(label, len(batch))
        report[label] = {"rotated": rotated, "failed": failed}
    audit_log(actor=actor, action="keys.rotate", subject="encryption-keys", details={"models": report})
    return report
