from __future__ import annotations

import uuid

import factory
from django.utils import timezone

from sessions_app.models import BehaviorEvent, DeviceFingerprint, GlobalUserProfile, UserSession
from sessions_app.services import session_expiry, token_hash
from tests.federation.factories import NeuronFactory


class UserSessionFactory(factory.django.DjangoModelFactory):
    """A session whose raw token is `factory_token` (for tests that need to authenticate)."""

    class Meta:
        model = UserSession

    class Params:
        factory_token = factory.LazyFunction(lambda: uuid.uuid4().hex + uuid.uuid4().hex)

    neuron = factory.SubFactory(NeuronFactory)
    token_hash = factory.LazyAttribute(lambda o: token_hash(o.factory_token))
    token_rotated_at = factory.LazyFunction(timezone.now)
    anonymous_id = factory.LazyFunction(lambda: str(uuid.uuid4()))
    device_type = "desktop"
    browser = "Chrome"
    os = "Windows"
    country = "GB"
    ip_truncated = "81.2.69.0"
    started_at = factory.LazyFunction(timezone.now)
    last_activity_at = factory.LazyAttribute(lambda o: o.started_at)
    expires_at = factory.LazyAttribute(
        lambda o: session_expiry(started_at=o.started_at, last_activity_at=o.last_activity_at)
    )
    consent = factory.LazyFunction(
        lambda: {
            "analytics": True,
            "personalization": True,
            "marketing": False,
            "fingerprinting": False,
            "saleSharing": False,
        }
    )


class GlobalUserProfileFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = GlobalUserProfile

    neuron = factory.SubFactory(NeuronFactory)
    first_seen_at = factory.LazyFunction(timezone.now)
    last_seen_at = factory.LazyFunction(timezone.now)


class BehaviorEventFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = BehaviorEvent

    session = factory.SubFactory(UserSessionFactory)
    neuron = factory.LazyAttribute(lambda o: o.session.neuron)
    anonymous_id = factory.LazyAttribute(lambda o: o.session.anonymous_id)
    event_type = "page_view"
    page_path = "/"
    timestamp = factory.LazyFunction(timezone.now)
    received_at = factory.LazyAttribute(lambda o: o.timestamp)
    message_id = factory.LazyFunction(lambda: str(uuid.uuid4()))


class DeviceFingerprintFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = DeviceFingerprint

    neuron = factory.SubFactory(NeuronFactory)
    fingerprint_hash = factory.LazyFunction(lambda: uuid.uuid4().hex)
    components = factory.LazyFunction(lambda: {"screen": "1920x1080", "tz": "Europe/London"})
    first_seen_at = factory.LazyFunction(timezone.now)
    last_seen_at = factory.LazyAttribute(lambda o: o.first_seen_at)
