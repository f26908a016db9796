"""Personal data held by the privacy app, and the installed tables that are not personal data.

Exemptions name why a table with identifier-like fields holds no visitor's
personal data (or must be kept despite an erasure request, Art. 17(3)).
"""

from privacy.registry import PersonalData

PERSONAL_DATA = [
    PersonalData(
        model="privacy.ConsentRecord",
        links={"sessions": "session", "profiles": "profile", "anonymous_ids": "anonymous_id"},
        unlinked={"ip_truncated": "a /24 or /48 network shared by many people, not an identifier of one"},
        retention="consent_records",
        retention_field="recorded_at",
        description="Consent decisions with their proof: policy version, notice hash, source, time, device.",
    ),
]

EXEMPT = {
    "auth.User": "operators' (staff) accounts, not visitors",
    "sessions.Session": "Django login sessions of staff in the admin, not visitor sessions",
    "privacy.AuditEntry": "the audit log holds opaque references (request and profile ids), never a raw "
    "identifier; kept under Art. 17(3)(b)/(e) as proof of what was done, bounded by its own retention policy",
    "privacy.DataSubjectRequest": "the record of a data-subject request: only a keyed hash of the subject "
    "once finished (the encrypted identifier is cleared); kept to prove the request was honoured",
    "privacy.ErasureTombstone": "keyed hashes of erased identifiers, kept so late data about an erased "
    "subject is dropped; no raw identifier",
}

# Encrypted fields outside the registered tables, for rotate_encryption_keys.
ENCRYPTED = {
    "privacy.DataSubjectRequest": ("subject_encrypted", "result_encrypted"),
}
