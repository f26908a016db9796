"""Privacy services: the public entry points other apps call.

audit_log(*, actor, action, subject, details)   -> AuditEntry   (privacy.audit)
"""

from privacy.audit import audit_log, audit_purge, audit_verify

__all__ = ["audit_log", "audit_purge", "audit_verify"]
