"""Personalization: interest vectors, rule segments, archetypes, content slots, item co-occurrence.

Interest weights are stored "as of" a reference time; the weight at any later
time t is `weight × 2^(−(t − as_of) / half-life)`, so nothing has to be rewritten
as time passes (see personalization/interests.py for the arithmetic).
"""

from __future__ import annotations

from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import Q

from config.api.json_numbers import JSONDecoder
from federation.models import Neuron
from sessions_app.models import GlobalUserProfile, UserSession


class CategoryRule(models.Model):
    """A per-neuron mapping from a page path prefix to an interest category (longest prefix wins).

    A blank category marks pages that say nothing about interests (cart, checkout, account).
    """

    neuron = models.ForeignKey(Neuron, on_delete=models.CASCADE, related_name="category_rules")
    path_prefix = models.CharField(max_length=512, help_text="e.g. /shop/shoes/")
    category = models.CharField(max_length=64, blank=True, help_text="Blank: pages under this prefix are ignored.")

    class Meta:
        db_table = "personalization_category_rules"
        constraints = [
            models.UniqueConstraint(fields=["neuron", "path_prefix"], name="uniq_category_rule_prefix"),
        ]

    def __str__(self) -> str:
        return f"{self.path_prefix} → {self.category}"


class SessionInterest(models.Model):
    """The interest vector of one session."""

    session = models.OneToOneField(UserSession, on_delete=models.CASCADE, related_name="interest")
    weights = models.JSONField(
        decoder=JSONDecoder, default=dict, blank=True, help_text="{category: weight as of `as_of`}"
    )
    as_of = models.DateTimeField()
    event_count = models.PositiveIntegerField(default=0)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        db_table = "personalization_session_interests"

    def __str__(self) -> str:
        return f"Interests of session {self.session_id}"


class ProfileInterest(models.Model):
    """The interest vector and engagement of one profile, across all its sessions and devices."""

    profile = models.OneToOneField(GlobalUserProfile, on_delete=models.CASCADE, related_name="interest")
    weights = models.JSONField(
        decoder=JSONDecoder, default=dict, blank=True, help_text="{category: weight as of `as_of`}"
    )
    as_of = models.DateTimeField()
    event_count = models.PositiveIntegerField(default=0)
    # Recency-weighted mean of the profile's session engagement scores (0..100).
    engagement_score = models.FloatField(default=0.0)
    session_count = models.PositiveIntegerField(default=0)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        db_table = "personalization_profile_interests"
        constraints = [
            models.CheckConstraint(
                condition=Q(engagement_score__gte=0) & Q(engagement_score__lte=100), name="profile_engagement_0_100"
            ),
        ]

    def __str__(self) -> str:
        return f"Interests of profile {self.profile_id}"


class Segment(models.Model):
    """A rule segment: a JSON rule document (personalization/rules.py) over a session's facts."""

    neuron = models.ForeignKey(Neuron, on_delete=models.CASCADE, related_name="segments")
    slug = models.SlugField(max_length=64)
    name = models.CharField(max_length=200)
    description = models.TextField(blank=True, default="")
    rule = models.JSONField(decoder=JSONDecoder, help_text="all / any / not over conditions; validated on save.")
    is_active = models.BooleanField(default=True)
    # Filled by the materialization job.
    size = models.PositiveIntegerField(default=0, help_text="Member sessions at the last materialization.")
    materialized_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        db_table = "personalization_segments"
        ordering = ["neuron_id", "slug"]
        constraints = [models.UniqueConstraint(fields=["neuron", "slug"], name="uniq_segment_slug_per_neuron")]

    def __str__(self) -> str:
        return f"{self.name} ({self.slug})"


class SegmentMembership(models.Model):
    """A session that matched a segment at its last materialization."""

    segment = models.ForeignKey(Segment, on_delete=models.CASCADE, related_name="memberships")
    session = models.ForeignKey(UserSession, on_delete=models.CASCADE, related_name="segment_memberships")
    computed_at = models.DateTimeField()

    class Meta:
        db_table = "personalization_segment_memberships"
        constraints = [
            models.UniqueConstraint(fields=["segment", "session"], name="uniq_segment_membership"),
        ]

    def __str__(self) -> str:
        return f"{self.session_id} ∈ {self.segment_id}"


class Archetype(models.Model):
    """A cluster of profile interest vectors found by the k-means job, labelled by its top categories."""

    neuron = models.ForeignKey(Neuron, on_delete=models.CASCADE, related_name="archetypes")
    key = models.SlugField(max_length=64, help_text="Stable name derived from the top categories.")
    label = models.CharField(max_length=200)
    top_categories = models.JSONField(decoder=JSONDecoder, default=list, blank=True)
    centroid = models.JSONField(
        decoder=JSONDecoder, default=dict, blank=True, help_text="{category: weight} of the unit-length centre."
    )
    size = models.PositiveIntegerField(default=0)
    silhouette = models.FloatField(null=True, blank=True, help_text="Mean silhouette of the run that chose k.")
    computed_at = models.DateTimeField()

    class Meta:
        db_table = "personalization_archetypes"
        ordering = ["neuron_id", "-size"]
        constraints = [models.UniqueConstraint(fields=["neuron", "key"], name="uniq_archetype_key_per_neuron")]

    def __str__(self) -> str:
        return self.label


class ArchetypeMembership(models.Model):
    profile = models.OneToOneField(GlobalUserProfile, on_delete=models.CASCADE, related_name="archetype_membership")
    archetype = models.ForeignKey(Archetype, on_delete=models.CASCADE, related_name="memberships")
    distance = models.FloatField()

    class Meta:
        db_table = "personalization_archetype_memberships"

    def __str__(self) -> str:
        return f"{self.profile_id} ∈ {self.archetype_id}"


class ContentSlot(models.Model):
    """A place on the page (e.g. `hero`) whose content is chosen per visitor."""

    neuron = models.ForeignKey(Neuron, on_delete=models.CASCADE, related_name="content_slots")
    key = models.SlugField(max_length=64)
    description = models.CharField(max_length=200, blank=True, default="")

    class Meta:
        db_table = "personalization_content_slots"
        ordering = ["neuron_id", "key"]
        constraints = [models.UniqueConstraint(fields=["neuron", "key"], name="uniq_slot_key_per_neuron")]

    def __str__(self) -> str:
        return self.key


class ContentVariant(models.Model):
    """One candidate for a slot. Targeting: {"segments": [slug], "archetypes": [key], "interests": {cat: min}}.

    Every listed criterion must hold (any one of the listed segments, any one of
    the listed archetypes, every interest threshold). Among matching variants the
    highest priority wins; the default is served when none matches or without consent.
    """

    slot = models.ForeignKey(ContentSlot, on_delete=models.CASCADE, related_name="variants")
    key = models.SlugField(max_length=64)
    content = models.JSONField(decoder=JSONDecoder, default=dict, blank=True)
    targeting = models.JSONField(decoder=JSONDecoder, default=dict, blank=True)
    priority = models.IntegerField(default=0, validators=[MinValueValidator(-1000), MaxValueValidator(1000)])
    is_default = models.BooleanField(default=False)
    is_active = models.BooleanField(default=True)

    class Meta:
        db_table = "personalization_content_variants"
        ordering = ["slot_id", "-priority", "key"]
        constraints = [
            models.UniqueConstraint(fields=["slot", "key"], name="uniq_variant_key_per_slot"),
            models.UniqueConstraint(fields=["slot"], condition=Q(is_default=True), name="one_default_variant_per_slot"),
        ]

    def __str__(self) -> str:
        return f"{self.slot_id}:{self.key}"


class ItemKind(models.TextChoices):
    VIEWED = "viewed", "Viewed together"
    BOUGHT = "bought", "Bought together"


class ItemNeighbour(models.Model):
    """Item-to-item co-occurrence: `neighbour` was viewed/bought by visitors who had `item`."""

    neuron = models.ForeignKey(Neuron, on_delete=models.CASCADE, related_name="item_neighbours")
    kind = models.CharField(max_length=8, choices=ItemKind.choices)
    item = models.CharField(max_length=128)
    neighbour = models.CharField(max_length=128)
    score = models.FloatField(help_text="Co-occurrence count over √(count(item) · count(neighbour)).")
    together = models.PositiveIntegerField()
    computed_at = models.DateTimeField()

    class Meta:
        db_table = "personalization_item_neighbours"
        constraints = [
            models.UniqueConstraint(fields=["neuron", "kind", "item", "neighbour"], name="uniq_item_neighbour"),
        ]
        indexes = [models.Index(fields=["neuron", "kind", "item", "-score"], name="item_neighbour_lookup_idx")]

    def __str__(self) -> str:
        return f"{self.item} → {self.neighbour} ({self.kind})"


class ItemPopularity(models.Model):
    """How many visitors viewed/bought an item in the window: the fallback when co-occurrence has nothing."""

    neuron = models.ForeignKey(Neuron, on_delete=models.CASCADE, related_name="item_popularity")
    kind = models.CharField(max_length=8, choices=ItemKind.choices)
    item = models.CharField(max_length=128)
    visitors = models.PositiveIntegerField()
    computed_at = models.DateTimeField()

    class Meta:
        db_table = "personalization_item_popularity"
        constraints = [models.UniqueConstraint(fields=["neuron", "kind", "item"], name="uniq_item_popularity")]
        indexes = [models.Index(fields=["neuron", "kind", "-visitors"], name="item_popularity_rank_idx")]

    def __str__(self) -> str:
        return f"{self.item} ({self.kind}, {self.visitors})"
