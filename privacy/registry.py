"""The personal-data registry: every table that holds personal data, declared once.

Each app lists its tables in `<app>/personal_data.py`:

    PERSONAL_DATA = [
        PersonalData(
            model="sessions_app.BehaviorEvent",
            links={"sessions": "session", "profiles": "profile", "anonymous_ids": "anonymous_id"},
            retention="events",
            description="Behaviour events: pages, clicks, conversions.",
        ),
    ]
    EXEMPT = {"auth.User": "operators' accounts, not visitors"}

`links` say how a row belongs to a data subject: for each kind of identifier in
the subject's scope (see privacy.subjects.SubjectScope) an ORM path, or a
tuple of paths, whose value is one of the subject's identifiers. A row is the
subject's when any path matches. Export reads those rows, erasure deletes them,
verification counts them again afterwards (it must find none).

`registry_check()` walks every installed model by introspection and reports
any model with a user-linked field (a relation to a registered table, or a
field named like an identifier) that is neither registered nor exempt with a
reason, and any registered relation or identifier field that no link covers.
A test runs it, so a new table cannot escape export or erasure.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import cache
from importlib import import_module
from importlib.util import find_spec

from django.apps import apps
from django.db import models

# The kinds of identifier a subject's scope holds (privacy.subjects.SubjectScope attributes).
SCOPE_KEYS = ("profiles", "sessions", "anonymous_ids", "fingerprints", "user_id_hashes")

# Field names that carry a person's identifier. A model with such a field, or with a
# relation to a registered table, is "user-linked" and must be registered or exempt.
IDENTIFIER_NAME = re.compile(
    r"(^|_)(anonymous_id|anon_id|user_id|userid|visitor_id|device_id|fingerprint|email|phone|ip|ip_address"
    r"|subject|identifier|profile|session)(_|$)"
)


@dataclass(frozen=True)
class PersonalData:
    model: str
    links: Mapping[str, str | tuple[str, ...]]
    description: str = ""
    # Never exported (secrets such as token hashes).
    exclude: tuple[str, ...] = ()
    # Fernet-encrypted fields: decrypted in exports, re-encrypted by rotate_encryption_keys.
    encrypted: tuple[str, ...] = ()
    # Fields that look user-linked but deliberately join no subject, each with the reason.
    unlinked: Mapping[str, str] = field(default_factory=dict)
    # The RetentionPolicy data type that bounds this table, and the date field it is measured from.
    retention: str | None = None
    retention_field: str | None = None
    # Dotted path of fn(scope) -> iterable of cache keys derived from the subject (deleted on erasure).
    cache_keys: str | None = None

    @property
    def model_class(self) -> type[models.Model]:
        return apps.get_model(self.model)

    def paths(self) -> list[tuple[str, str]]:
        out: list[tuple[str, str]] = []
        for key, value in self.links.items():
            for path in (value,) if isinstance(value, str) else value:
                out.append((key, path))
        return out


@dataclass(frozen=True)
class Registry:
    entries: tuple[PersonalData, ...]
    exempt: Mapping[str, str]
    encrypted_elsewhere: Mapping[str, tuple[str, ...]]

    def get(self, label: str) -> PersonalData | None:
        for entry in self.entries:
            if entry.model.lower() == label.lower():
                return entry
        return None

    def labels(self) -> set[str]:
        return {entry.model_class._meta.label for entry in self.entries}

    def erase_order(self) -> list[PersonalData]:
        """Tables that point at other registered tables come first (children before parents)."""
        labels = self.labels()
        remaining = list(self.entries)
        ordered: list[PersonalData] = []
        while remaining:
            for entry in remaining:
                blockers = {
                    e.model_class._meta.label
                    for e in remaining
                    if e is not entry and entry.model_class._meta.label in _relation_targets(e.model_class, labels)
                }
                if not blockers:
                    ordered.append(entry)
                    remaining.remove(entry)
                    break
            else:  # a cycle: keep declaration order for the rest
                ordered.extend(remaining)
                break
        return ordered

    def encrypted_fields(self) -> dict[str, tuple[str, ...]]:
        out = {entry.model: entry.encrypted for entry in self.entries if entry.encrypted}
        out.update(self.encrypted_elsewhere)
        return out


def _label(related: type[models.Model] | str) -> str:
    # Unresolved lazy references (isolated test apps) stay "app_label.ModelName" strings.
    if isinstance(related, str):
        app_label, _, name = related.partition(".")
        try:
            return apps.get_model(app_label, name)._meta.label
        except LookupError:
            return related
    return related._meta.label


def _relation_targets(model: type[models.Model], labels: set[str]) -> set[str]:
    return {
        f.related_model._meta.label
        for f in model._meta.get_fields()
        if f.is_relation and f.concrete and f.related_model is not None and f.related_model._meta.label in labels
    }


@cache
def personal_data_registry() -> Registry:
    """Collect PERSONAL_DATA, EXEMPT and ENCRYPTED from every installed app's personal_data module."""
    entries: list[PersonalData] = []
    exempt: dict[str, str] = {}
    encrypted: dict[str, tuple[str, ...]] = {}
    for config in apps.get_app_configs():
        name = f"{config.name}.personal_data"
        if find_spec(name) is None:
            continue
        module = import_module(name)
        entries.extend(getattr(module, "PERSONAL_DATA", []))
        exempt.update(getattr(module, "EXEMPT", {}))
        encrypted.update(getattr(module, "ENCRYPTED", {}))
    return Registry(entries=tuple(entries), exempt=exempt, encrypted_elsewhere=encrypted)


def _field_names(model: type[models.Model]) -> set[str]:
    return {f.name for f in model._meta.get_fields() if getattr(f, "concrete", False)}


def user_linked_fields(model: type[models.Model], registered: set[str]) -> list[str]:
    """Fields of `model` that tie a row to a person: relations to registered tables, identifier-named fields."""
    out = []
    for f in model._meta.get_fields():
        # Forward fields only: a reverse relation is the other table's field, checked there.
        if f.auto_created and not f.concrete:
            continue
        if f.is_relation and f.related_model is not None:
            if _label(f.related_model) in registered:
                out.append(f.name)
            continue
        if f.primary_key:
            continue
        if IDENTIFIER_NAME.search(f.name):
            out.append(f.name)
    return out


def _field_or_none(model: type[models.Model], name: str) -> models.Field | None:
    try:
        return model._meta.get_field(name)
    except Exception:
        return None


def _path_valid(model: type[models.Model], path: str) -> bool:
    if path == "pk":
        return True
    current = model
    parts = path.split("__")
    for index, part in enumerate(parts):
        try:
            f = current._meta.get_field(part)
        except Exception:
            return False
        if index < len(parts) - 1:
            if not f.is_relation or f.related_model is None:
                return False
            current = f.related_model
    return True


def registry_check(
    *, registry: Registry | None = None, candidates: Iterable[type[models.Model]] | None = None
) -> list[str]:
    """Every reason the registry does not cover the installed models; empty when it does."""
    registry = registry or personal_data_registry()
    problems: list[str] = []
    installed = {m._meta.label.lower(): m for m in apps.get_models(include_auto_created=False)}
    for entry in registry.entries:
        if entry.model.lower() not in installed:
            problems.append(f"{entry.model}: registered but not an installed model")
    for label in registry.exempt:
        if label.lower() not in installed:
            problems.append(f"{label}: exempt but not an installed model")
    if problems:
        return problems
    registered = registry.labels()
    for entry in registry.entries:
        model = entry.model_class
        names = _field_names(model) | {f.name for f in model._meta.many_to_many}
        for key, path in entry.paths():
            if key not in SCOPE_KEYS:
                problems.append(f"{entry.model}: unknown link kind {key!r} (use one of {', '.join(SCOPE_KEYS)})")
            if not _path_valid(model, path):
                problems.append(f"{entry.model}: link path {path!r} does not exist")
        if bool(entry.retention) != bool(entry.retention_field):
            problems.append(f"{entry.model}: retention and retention_field go together")
        if entry.retention_field and not isinstance(
            _field_or_none(model, entry.retention_field), models.DateTimeField | models.DateField
        ):
            problems.append(f"{entry.model}: retention_field {entry.retention_field!r} is not a date field")
        for name in (*entry.exclude, *entry.encrypted, *entry.unlinked):
            if name not in names:
                problems.append(f"{entry.model}: field {name!r} named in the registry does not exist")
        linked_heads = {path.split("__")[0] for _, path in entry.paths()}
        for name in user_linked_fields(model, registered):
            # An encrypted copy travels with its row, which a hash or id link finds.
            if name not in linked_heads and name not in entry.unlinked and name not in entry.encrypted:
                problems.append(
                    f"{entry.model}.{name}: user-linked field not covered by any link (add one, or list it in"
                    " `unlinked` with the reason)"
                )
        if not entry.links:
            problems.append(f"{entry.model}: no links, so no subject's rows can be found")
    models_to_check = list(candidates) if candidates is not None else list(installed.values())
    exempt = {label.lower() for label in registry.exempt}
    registered_lower = {label.lower() for label in registered}
    for model in models_to_check:
        label = model._meta.label
        if label.lower() in registered_lower or label.lower() in exempt:
            continue
        linked = user_linked_fields(model, registered)
        if linked:
            problems.append(
                f"{label}: has user-linked fields ({', '.join(linked)}) but is not in the personal-data registry"
                " (declare it in its app's personal_data.py, or exempt it with a reason)"
            )
    return problems
