"""Privileged admin actions go through audited services."""

from __future__ import annotations

import pytest

from privacy.models import AuditEntry, DataSubjectRequest
from sessions_app.models import GlobalUserProfile, UserSession
from tests.sessions_app.factories import BehaviorEventFactory, GlobalUserProfileFactory, UserSessionFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def admin_client(client, django_user_model):
    user = django_user_model.objects.create_superuser("root", "root@example.com", "pw-root-123")
    client.force_login(user)
    return client


def test_erasing_a_profile_from_the_admin_runs_an_audited_request(admin_client, django_capture_on_commit_callbacks):
    """The admin action files a data-subject request that erases and verifies."""
    profile = GlobalUserProfileFactory()
    session = UserSessionFactory(neuron=profile.neuron, profile=profile)
    BehaviorEventFactory(session=session, profile=profile)
    with django_capture_on_commit_callbacks(execute=True):
        response = admin_client.post(
            "/admin/sessions_app/globaluserprofile/",
            {"action": "erase_profiles", "_selected_action": [profile.pk]},
        )
    assert response.status_code == 302
    request = DataSubjectRequest.objects.get()
    assert request.kind == "erase" and request.status == "verified" and request.requested_by.startswith("user:")
    assert not GlobalUserProfile.objects.exists() and not UserSession.objects.exists()
    assert AuditEntry.objects.filter(action="dsar.erase.requested", actor=request.requested_by).exists()


def test_exporting_a_profile_from_the_admin_files_a_request(admin_client, django_capture_on_commit_callbacks):
    profile = GlobalUserProfileFactory()
    with django_capture_on_commit_callbacks(execute=True):
        admin_client.post(
            "/admin/sessions_app/globaluserprofile/",
            {"action": "export_profiles", "_selected_action": [profile.pk]},
        )
    request = DataSubjectRequest.objects.get()
    assert request.kind == "export" and request.status == "completed" and request.result_encrypted
