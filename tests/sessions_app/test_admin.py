"""Django admin: every action goes through its service, is audited, and reports refusals as messages."""

from __future__ import annotations

import csv
import io

import orjson
import pytest
from django.contrib import admin
from django.contrib.messages import get_messages
from django.test import RequestFactory

from privacy.models import AuditEntry, ConsentRecord, DataSubjectRequest
from sessions_app.models import BehaviorEvent, BridgeStatus, EndReason, SessionBridge, UserSession
from tests.sessions_app.factories import BehaviorEventFactory, GlobalUserProfileFactory, UserSessionFactory
from tests.sessions_app.test_identity_apis import merged, suggested  # noqa: F401  fixtures

pytestmark = pytest.mark.django_db

SESSIONS = "/admin/sessions_app/usersession/"
PROFILES = "/admin/sessions_app/globaluserprofile/"
BRIDGES = "/admin/sessions_app/sessionbridge/"


@pytest.fixture
def superuser(django_user_model):
    return django_user_model.objects.create_superuser("root", "root@example.com", "pw-root-123")


@pytest.fixture
def admin_client(client, superuser):
    client.force_login(superuser)
    return client


def act(client, url: str, action: str, objects, **extra):
    return client.post(url, {"action": action, "_selected_action": [o.pk for o in objects], **extra})


def shown(response) -> list[tuple[str, str]]:
    """The messages the admin queued for the next page: (level tag, text)."""
    return [(m.level_tag, str(m)) for m in get_messages(response.wsgi_request)]


def actions(name: str) -> list[str]:
    return list(AuditEntry.objects.filter(action=name).values_list("details", flat=True))


# --- sessions: end -----------------------------------------------------------------------------


def test_ending_sessions_goes_through_the_audited_bulk_service(admin_client, superuser):
    """Live sessions end as an operator action; the entry names the action, the ids and the counts."""
    live = UserSessionFactory.create_batch(2)
    ended = UserSessionFactory(ended_at=live[0].started_at, end_reason=EndReason.CLIENT)
    response = act(admin_client, SESSIONS, "end_sessions", [*live, ended])
    assert response.status_code == 302
    assert set(UserSession.objects.filter(end_reason=EndReason.ADMIN).values_list("pk", flat=True)) == {
        s.pk for s in live
    }
    ended.refresh_from_db()
    assert ended.end_reason == EndReason.CLIENT
    [entry] = AuditEntry.objects.filter(action="sessions.bulk_update")
    assert entry.actor == f"user:{superuser.pk}:root"
    assert entry.details["selection"]["adminAction"] == "end_sessions"
    assert sorted(entry.details["selection"]["sessionIds"]) == sorted(str(s.public_id) for s in [*live, ended])
    assert entry.details["matched"] == 3 and entry.details["changed"] == 2 and entry.details["end"] is True
    assert shown(response) == [("success", "Ended 2 of 3 selected session(s).")]


def test_ending_more_sessions_than_the_bound_is_an_error_message(admin_client, settings):
    """Above ADMIN_BULK_MAX_SESSIONS nothing ends, nothing is audited, and the page says why."""
    settings.ADMIN_BULK_MAX_SESSIONS = 1
    sessions = UserSessionFactory.create_batch(2)
    response = act(admin_client, SESSIONS, "end_sessions", sessions)
    assert response.status_code == 302
    assert not UserSession.objects.filter(ended_at__isnull=False).exists()
    assert not AuditEntry.objects.exists()
    [(level, text)] = shown(response)
    assert level == "error" and "at most 1" in text


def test_selecting_all_across_pages_audits_the_changelist_filters(admin_client):
    """With "select all" the entry records the changelist's filters instead of a list of ids."""
    gb = UserSessionFactory.create_batch(2, country="GB")
    UserSessionFactory(country="FR")
    response = admin_client.post(
        SESSIONS + "?country__exact=GB",
        {"action": "end_sessions", "_selected_action": [gb[0].pk], "select_across": "1"},
    )
    assert response.status_code == 302
    assert UserSession.objects.filter(end_reason=EndReason.ADMIN).count() == 2
    [details] = actions("sessions.bulk_update")
    assert details["selection"] == {
        "adminAction": "end_sessions",
        "changelistFilters": {"country__exact": "GB"},
        "selectAcross": True,
    }


# --- sessions: export --------------------------------------------------------------------------


def test_exporting_selected_sessions_as_csv_streams_them_and_is_audited(admin_client, superuser):
    """The admin's CSV is the admin API's export: same columns, streamed, audited with ids and count."""
    chosen = UserSessionFactory.create_batch(2, country="DE")
    UserSessionFactory(country="DE")
    response = act(admin_client, SESSIONS, "export_csv", chosen)
    assert response.status_code == 200 and response.streaming
    assert response["Content-Type"].startswith("text/csv")
    assert response["Content-Disposition"] == 'attachment; filename="sessions.csv"'
    rows = list(csv.DictReader(io.StringIO(b"".join(response.streaming_content).decode())))
    assert sorted(r["sessionId"] for r in rows) == sorted(str(s.public_id) for s in chosen)
    assert rows[0]["consent"] == "analytics;personalization"
    [entry] = AuditEntry.objects.filter(action="sessions.export")
    assert entry.actor == f"user:{superuser.pk}:root"
    assert entry.details["count"] == 2 and entry.details["format"] == "csv"
    assert entry.details["selection"]["adminAction"] == "export_csv"
    assert sorted(entry.details["selection"]["sessionIds"]) == sorted(str(s.public_id) for s in chosen)


def test_exporting_selected_sessions_as_json_is_a_valid_array(admin_client):
    chosen = UserSessionFactory.create_batch(3)
    response = act(admin_client, SESSIONS, "export_json", chosen[:2])
    body = orjson.loads(b"".join(response.streaming_content))
    assert [r["sessionId"] for r in body] == [str(s.public_id) for s in chosen[:2]]
    assert body[0]["consent"]["analytics"] is True
    assert actions("sessions.export")[0]["format"] == "json"


# --- sessions and profiles: erasure ------------------------------------------------------------


def test_erasing_from_the_sessions_list_files_one_verified_request_per_person(
    admin_client, superuser, django_capture_on_commit_callbacks
):
    """The action uses the admin API's erasure: a data-subject request per person, audited with the ids."""
    profile = GlobalUserProfileFactory()
    first = UserSessionFactory(neuron=profile.neuron, profile=profile)
    second = UserSessionFactory(neuron=profile.neuron, profile=profile)
    BehaviorEventFactory(session=first, profile=profile)
    kept = UserSessionFactory()
    with django_capture_on_commit_callbacks(execute=True):
        response = act(admin_client, SESSIONS, "erase_sessions", [first, second])
    assert response.status_code == 302
    request = DataSubjectRequest.objects.get()
    assert request.kind == "erase" and request.subject_type == "sessionId" and request.status == "verified"
    assert list(UserSession.objects.values_list("pk", flat=True)) == [kept.pk]
    assert not BehaviorEvent.objects.exists()
    [details] = actions("sessions.delete")
    assert details["matched"] == 2 and details["people"] == 1 and details["requests"] == [str(request.public_id)]
    assert details["selection"]["adminAction"] == "erase_sessions"
    assert AuditEntry.objects.filter(action="dsar.erase.requested", actor=f"user:{superuser.pk}:root").exists()
    [(level, text)] = shown(response)
    assert level == "success" and text.startswith("Filed 1 erasure request(s) for the 1 people behind 2 session(s)")


def test_erasing_more_sessions_than_the_bound_is_an_error_message(admin_client, settings):
    settings.ADMIN_DELETE_MAX_SESSIONS = 1
    sessions = UserSessionFactory.create_batch(2)
    response = act(admin_client, SESSIONS, "erase_sessions", sessions)
    assert response.status_code == 302
    assert UserSession.objects.count() == 2 and not DataSubjectRequest.objects.exists()
    assert shown(response)[0][0] == "error"


def test_erasing_a_profile_files_an_audited_request(admin_client, django_capture_on_commit_callbacks):
    """The profile action files a profileId erasure through privacy's dsar_submit."""
    profile = GlobalUserProfileFactory()
    UserSessionFactory(neuron=profile.neuron, profile=profile)
    with django_capture_on_commit_callbacks(execute=True):
        response = act(admin_client, PROFILES, "erase_profiles", [profile])
    request = DataSubjectRequest.objects.get()
    assert request.subject_type == "profileId" and request.status == "verified"
    assert not UserSession.objects.exists()
    assert shown(response) == [("success", "Queued the erasure of 1 item(s).")]


# --- profiles: split ---------------------------------------------------------------------------


def test_splitting_a_merged_profile_restores_its_parts_and_is_audited(admin_client, merged):  # noqa: F811
    """The split service of POST /profiles/{id}/split, from the changelist."""
    user, absorbed, merge = merged
    response = act(admin_client, PROFILES, "split_profiles", [user])
    assert response.status_code == 302
    merge.refresh_from_db()
    absorbed.refresh_from_db()
    assert merge.undone_at is not None and absorbed.merged_into_id is None
    [details] = actions("identity.profile.split")
    # Every merge still standing is undone, newest first (the fixture's user absorbed two profiles).
    assert merge.pk in details["merges"] and str(absorbed.public_id) in details["restoredProfiles"]
    assert shown(response) == [("success", "Split 1 item(s).")]


def test_splitting_a_never_merged_profile_is_an_error_message_not_a_500(admin_client):
    profile = GlobalUserProfileFactory()
    response = act(admin_client, PROFILES, "split_profiles", [profile])
    assert response.status_code == 302
    assert shown(response) == [("error", f"{profile}: This profile has no merge to undo.")]
    assert not AuditEntry.objects.exists()


# --- links: accept / reject --------------------------------------------------------------------


def test_accepting_a_suggested_link_merges_and_is_audited(admin_client, suggested):  # noqa: F811
    a, b, bridge = suggested
    response = act(admin_client, BRIDGES, "accept_links", [bridge])
    bridge.refresh_from_db()
    assert bridge.status == BridgeStatus.MERGED
    [details] = actions("identity.link.accept")
    assert details["previousStatus"] == "suggested"
    assert shown(response) == [("success", "Accepted 1 item(s).")]

    admin_client.get(BRIDGES)  # the changelist shows (and so consumes) the first messages
    again = act(admin_client, BRIDGES, "accept_links", [bridge])
    assert again.status_code == 302
    assert shown(again) == [("error", f"{bridge}: This link is already merged.")]
    assert len(actions("identity.link.accept")) == 1


def test_rejecting_links_keeps_profiles_apart_and_reports_each_refusal(admin_client, suggested):  # noqa: F811
    """One link rejected, one already rejected: a success and an error message, one audit entry."""
    a, b, bridge = suggested
    other = SessionBridge.objects.create(
        neuron=bridge.neuron,
        from_profile=a,
        to_profile=GlobalUserProfileFactory(neuron=bridge.neuron),
        method=bridge.method,
        confidence=0.5,
        status=BridgeStatus.REJECTED,
    )
    response = act(admin_client, BRIDGES, "reject_links", [bridge, other])
    bridge.refresh_from_db()
    a.refresh_from_db()
    assert bridge.status == BridgeStatus.REJECTED and a.merged_into_id is None
    assert sorted(shown(response)) == [
        ("error", f"{other}: This link is already rejected."),
        ("success", "Rejected 1 item(s)."),
    ]
    assert len(actions("identity.link.reject")) == 1


# --- read-only and no row-by-row deletion ------------------------------------------------------


@pytest.mark.parametrize("model", [UserSession, BehaviorEvent, ConsentRecord, AuditEntry])
def test_personal_data_and_logs_cannot_be_deleted_row_by_row(admin_client, superuser, model):
    """No delete permission, so no "delete selected" action: data leaves through erasure or retention."""
    model_admin = admin.site._registry[model]
    request = RequestFactory().get("/")
    request.user = superuser
    assert not model_admin.has_delete_permission(request)
    assert "delete_selected" not in model_admin.get_actions(request)


@pytest.mark.parametrize("model", [BehaviorEvent, ConsentRecord, AuditEntry])
def test_events_consent_records_and_audit_entries_are_read_only(admin_client, superuser, model):
    model_admin = admin.site._registry[model]
    request = RequestFactory().get("/")
    request.user = superuser
    assert not model_admin.has_add_permission(request)
    assert not model_admin.has_change_permission(request)


def test_an_event_page_cannot_be_saved(admin_client):
    """POSTing the change form of an event is refused."""
    event = BehaviorEventFactory(event_name="Signup")
    response = admin_client.post(f"/admin/sessions_app/behaviorevent/{event.pk}/change/", {"event_name": "Edited"})
    assert response.status_code == 403
    event.refresh_from_db()
    assert event.event_name == "Signup"
