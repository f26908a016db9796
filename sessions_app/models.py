"""Sessions, events, profiles, device fingerprints and the links between them.

Table names are those of the original system. Personal data is minimised at
the model level: no full IP address field exists, user ids live only as a keyed
hash (lookup) plus an encrypted value, and session tokens only as hashes.
"""

from __future__ import annotations

import uuid

from django.db import models
from django.db.models import Q

from config.api.json_numbers import JSONDecoder
from federation.models import Neuron


class GlobalUserProfile(models.Model):
    """A person across devices: every session and anonymous id known to be theirs."""

    public_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    neuron = models.ForeignKey(Neuron, on_delete=models.CASCADE, related_name="profiles")
    # HMAC-SHA256 of the user id under IDENTIFIER_HASH_KEY: lookups without the value.
    user_id_hash = models.CharField(max_length=64, null=True, blank=True)
    # The user id itself, Fernet-encrypted (MultiFernet, rotatable keys).
    user_id_encrypted = models.TextField(blank=True, default="")
    traits = models.JSONField(decoder=JSONDecoder, default=dict, blank=True)
    preferences = models.JSONField(decoder=JSONDecoder, default=dict, blank=True)
    merged_into = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.SET_NULL, related_name="merged_profiles"
    )
    first_seen_at = models.DateTimeField()
    last_seen_at = models.DateTimeField()
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        db_table = "global_user_profiles"
        constraints = [
            # One profile per user id per site; anonymous profiles have no hash.
            models.UniqueConstraint(
                fields=["neuron", "user_id_hash"],
                condition=Q(user_id_hash__isnull=False),
                name="uniq_profile_user_id_per_neuron",
            ),
        ]
        indexes = [models.Index(fields=["neuron", "last_seen_at"], name="profile_neuron_seen_idx")]

    def __str__(self) -> str:
        kind = "identified" if self.user_id_hash else "anonymous"
        return f"Profile {self.public_id} ({kind})"

    @property
    def is_identified(self) -> bool:
        return bool(self.user_id_hash)


class DeviceFingerprint(models.Model):
    """A browser/device fingerprint. Stored only with fingerprinting consent."""

    neuron = models.ForeignKey(Neuron, on_delete=models.CASCADE, related_name="fingerprints")
    fingerprint_hash = models.CharField(max_length=128)
    components = models.JSONField(decoder=JSONDecoder, default=dict, blank=True)
    profile = models.ForeignKey(
        GlobalUserProfile, null=True, blank=True, on_delete=models.SET_NULL, related_name="fingerprints"
    )
    first_seen_at = models.DateTimeField()
    last_seen_at = models.DateTimeField()
    seen_count = models.PositiveIntegerField(default=1)

    class Meta:
        db_table = "device_fingerprints"
        constraints = [
            models.UniqueConstraint(fields=["neuron", "fingerprint_hash"], name="uniq_fingerprint_per_neuron"),
        ]

    def __str__(self) -> str:
        return f"Fingerprint {self.fingerprint_hash[:12]}…"


class DeviceType(models.TextChoices):
    DESKTOP = "desktop", "Desktop"
    MOBILE = "mobile", "Mobile"
    TABLET = "tablet", "Tablet"
    BOT = "bot", "Bot"
    OTHER = "other", "Other"


class SessionChannel(models.TextChoices):
    API = "api", "Session API (token)"
    SEGMENT = "v1", "Segment-compatible /v1"


class EndReason(models.TextChoices):
    CLIENT = "client", "Ended by the client"
    TIMEOUT = "timeout", "Idle timeout"
    LIFETIME = "lifetime", "Absolute lifetime reached"
    ADMIN = "admin", "Ended by an operator"
    IDENTITY = "identity", "Replaced after a user change"


class UserSession(models.Model):
    """One visit. The browser holds a bearer token; only its SHA-256 is stored."""

    public_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    # Site and profile lookups use the composite indexes that lead with them (Meta.indexes).
    neuron = models.ForeignKey(Neuron, on_delete=models.CASCADE, related_name="sessions", db_index=False)
    # Unique through Meta.constraints: a unique field would also get a varchar_pattern_ops
    # index on PostgreSQL, for LIKE queries nobody runs, which every session update writes.
    token_hash = models.CharField(max_length=64)
    previous_token_hash = models.CharField(max_length=64, null=True, blank=True)
    previous_token_valid_until = models.DateTimeField(null=True, blank=True)
    token_rotated_at = models.DateTimeField()
    anonymous_id = models.CharField(max_length=128)
    profile = models.ForeignKey(
        GlobalUserProfile, null=True, blank=True, on_delete=models.SET_NULL, related_name="sessions", db_index=False
    )
    fingerprint = models.ForeignKey(
        DeviceFingerprint, null=True, blank=True, on_delete=models.SET_NULL, related_name="sessions"
    )

    # Request metadata, minimised: parsed user agent, country, truncated network.
    device_type = models.CharField(max_length=16, choices=DeviceType.choices, default=DeviceType.OTHER)
    browser = models.CharField(max_length=64, blank=True, default="")
    browser_version = models.CharField(max_length=32, blank=True, default="")
    os = models.CharField(max_length=64, blank=True, default="")
    os_version = models.CharField(max_length=32, blank=True, default="")
    country = models.CharField(max_length=2, blank=True, default="")
    ip_truncated = models.CharField(
        max_length=64, blank=True, default="", help_text="/24 (IPv4) or /48 (IPv6) network, never the address."
    )
    gpc = models.BooleanField(default=False, help_text="The browser sent Sec-GPC: 1.")

    referrer = models.CharField(max_length=2048, blank=True, default="")
    landing_page = models.CharField(max_length=2048, blank=True, default="")
    utm_source = models.CharField(max_length=200, blank=True, default="")
    utm_medium = models.CharField(max_length=200, blank=True, default="")
    utm_campaign = models.CharField(max_length=200, blank=True, default="")
    utm_term = models.CharField(max_length=200, blank=True, default="")
    utm_content = models.CharField(max_length=200, blank=True, default="")

    started_at = models.DateTimeField()
    last_activity_at = models.DateTimeField()
    # min(last activity + idle timeout, start + absolute lifetime): what the sweep reads.
    expires_at = models.DateTimeField()
    ended_at = models.DateTimeField(null=True, blank=True)
    end_reason = models.CharField(max_length=16, choices=EndReason.choices, blank=True, default="")
    # Who opened it: a session of the session API is reached with its token; /v1 (a public write key
    # and an anonymous id) only ever continues the sessions it opened itself.
    channel = models.CharField(max_length=8, choices=SessionChannel.choices, default=SessionChannel.API)
    identified_at = models.DateTimeField(
        null=True,
        blank=True,
        help_text="When a user signed in on this session (identify / alias): it is theirs by their own word, "
        "not only because its device is.",
    )

    event_count = models.PositiveIntegerField(default=0)
    page_view_count = models.PositiveIntegerField(default=0)
    interaction_count = models.PositiveIntegerField(default=0)
    conversion_count = models.PositiveIntegerField(default=0)
    # sessions_app.engagement.engagement_score of the counters above and the duration.
    engagement_score = models.FloatField(default=0.0)

    consent = models.JSONField(
        decoder=JSONDecoder, default=dict, blank=True, help_text="Snapshot of the current consent."
    )
    metadata = models.JSONField(decoder=JSONDecoder, default=dict, blank=True)

    class Meta:
        db_table = "user_sessions"
        indexes = [
            models.Index(fields=["previous_token_hash"], name="session_prev_token_idx"),
            models.Index(fields=["neuron", "anonymous_id", "-started_at"], name="session_anon_idx"),
            models.Index(fields=["neuron", "started_at"], name="session_neuron_started_idx"),
            models.Index(fields=["neuron", "last_activity_at"], name="session_neuron_activity_idx"),
            models.Index(fields=["profile", "-last_activity_at"], name="session_profile_idx"),
            # The expiry sweep scans only live sessions.
            models.Index(fields=["expires_at"], condition=Q(ended_at__isnull=True), name="session_live_expiry_idx"),
            # Sessions that ended lately (analytics: is an hour settled?); a live session's updates skip it.
            models.Index(fields=["ended_at"], condition=Q(ended_at__isnull=False), name="session_ended_idx"),
        ]
        constraints = [
            models.CheckConstraint(condition=Q(engagement_score__gte=0), name="session_engagement_nonneg"),
            models.UniqueConstraint(fields=["token_hash"], name="session_token_hash_uniq"),
        ]

    def __str__(self) -> str:
        return f"Session {self.public_id}"


class BehaviorEvent(models.Model):
    """One behaviour event. `message_id` is unique per neuron: retries are stored once."""

    # No single-column indexes on the foreign keys: the composite indexes below lead with each of
    # them, and every index is one more write per event on the ingestion path.
    neuron = models.ForeignKey(Neuron, on_delete=models.CASCADE, related_name="events", db_index=False)
    session = models.ForeignKey(UserSession, on_delete=models.CASCADE, related_name="events", db_index=False)
    profile = models.ForeignKey(
        GlobalUserProfile, null=True, blank=True, on_delete=models.SET_NULL, related_name="events", db_index=False
    )
    anonymous_id = models.CharField(max_length=128, blank=True, default="")
    event_type = models.CharField(max_length=32)
    event_name = models.CharField(max_length=200, blank=True, default="")
    properties = models.JSONField(decoder=JSONDecoder, default=dict, blank=True)
    page_url = models.CharField(max_length=2048, blank=True, default="")
    page_path = models.CharField(max_length=1024, blank=True, default="")
    page_title = models.CharField(max_length=512, blank=True, default="")
    referrer = models.CharField(max_length=2048, blank=True, default="")
    timestamp = models.DateTimeField(help_text="Client time corrected for clock skew.")
    received_at = models.DateTimeField()
    message_id = models.CharField(max_length=128)

    class Meta:
        db_table = "behavior_events"
        constraints = [
            models.UniqueConstraint(fields=["neuron", "message_id"], name="uniq_event_message_per_neuron"),
        ]
        indexes = [
            models.Index(fields=["neuron", "timestamp"], name="event_neuron_ts_idx"),
            models.Index(fields=["session", "timestamp"], name="event_session_ts_idx"),
            # "Has this session a conversion?" (analytics): the index answers without visiting the
            # session's other events.
            models.Index(fields=["session", "event_type"], name="event_session_type_idx"),
            models.Index(fields=["neuron", "event_type", "timestamp"], name="event_neuron_type_ts_idx"),
            models.Index(fields=["profile", "timestamp"], name="event_profile_ts_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.event_type}:{self.event_name or self.page_path}"


class BridgeMethod(models.TextChoices):
    USER_ID = "user_id", "Same user id"
    ALIAS = "alias", "Alias"
    FINGERPRINT = "fingerprint", "Same fingerprint"
    NETWORK = "network", "Same network and browser family"
    RESTORE = "restore", "Session restored"


class BridgeStatus(models.TextChoices):
    MERGED = "merged", "Merged"
    SUGGESTED = "suggested", "Suggested"
    REJECTED = "rejected", "Rejected"


class SessionBridge(models.Model):
    """A link between two sessions/devices/profiles with its confidence and evidence."""

    neuron = models.ForeignKey(Neuron, on_delete=models.CASCADE, related_name="bridges")
    from_session = models.ForeignKey(
        UserSession, null=True, blank=True, on_delete=models.CASCADE, related_name="bridges_out"
    )
    to_session = models.ForeignKey(
        UserSession, null=True, blank=True, on_delete=models.CASCADE, related_name="bridges_in"
    )
    from_profile = models.ForeignKey(
        GlobalUserProfile, null=True, blank=True, on_delete=models.CASCADE, related_name="bridges_out"
    )
    to_profile = models.ForeignKey(
        GlobalUserProfile, null=True, blank=True, on_delete=models.CASCADE, related_name="bridges_in"
    )
    from_anonymous_id = models.CharField(max_length=128, blank=True, default="")
    to_anonymous_id = models.CharField(max_length=128, blank=True, default="")
    method = models.CharField(max_length=16, choices=BridgeMethod.choices)
    confidence = models.FloatField()
    evidence = models.JSONField(decoder=JSONDecoder, default=dict, blank=True)
    status = models.CharField(max_length=16, choices=BridgeStatus.choices, default=BridgeStatus.SUGGESTED)
    created_at = models.DateTimeField(auto_now_add=True)
    decided_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        db_table = "session_bridge"
        constraints = [
            models.CheckConstraint(condition=Q(confidence__gte=0) & Q(confidence__lte=1), name="bridge_confidence_0_1"),
        ]
        indexes = [
            models.Index(fields=["neuron", "status", "-created_at"], name="bridge_neuron_status_idx"),
            models.Index(fields=["from_profile"], name="bridge_from_profile_idx"),
            models.Index(fields=["to_profile"], name="bridge_to_profile_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.method} link ({self.confidence:.2f}, {self.status})"


class ProfileAlias(models.Model):
    """An earlier identifier that an `alias` call tied to a profile (Segment semantics).

    `previousId` may be an anonymous id or an earlier user id; later lookups of
    either resolve to the profile. Stored like user ids: keyed hash + encrypted value.
    """

    neuron = models.ForeignKey(Neuron, on_delete=models.CASCADE, related_name="profile_aliases")
    profile = models.ForeignKey(GlobalUserProfile, on_delete=models.CASCADE, related_name="aliases")
    identifier_hash = models.CharField(max_length=64)
    identifier_encrypted = models.TextField(blank=True, default="")
    created_at = models.DateTimeField()

    class Meta:
        db_table = "profile_aliases"
        constraints = [
            models.UniqueConstraint(fields=["neuron", "identifier_hash"], name="uniq_alias_per_neuron"),
        ]

    def __str__(self) -> str:
        return f"Alias {self.identifier_hash[:12]}… -> profile {self.profile_id}"


class ProfileMerge(models.Model):
    """What one merge moved, so that it can be undone exactly.

    `moved` lists the primary keys that changed hands (sessions, fingerprints,
    aliases; events as [first, last] id ranges, which keeps large histories
    small). Events recorded on the moved sessions after the merge (id above
    `last_event_id`) go back with them. `source_state` and `target_before` /
    `target_after` are the two profiles' traits, preferences and first/last seen
    before and right after the merge.
    """

    neuron = models.ForeignKey(Neuron, on_delete=models.CASCADE, related_name="profile_merges")
    source = models.ForeignKey(GlobalUserProfile, on_delete=models.CASCADE, related_name="merges_out")
    target = models.ForeignKey(GlobalUserProfile, on_delete=models.CASCADE, related_name="merges_in")
    bridge = models.ForeignKey(SessionBridge, null=True, blank=True, on_delete=models.SET_NULL, related_name="merges")
    method = models.CharField(max_length=16, choices=BridgeMethod.choices)
    moved = models.JSONField(decoder=JSONDecoder, default=dict)
    last_event_id = models.BigIntegerField(default=0)
    source_state = models.JSONField(decoder=JSONDecoder, default=dict)
    target_before = models.JSONField(decoder=JSONDecoder, default=dict)
    target_after = models.JSONField(decoder=JSONDecoder, default=dict)
    actor = models.CharField(max_length=200, blank=True, default="")
    merged_at = models.DateTimeField()
    undone_at = models.DateTimeField(null=True, blank=True)
    undone_by = models.CharField(max_length=200, blank=True, default="")

    class Meta:
        db_table = "profile_merges"
        indexes = [
            models.Index(fields=["target", "-merged_at"], name="merge_target_idx"),
            models.Index(fields=["source"], name="merge_source_idx"),
        ]

    def __str__(self) -> str:
        state = "undone" if self.undone_at else "active"
        return f"Merge {self.source_id} -> {self.target_id} ({self.method}, {state})"


class AnonymousTrafficCount(models.Model):
    """Traffic from visitors without analytics consent, counted with nothing that identifies them.

    One row per neuron, day, path, device type and country; no session, no id,
    no timestamp finer than the day. Operators still see how much traffic came.
    """

    neuron = models.ForeignKey(Neuron, on_delete=models.CASCADE, related_name="anonymous_counts")
    day = models.DateField()
    path = models.CharField(max_length=1024, blank=True, default="")
    device_type = models.CharField(max_length=16, choices=DeviceType.choices, default=DeviceType.OTHER)
    country = models.CharField(max_length=2, blank=True, default="")
    page_views = models.PositiveBigIntegerField(default=0)
    events = models.PositiveBigIntegerField(default=0)

    class Meta:
        db_table = "anonymous_traffic_counts"
        constraints = [
            models.UniqueConstraint(
                fields=["neuron", "day", "path", "device_type", "country"], name="uniq_anonymous_count_bucket"
            ),
        ]
        indexes = [models.Index(fields=["neuron", "day"], name="anon_count_neuron_day_idx")]

    def __str__(self) -> str:
        return f"{self.day} {self.path} ({self.page_views} views)"
