from __future__ import annotations

import factory
from django.utils import timezone

from personalization.models import Archetype, ContentSlot, ContentVariant, Segment
from tests.federation.factories import NeuronFactory


class SegmentFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Segment

    neuron = factory.SubFactory(NeuronFactory)
    slug = factory.Sequence(lambda n: f"segment-{n}")
    name = factory.Sequence(lambda n: f"Segment {n}")
    rule = factory.LazyFunction(lambda: {"field": "device", "op": "eq", "value": "mobile"})


class ContentSlotFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = ContentSlot

    neuron = factory.SubFactory(NeuronFactory)
    key = factory.Sequence(lambda n: f"slot-{n}")


class ContentVariantFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = ContentVariant

    slot = factory.SubFactory(ContentSlotFactory)
    key = factory.Sequence(lambda n: f"variant-{n}")
    content = factory.LazyAttribute(lambda o: {"title": o.key})


class ArchetypeFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Archetype

    neuron = factory.SubFactory(NeuronFactory)
    key = factory.Sequence(lambda n: f"archetype-{n}")
    label = factory.LazyAttribute(lambda o: o.key.title())
    computed_at = factory.LazyFunction(timezone.now)
