"""Consent purposes, defaults and normalisation.

Purposes: analytics, personalization, marketing, fingerprinting, saleSharing.
The original client's `trackingConsent` and `marketingConsent` are accepted as
aliases of `analytics` and `marketing`.

CONSENT_MODE chooses the default for a purpose the visitor has not decided:
"opt-in" (GDPR, the default) means nothing is allowed until granted; "opt-out"
(CCPA) allows analytics, personalization, marketing and sale/sharing until
refused. Fingerprinting is never on by default in either mode. `Sec-GPC: 1`
always means a sale/sharing opt-out (and marketing off), whatever was sent.
"""

from __future__ import annotations

from collections.abc import Mapping

from django.conf import settings

PURPOSES: tuple[str, ...] = ("analytics", "personalization", "marketing", "fingerprinting", "saleSharing")
ALIASES: dict[str, str] = {"trackingConsent": "analytics", "marketingConsent": "marketing"}
OPT_OUT_DEFAULT_ON = frozenset({"analytics", "personalization", "marketing", "saleSharing"})


def consent_defaults() -> dict[str, bool]:
    opt_out = settings.CONSENT_MODE == "opt-out"
    return {p: (opt_out and p in OPT_OUT_DEFAULT_ON) for p in PURPOSES}


def consent_normalise(given: Mapping[str, bool] | None) -> dict[str, bool]:
    """The purposes a payload decided, aliases mapped to their purpose; unknown keys dropped."""
    out: dict[str, bool] = {}
    for key, value in (given or {}).items():
        purpose = ALIASES.get(key, key)
        if purpose in PURPOSES and isinstance(value, bool):
            out[purpose] = value
    return out


def consent_resolve(
    *,
    given: Mapping[str, bool] | None,
    previous: Mapping[str, bool] | None = None,
    gpc: bool = False,
) -> dict[str, bool]:
    """The effective consent: defaults, then what was known, then what was just given, then GPC."""
    result = consent_defaults()
    for source in (previous or {}, given or {}):
        for key, value in source.items():
            purpose = ALIASES.get(key, key)
            if purpose in result and isinstance(value, bool):
                result[purpose] = value
    if gpc:
        result["saleSharing"] = False
        result["marketing"] = False
    return result


def has_consent(consent: Mapping[str, bool] | None, purpose: str) -> bool:
    return bool((consent or {}).get(purpose, False))
