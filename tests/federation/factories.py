from __future__ import annotations

import factory

from federation.models import Neuron
from federation.services import PUBLISHABLE_PREFIX, hash_key


class NeuronFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Neuron

    slug = factory.Sequence(lambda n: f"site-{n}")
    name = factory.Sequence(lambda n: f"Site {n}")
    publishable_key = factory.Sequence(lambda n: f"{PUBLISHABLE_PREFIX}test{n:020d}")
    secret_key_hash = factory.LazyAttribute(lambda o: hash_key(f"sk_secret_{o.slug}"))
    secret_key_prefix = "sk_secret_"
