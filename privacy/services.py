"""Privacy services: the public entry points other apps call.

audit_log(*, actor, action, subject, details)            privacy.audit   (every privileged action)
consent_record(*, neuron, decisions, source, ...)         privacy.ledger  (append to the consent ledger)
consent_update(*, session, given, source, ...)            privacy.ledger  (grant/withdraw + effects)
consent_session_opened(*, session, given, request_meta)   privacy.ledger  (session create/restore)
consent_session_opened_cte(*, session, given, request_meta)  privacy.ledger  (the same, inside the session INSERT)
identifier_is_erased(*, subject_type, value)              privacy.dsar    (drop data of erased subjects)
dsar_submit(*, kind, value, requested_by, ...)            privacy.dsar    (export / erase requests)
"""

from privacy.audit import audit_log, audit_purge, audit_verify
from privacy.dsar import dsar_submit, identifier_is_erased, identifiers_erased
from privacy.ledger import (
    consent_gpc_apply,
    consent_record,
    consent_session_opened,
    consent_session_opened_cte,
    consent_update,
)

__all__ = [
    "audit_log",
    "audit_purge",
    "audit_verify",
    "consent_gpc_apply",
    "consent_record",
    "consent_session_opened",
    "consent_session_opened_cte",
    "consent_update",
    "dsar_submit",
    "identifier_is_erased",
    "identifiers_erased",
]
