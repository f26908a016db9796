"""`create_neuron`: one JSON object, the secret shown once and stored hashed."""

from __future__ import annotations

import json
from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from federation.models import Neuron
from federation.selectors import neuron_get_by_secret_key
from federation.services import hash_key

pytestmark = pytest.mark.django_db


def test_create_neuron_prints_keys_as_json_and_stores_only_the_secret_hash():
    out = StringIO()
    call_command("create_neuron", "finance-calc", "--name", "Finance calculators", stdout=out)
    data = json.loads(out.getvalue())
    assert set(data) == {"neuronId", "publishableKey", "secretKey"}
    neuron = Neuron.objects.get(slug="finance-calc")
    assert neuron.name == "Finance calculators"
    assert neuron.publishable_key == data["publishableKey"] and data["publishableKey"].startswith("pk_")
    assert neuron.secret_key_hash == hash_key(data["secretKey"])
    assert data["secretKey"] not in {neuron.secret_key_hash, neuron.secret_key_prefix}
    assert neuron_get_by_secret_key(key=data["secretKey"]) == neuron


def test_create_neuron_twice_is_an_error():
    call_command("create_neuron", "shop", "--name", "Shop", stdout=StringIO())
    with pytest.raises(CommandError, match="already exists"):
        call_command("create_neuron", "shop", "--name", "Shop again", stdout=StringIO())
    assert Neuron.objects.count() == 1


@pytest.mark.parametrize("slug", ["Not A Slug", "UPPER", "with/slash", ""])
def test_create_neuron_rejects_bad_slugs(slug):
    with pytest.raises(CommandError):
        call_command("create_neuron", slug, "--name", "X", stdout=StringIO())
    assert Neuron.objects.count() == 0
