"""The personal-data registry covers every installed model (found by introspection)."""

from __future__ import annotations

from django.apps import apps
from django.db import models
from django.test.utils import isolate_apps

from privacy.registry import PersonalData, Registry, personal_data_registry, registry_check, user_linked_fields


def test_every_installed_model_with_user_linked_fields_is_registered_or_exempt():
    """Walks all installed models: a table holding personal data cannot escape export and erasure."""
    assert registry_check() == []


def test_registry_covers_the_session_tables():
    """The product's own personal-data tables are registered."""
    labels = personal_data_registry().labels()
    assert {
        "sessions_app.UserSession",
        "sessions_app.BehaviorEvent",
        "sessions_app.GlobalUserProfile",
        "sessions_app.DeviceFingerprint",
        "sessions_app.SessionBridge",
        "privacy.ConsentRecord",
    } <= labels


def test_every_exemption_states_a_reason():
    """An exemption without a reason is not an exemption."""
    for label, reason in personal_data_registry().exempt.items():
        assert len(reason) > 20, label


@isolate_apps("privacy")
def test_a_new_table_pointing_at_a_profile_is_caught():
    """A model with a foreign key to a registered table, not in the registry, is reported."""

    class InterestVector(models.Model):  # noqa: DJ008 (a throwaway model for the check)
        profile = models.ForeignKey("sessions_app.GlobalUserProfile", on_delete=models.CASCADE)
        weights = models.JSONField(default=dict)

        class Meta:
            app_label = "privacy"

    problems = registry_check(candidates=[InterestVector])
    assert len(problems) == 1
    assert "privacy.InterestVector" in problems[0] and "profile" in problems[0]


@isolate_apps("privacy")
def test_a_new_table_with_an_identifier_named_field_is_caught():
    """A model storing an anonymous id or an email in plain fields is reported."""

    class Signup(models.Model):  # noqa: DJ008 (a throwaway model for the check)
        anonymous_id = models.CharField(max_length=64)
        contact_email = models.EmailField()

        class Meta:
            app_label = "privacy"

    registered = personal_data_registry().labels()
    assert user_linked_fields(Signup, registered) == ["anonymous_id", "contact_email"]
    assert registry_check(candidates=[Signup])


@isolate_apps("privacy")
def test_aggregate_tables_without_person_fields_need_no_registration():
    """A rollup keyed by day and path is not personal data."""

    class DailyRollup(models.Model):  # noqa: DJ008 (a throwaway model for the check)
        neuron = models.ForeignKey("federation.Neuron", on_delete=models.CASCADE)
        day = models.DateField()
        path = models.CharField(max_length=200)
        views = models.IntegerField()

        class Meta:
            app_label = "privacy"

    assert registry_check(candidates=[DailyRollup]) == []


def test_a_registered_relation_without_a_link_is_caught():
    """Registering a table but forgetting one of its user-linked fields is reported."""
    real = personal_data_registry()
    broken = tuple(
        PersonalData(model=e.model, links={"sessions": "session"}, retention=e.retention)
        if e.model == "sessions_app.BehaviorEvent"
        else e
        for e in real.entries
    )
    problems = registry_check(registry=Registry(broken, real.exempt, real.encrypted_elsewhere), candidates=[])
    assert any("sessions_app.BehaviorEvent.profile" in p for p in problems)
    assert any("sessions_app.BehaviorEvent.anonymous_id" in p for p in problems)


def test_bad_link_paths_and_field_names_are_caught():
    """A typo in a link path or a field name is a registry error, not a silent miss."""
    real = personal_data_registry()
    extra = PersonalData(model="sessions_app.BehaviorEvent", links={"profiles": "profil"}, exclude=("nope",))
    problems = registry_check(
        registry=Registry((*real.entries, extra), real.exempt, real.encrypted_elsewhere), candidates=[]
    )
    assert any("'profil' does not exist" in p for p in problems)
    assert any("'nope'" in p for p in problems)


def test_erase_order_deletes_children_before_parents():
    """Events and bridges go before sessions, sessions before profiles."""
    order = [e.model for e in personal_data_registry().erase_order()]
    assert order.index("sessions_app.BehaviorEvent") < order.index("sessions_app.UserSession")
    assert order.index("sessions_app.UserSession") < order.index("sessions_app.GlobalUserProfile")
    assert order.index("privacy.ConsentRecord") < order.index("sessions_app.UserSession")
    assert len(order) == len(personal_data_registry().entries)
    assert all(apps.get_model(label) for label in order)
