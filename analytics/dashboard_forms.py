"""Query-string forms of the dashboard's report pages.

Every report page reads its parameters through one of these forms: a bad value is a
form error shown next to its field (the page still renders, with a 200), never a 500.
The range picker is shared: `24h` is the last 24 whole hours by the hour, the others
are whole days (today included) by the day; each is compared with the period of the
same length just before it.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from functools import cache
from typing import Any
from zoneinfo import ZoneInfo, available_timezones

from django import forms
from django.conf import settings
from django.http import QueryDict
from django.utils import timezone

from analytics import selectors
from config.api.errors import ValidationFailed
from federation.models import Neuron

RANGE_KEYS = ("24h", "7d", "30d", "90d")
RANGE_DAYS = {"7d": 7, "30d": 30, "90d": 90}
# Report parameter names (analytics.selectors.scope_build) -> this form's field names.
SCOPE_FIELDS = {"neuronId": "site", "from": "range", "to": "range", "tz": "range"}


def range_bounds(key: str, *, now: datetime, tz: str) -> tuple[date | datetime, date | datetime, str]:
    """(start, end, interval) for scope_build: whole hours for 24h, whole local days otherwise."""
    if key == "24h":
        end = now.replace(minute=0, second=0, microsecond=0) + timedelta(hours=1)
        return end - timedelta(hours=24), end, "hour"
    today = now.astimezone(ZoneInfo(tz)).date()
    return today - timedelta(days=RANGE_DAYS[key] - 1), today, "day"


@cache
def time_zone_choices() -> list[tuple[str, str]]:
    """Every IANA zone the system knows, the project's own first."""
    zones = sorted(available_timezones() - {settings.TIME_ZONE})
    return [(settings.TIME_ZONE, settings.TIME_ZONE), *((zone, zone) for zone in zones)]


class RangeForm(forms.Form):
    """The range picker every dashboard page with a report takes."""

    range = forms.ChoiceField(choices=[(k, k) for k in RANGE_KEYS], initial="7d")

    default_range = "7d"

    def __init__(self, data: QueryDict | dict[str, Any], *, now: datetime | None = None) -> None:
        self.now = now or timezone.now()
        data = data.copy()
        for name, field in self.base_fields.items():
            # A missing parameter takes its default, so the page shows what it reports on.
            initial = {"range": self.default_range, "tz": settings.TIME_ZONE}.get(name, field.initial)
            if name not in data and initial is not None:
                data[name] = str(initial)
        super().__init__(data)

    def kept_params(self, *exclude: str) -> list[tuple[str, str]]:
        """The submitted parameters other than `exclude`, for links and forms that change only those."""
        return [(k, v) for k, values in self.data.lists() if k not in exclude for v in values]


class PrivacyForm(RangeForm):
    """The privacy centre: consent rates of the sessions started in the last 24 hours or 7, 30 or 90 days
    (of every site; the requests, retention and audit panels are not by range)."""

    default_range = "30d"


class ReportForm(RangeForm):
    """The range, the site and the time zone (of days and hours) every report page takes."""

    site = forms.ChoiceField(required=False, label="Site")
    tz = forms.ChoiceField(choices=time_zone_choices, label="Time zone", required=False)

    def __init__(self, data: QueryDict | dict[str, Any], *, now: datetime | None = None) -> None:
        super().__init__(data, now=now)
        sites = list(Neuron.objects.order_by("slug").values_list("slug", "name"))
        self.fields["site"].choices = [("", "All sites"), *((slug, f"{name} ({slug})") for slug, name in sites)]
        self.scope: selectors.Scope | None = None
        self.interval = "day"

    @property
    def time_zone(self) -> str:
        """The chosen zone once the form is valid; the project's own until then."""
        return getattr(self, "cleaned_data", {}).get("tz") or settings.TIME_ZONE

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean()
        if self.errors:
            return cleaned
        start, end, self.interval = range_bounds(cleaned["range"], now=self.now, tz=self.time_zone)
        try:
            self.scope = selectors.scope_build(
                start=start, end=end, tz=self.time_zone, neuron_slug=cleaned.get("site") or None, now=self.now
            )
        except ValidationFailed as exc:
            for name, messages in exc.errors.items():
                for message in messages:
                    self.add_error(SCOPE_FIELDS.get(name), message)
        return cleaned


class OverviewForm(ReportForm):
    metric = forms.ChoiceField(choices=[(m, m) for m in selectors.TREND_METRICS], initial="sessions")


class StepsField(forms.Field):
    """Repeated `step` parameters, in order; empty inputs are dropped (the page offers spare rows)."""

    widget = forms.MultipleHiddenInput

    def to_python(self, value: Any) -> list[str]:
        values = value if isinstance(value, list | tuple) else [value] if value else []
        return [v.strip() for v in values if isinstance(v, str) and v.strip()]


class FunnelForm(ReportForm):
    step = StepsField(required=False, help_text="page:/path, event:type or event:type:name")
    window = forms.TypedChoiceField(
        coerce=int,
        initial=86400,
        label="Conversion window",
        choices=[
            (1800, "30 minutes"),
            (3600, "1 hour"),
            (86400, "1 day"),
            (7 * 86400, "7 days"),
            (30 * 86400, "30 days"),
        ],
    )

    MAX_STEPS = 10
    MAX_STEP_LENGTH = 1100

    def clean_step(self) -> list[selectors.FunnelStep]:
        values: list[str] = self.cleaned_data["step"]
        if not values:
            return []  # nothing asked yet: the page shows the empty form
        problems = []
        if len(values) < 2:
            problems.append("Give at least two steps.")
        if len(values) > self.MAX_STEPS:
            problems.append(f"At most {self.MAX_STEPS} steps.")
        for i, value in enumerate(values, start=1):
            if len(value) > self.MAX_STEP_LENGTH or "\x00" in value:
                problems.append(f"Step {i} is not a valid step.")
        if problems:
            raise forms.ValidationError(problems)
        try:
            return selectors.funnel_steps_from_strings(values)
        except ValidationFailed as exc:
            # The selector names steps step[0], step[1], …; the page numbers them from 1.
            raise forms.ValidationError(
                [
                    f"Step {int(key[5:-1]) + 1}: {message}"
                    for key, messages in exc.errors.items()
                    for message in messages
                ]
            ) from None

    def step_values(self, spare: int = 2) -> list[str]:
        """The step inputs to render: those submitted, plus spare empty rows (at least four in all)."""
        raw = self.fields["step"].to_python(self.data.getlist("step"))
        rows = raw + [""] * max(spare, 4 - len(raw))
        return rows[: self.MAX_STEPS]


class JourneyForm(ReportForm):
    page = forms.RegexField(
        regex=r"^/",
        max_length=1024,
        required=False,
        label="Page",
        error_messages={"invalid": "A page path starts with /."},
        help_text="Empty: the most viewed page of the range.",
    )
    direction = forms.ChoiceField(
        choices=[("next", "What comes after"), ("previous", "What leads to it")], initial="next"
    )
    depth = forms.IntegerField(min_value=1, max_value=6, initial=3, label="Steps")
    limit = forms.IntegerField(min_value=1, max_value=20, initial=5, label="Pages per step")


class RetentionForm(ReportForm):
    default_range = "30d"

    period = forms.ChoiceField(choices=[("day", "Daily cohorts"), ("week", "Weekly cohorts")], initial="day")
    periods = forms.IntegerField(min_value=1, max_value=60, initial=7, label="Periods shown")


class SegmentsForm(ReportForm):
    pass
