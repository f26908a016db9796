"""Neuron admin: key rotation is audited; a site cannot be deleted row by row."""

from __future__ import annotations

import pytest
from django.contrib import admin
from django.contrib.messages import get_messages
from django.test import RequestFactory

from federation.models import Neuron
from federation.services import hash_key
from privacy.models import AuditEntry

pytestmark = pytest.mark.django_db


@pytest.fixture
def superuser(django_user_model):
    return django_user_model.objects.create_superuser("root", "root@example.com", "pw-root-123")


def test_rotating_a_secret_key_from_the_admin_is_audited(client, superuser, neuron):
    client.force_login(superuser)
    old_hash = neuron.secret_key_hash
    response = client.post("/admin/federation/neuron/", {"action": "rotate_secret", "_selected_action": [neuron.pk]})
    assert response.status_code == 302
    neuron.refresh_from_db()
    assert neuron.secret_key_hash != old_hash
    entry = AuditEntry.objects.get(action="neuron.secret.rotate")
    assert entry.actor == f"user:{superuser.pk}:root" and entry.subject == f"neuron:{neuron.slug}"
    assert entry.details["prefix"] == neuron.secret_key_prefix
    [message] = [str(m) for m in get_messages(response.wsgi_request)]
    new_key = message.rsplit(" ", 1)[-1]
    assert hash_key(new_key) == neuron.secret_key_hash  # the key is shown once to the operator...
    assert new_key not in entry.details.values()  # ...and the log keeps only its prefix
    # Messages live in the server-side session: the key never travels in a (signed, readable) cookie.
    assert all(new_key not in morsel.value for morsel in response.cookies.values())
    assert "messages" not in response.cookies


def test_a_site_cannot_be_deleted_from_the_admin(superuser, neuron):
    """Deleting a neuron would cascade through its visitors' data without erasure; deactivate it instead."""
    request = RequestFactory().get("/")
    request.user = superuser
    model_admin = admin.site._registry[Neuron]
    assert not model_admin.has_delete_permission(request, neuron)
    assert "delete_selected" not in model_admin.get_actions(request)
