"""Content slots: targeting documents and the choice of a variant per slot, with its reason."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.utils import timezone

from config.api.errors import NotFound, ValidationFailed
from personalization.interests import category_normalize
from personalization.models import Archetype, ContentSlot, ContentVariant
from personalization.selectors import (
    interests_for_session,
    personalization_allowed,
    segments_for_session,
)
from sessions_app.models import UserSession

TARGETING_KEYS = ("segments", "archetypes", "interests")
_SLUG = re.compile(r"^[-a-zA-Z0-9_]{1,64}$")
MAX_SLOTS_PER_REQUEST = 20


def targeting_validate(targeting: Any, *, path: str = "targeting") -> None:
    """{"segments": [slug], "archetypes": [key], "interests": {category: minimum weight}}; all optional."""
    errors: dict[str, list[str]] = {}
    if not isinstance(targeting, dict):
        raise ValidationFailed(errors={path: ["Expected an object."]})
    for key in sorted(set(targeting) - set(TARGETING_KEYS)):
        errors[f"{path}.{key}"] = [f"Unknown key; expected one of {', '.join(TARGETING_KEYS)}."]
    for key in ("segments", "archetypes"):
        if key in targeting:
            value = targeting[key]
            if not isinstance(value, list) or not value or len(value) > 50:
                errors[f"{path}.{key}"] = ["Expected a list of 1 to 50 slugs."]
            else:
                for index, item in enumerate(value):
                    if not isinstance(item, str) or not _SLUG.match(item):
                        errors[f"{path}.{key}[{index}]"] = ["Expected a slug."]
    if "interests" in targeting:
        value = targeting["interests"]
        if not isinstance(value, dict) or not value or len(value) > 50:
            errors[f"{path}.interests"] = ["Expected an object of 1 to 50 {category: minimum weight}."]
        else:
            for category, minimum in value.items():
                if category_normalize(category) != category:
                    errors[f"{path}.interests.{category}"] = ["Categories are lower-case, without spaces."]
                elif isinstance(minimum, bool) or not isinstance(minimum, int | float) or minimum < 0:
                    errors[f"{path}.interests.{category}"] = ["Expected a non-negative number."]
    if errors:
        raise ValidationFailed("The targeting document is invalid.", errors=errors)


@dataclass(frozen=True)
class Reason:
    code: str  # targeted | default | no-consent | no-match
    detail: str
    matched: dict[str, Any] | None = None

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"code": self.code, "detail": self.detail}
        if self.matched:
            out["matched"] = self.matched
        return out


@dataclass(frozen=True)
class SlotChoice:
    slot: ContentSlot
    variant: ContentVariant | None
    reason: Reason


@dataclass(frozen=True)
class Audience:
    """What targeting reads about a visitor, computed once per request."""

    segments: frozenset[str]
    archetype: Archetype | None
    interests: dict[str, float]


def _match(variant: ContentVariant, audience: Audience) -> dict[str, Any] | None:
    """The criteria a variant matched, or None if one of its criteria fails."""
    targeting = variant.targeting or {}
    matched: dict[str, Any] = {}
    if targeting.get("segments"):
        hits = [slug for slug in targeting["segments"] if slug in audience.segments]
        if not hits:
            return None
        matched["segments"] = hits
    if targeting.get("archetypes"):
        if audience.archetype is None or audience.archetype.key not in targeting["archetypes"]:
            return None
        matched["archetype"] = audience.archetype.key
    if targeting.get("interests"):
        for category, minimum in targeting["interests"].items():
            if audience.interests.get(category, 0.0) < minimum:
                return None
        matched["interests"] = {c: round(audience.interests.get(c, 0.0), 4) for c in targeting["interests"]}
    return matched or None  # a variant without targeting is only ever a default


def _describe(matched: dict[str, Any]) -> str:
    parts = []
    if "segments" in matched:
        parts.append("in segment " + ", ".join(matched["segments"]))
    if "archetype" in matched:
        parts.append(f"archetype {matched['archetype']}")
    if "interests" in matched:
        parts.append("interest " + ", ".join(f"{c} {w:g}" for c, w in matched["interests"].items()))
    return "Targeted: " + "; ".join(parts) + "."


def content_choose(*, session: UserSession, slot_keys: Sequence[str], now: datetime | None = None) -> list[SlotChoice]:
    """The variant of each requested slot for this visitor, with the reason it was chosen.

    Unknown slots are a 404 naming them. Without personalization consent every
    slot gets its default and nothing about the visitor is read.
    """
    now = now or timezone.now()
    slots = {
        slot.key: slot
        for slot in ContentSlot.objects.filter(neuron_id=session.neuron_id, key__in=slot_keys).prefetch_related(
            "variants"
        )
    }
    unknown = [key for key in slot_keys if key not in slots]
    if unknown:
        raise NotFound(f"Unknown content slot(s): {', '.join(unknown)}.", errors={"slots": unknown})
    personalize = personalization_allowed(session)
    audience: Audience | None = None
    if personalize:
        view = interests_for_session(session=session, now=now)
        audience = Audience(
            segments=frozenset(segment.slug for segment in segments_for_session(session=session, now=now)),
            archetype=view.archetype,
            interests=view.profile if view.profile is not None else view.session,
        )
    choices = []
    for key in slot_keys:
        slot = slots[key]
        variants = [v for v in slot.variants.all() if v.is_active]
        default = next((v for v in variants if v.is_default), None)
        if not personalize:
            reason = Reason("no-consent", "Default content: the visitor has not consented to personalization.")
            choices.append(SlotChoice(slot, default, reason))
            continue
        assert audience is not None
        best: tuple[ContentVariant, dict[str, Any]] | None = None
        for variant in sorted(variants, key=lambda v: (-v.priority, v.key)):
            if variant.is_default:
                continue
            matched = _match(variant, audience)
            if matched is not None:
                best = (variant, matched)
                break
        if best is not None:
            choices.append(SlotChoice(slot, best[0], Reason("targeted", _describe(best[1]), best[1])))
        elif default is not None:
            choices.append(
                SlotChoice(slot, default, Reason("default", "Default content: no targeted variant matched."))
            )
        else:
            choices.append(
                SlotChoice(slot, None, Reason("no-match", "No variant matched and the slot has no default."))
            )
    return choices
