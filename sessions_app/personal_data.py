"""Personal data held by this app (see privacy.registry): export, erasure and retention read this."""

from privacy.registry import PersonalData

PERSONAL_DATA = [
    PersonalData(
        model="sessions_app.BehaviorEvent",
        links={"sessions": "session", "profiles": "profile", "anonymous_ids": "anonymous_id"},
        retention="events",
        retention_field="received_at",
        description="Behaviour events: page views, clicks, conversions, with their page and properties.",
    ),
    PersonalData(
        model="sessions_app.SessionBridge",
        links={
            "sessions": ("from_session", "to_session"),
            "profiles": ("from_profile", "to_profile"),
            "anonymous_ids": ("from_anonymous_id", "to_anonymous_id"),
        },
        # The evidence names the other side's signals; the subject's own link is what is theirs.
        exclude=("evidence",),
        description="Links between the subject's sessions, devices and profiles, with their confidence.",
    ),
    PersonalData(
        model="sessions_app.UserSession",
        links={"sessions": "pk", "profiles": "profile", "anonymous_ids": "anonymous_id"},
        exclude=("token_hash", "previous_token_hash", "previous_token_valid_until", "token_rotated_at"),
        unlinked={
            "fingerprint": "a shared device's fingerprint does not make its other visitors' sessions the "
            "subject's; the subject's sessions are found by id, profile and anonymous id",
            "ip_truncated": "a /24 or /48 network shared by many people, not an identifier of one",
        },
        retention="sessions",
        retention_field="last_activity_at",
        description="Visits: device, browser, country, network (truncated), referrer, campaign, counters, consent.",
    ),
    PersonalData(
        model="sessions_app.DeviceFingerprint",
        links={"fingerprints": "pk", "profiles": "profile"},
        unlinked={"fingerprint_hash": "the row itself is found through its id in the subject's scope"},
        retention="fingerprints",
        retention_field="last_seen_at",
        description="Device fingerprints, stored only with fingerprinting consent.",
    ),
    PersonalData(
        model="sessions_app.ProfileAlias",
        links={"profiles": "profile"},
        encrypted=("identifier_encrypted",),
        unlinked={
            "identifier_hash": "an alias is the subject's through its profile (privacy.subjects resolves "
            "aliased identifiers into the scope's profiles)"
        },
        description="Earlier identifiers (anonymous ids, old user ids) tied to the profile by alias calls.",
    ),
    PersonalData(
        model="sessions_app.ProfileMerge",
        links={"profiles": ("source", "target")},
        unlinked={"bridge": "the link that caused the merge is erased through its own profiles and sessions"},
        description="The record of merges of the subject's profiles (what moved where), kept to undo them.",
    ),
    PersonalData(
        model="sessions_app.GlobalUserProfile",
        links={"profiles": ("pk", "merged_into"), "user_id_hashes": "user_id_hash"},
        encrypted=("user_id_encrypted",),
        description="The person across devices: user id (encrypted), traits, preferences.",
    ),
]
