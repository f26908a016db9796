"""The hand-written session-creation validator agrees with the documented serializer."""

from __future__ import annotations

import json
import uuid

import pytest
from hypothesis import given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from config.api.errors import ValidationFailed
from sessions_app.apis import SessionCreateApi
from sessions_app.create_input import session_create_parse

Documented = SessionCreateApi.SessionCreateInput

junk = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**130),
    st.floats(allow_nan=False),
    st.lists(st.integers(), max_size=2),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
)
strings = st.one_of(
    st.text(max_size=12),
    st.sampled_from(["", "   ", " padded ", "a\x00b", "x" * 129, "y" * 2049, "z" * 201, "abcdefgh"]),
    junk,
)
uuids = st.one_of(
    st.uuids().map(str), st.uuids().map(lambda u: u.hex), st.integers(min_value=-5, max_value=2**128), strings
)
consent = st.dictionaries(
    st.sampled_from(["analytics", "marketing", "saleSharing", "trackingConsent", "spying"]),
    st.one_of(st.booleans(), junk),
    max_size=3,
)
utm = st.dictionaries(st.sampled_from(["source", "medium", "content", "bogus"]), strings, max_size=3)
fingerprint = st.fixed_dictionaries(
    {},
    optional={
        "hash": strings,
        "components": st.one_of(st.dictionaries(st.text(max_size=3), st.text(max_size=3), max_size=2), junk),
        "extra": st.integers(),
    },
)
restore = st.fixed_dictionaries({}, optional={"sessionId": uuids, "token": strings, "other": st.integers()})
payloads = st.fixed_dictionaries(
    {},
    optional={
        "anonymousId": strings,
        "consent": st.one_of(consent, junk),
        "referrer": strings,
        "landingPage": strings,
        "utm": st.one_of(utm, junk),
        "fingerprint": st.one_of(fingerprint, junk),
        "restore": st.one_of(restore, junk),
        "gpc": st.one_of(st.booleans(), junk),
        "isAdmin": st.booleans(),
    },
)


def _plain(value):
    return json.loads(json.dumps(value, default=str))


def _verdicts(payload):
    documented = Documented(data=payload)
    documented_ok = documented.is_valid()
    try:
        parsed = session_create_parse(payload)
    except ValidationFailed as error:
        return documented_ok, documented, False, error
    return documented_ok, documented, True, parsed


@hsettings(max_examples=600, deadline=None)
@given(payloads)
def test_same_verdict_and_values_as_the_documented_serializer(payload):
    documented_ok, documented, ok, parsed = _verdicts(payload)
    assert ok == documented_ok, (payload, documented.errors, parsed)
    if ok:
        assert _plain(parsed) == _plain(documented.validated_data)


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"consent": {"analytics": "yes"}}, "consent.analytics"),
        ({"consent": {"spying": True}}, "consent.spying"),
        ({"utm": {"source": ["a"]}}, "utm.source"),
        ({"restore": {"sessionId": "not-a-uuid", "token": "t"}}, "restore.sessionId"),
        ({"restore": {"sessionId": str(uuid.uuid4())}}, "restore.token"),
        ({"fingerprint": {"hash": "short"}}, "fingerprint.hash"),
        ({"fingerprint": {"hash": "abcdefgh", "components": {"k": "v" * 9000}}}, "fingerprint.components"),
        ({"anonymousId": "   "}, "anonymousId"),
        ({"gpc": "true"}, "gpc"),
        ({"isAdmin": True}, "isAdmin"),
    ],
)
def test_errors_name_the_dotted_field(payload, field):
    with pytest.raises(ValidationFailed) as caught:
        session_create_parse(payload)
    assert field in caught.value.errors


def test_body_that_is_not_an_object_is_an_error():
    with pytest.raises(ValidationFailed) as caught:
        session_create_parse([1, 2])
    assert "body" in caught.value.errors


def test_valid_body_comes_back_trimmed_and_typed():
    sid = uuid.uuid4()
    parsed = session_create_parse(
        {
            "anonymousId": "  visitor-1 ",
            "consent": {"analytics": True, "trackingConsent": False},
            "utm": {"source": " news "},
            "restore": {"sessionId": sid.hex, "token": "tok"},
            "fingerprint": {"hash": "abcdef0123456789", "components": {"tz": "UTC"}},
            "gpc": False,
        }
    )
    assert parsed == {
        "anonymousId": "visitor-1",
        "consent": {"analytics": True, "trackingConsent": False},
        "utm": {"source": "news"},
        "restore": {"sessionId": sid, "token": "tok"},
        "fingerprint": {"hash": "abcdef0123456789", "components": {"tz": "UTC"}},
        "gpc": False,
    }


def test_values_json_cannot_hold_are_errors_not_crashes():
    """Python code (not the JSON parser, which makes them floats) can build integers past 64 bits."""
    payload = {"fingerprint": {"hash": "abcdefgh", "components": {"n": 2**70}}}
    assert not Documented(data=payload).is_valid()
    with pytest.raises(ValidationFailed) as caught:
        session_create_parse(payload)
    assert "fingerprint.components" in caught.value.errors
