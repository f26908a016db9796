from __future__ import annotations

from typing import Any

from django.contrib.auth.models import AnonymousUser
from rest_framework.authentication import BaseAuthentication, SessionAuthentication, get_authorization_header
from rest_framework.exceptions import AuthenticationFailed

from sessions_app.selectors import TokenMatch, session_get_by_token


def locks_session(request: Any) -> bool:
    """A view with `lock_session = True` runs in a transaction and has the session read with
    its row lock (ingestion: authentication doubles as the lock, one round trip fewer)."""
    view = (getattr(request, "parser_context", None) or {}).get("view")
    return bool(getattr(view, "lock_session", False))


class SessionTokenAuthentication(BaseAuthentication):
    """`Authorization: Bearer <session token>`. `request.auth` becomes a TokenMatch."""

    keyword = b"bearer"

    def authenticate(self, request: Any) -> tuple[Any, TokenMatch] | None:
        parts = get_authorization_header(request).split()
        if not parts or parts[0].lower() != self.keyword:
            return None
        if len(parts) != 2:
            raise AuthenticationFailed("Malformed Authorization header: expected 'Bearer <token>'.")
        try:
            token = parts[1].decode("ascii")
        except UnicodeDecodeError as exc:
            raise AuthenticationFailed("Malformed session token.") from exc
        match = session_get_by_token(token=token, lock=locks_session(request))
        if match is None:
            raise AuthenticationFailed("Invalid or expired session token.")
        return AnonymousUser(), match

    def authenticate_header(self, request: Any) -> str:
        return 'Bearer realm="session"'


class BeaconTokenAuthentication(BaseAuthentication):
    """The session token as `token` in a text/plain JSON body, for `navigator.sendBeacon`.

    A beacon (the unload delivery of the last batch) cannot set headers, and sends a
    string body as text/plain. Only that shape is accepted, and only without an
    Authorization header; the view drops `token` from the payload it validates.
    """

    body_field = "token"

    def authenticate(self, request: Any) -> tuple[Any, TokenMatch] | None:
        if get_authorization_header(request) or not (request.content_type or "").startswith("text/plain"):
            return None
        data = request.data  # parsed by the view's parsers: size-capped, malformed JSON is a 400
        if not isinstance(data, dict) or self.body_field not in data:
            return None
        token = data[self.body_field]
        if not isinstance(token, str):
            raise AuthenticationFailed("Malformed session token.")
        match = session_get_by_token(token=token, lock=locks_session(request))
        if match is None:
            raise AuthenticationFailed("Invalid or expired session token.")
        return AnonymousUser(), match

    def authenticate_header(self, request: Any) -> str:
        return 'Bearer realm="session"'


class StaffSessionAuthentication(SessionAuthentication):
    """The admin's login session (cookie + CSRF), answering 401 rather than 403 when absent.

    DRF's SessionAuthentication has no challenge, so an anonymous caller would get the same
    403 as a logged-in non-staff user; naming a challenge tells "log in" apart from "not allowed".
    """

    def authenticate_header(self, request: Any) -> str:
        return 'Session realm="admin", login="/admin/login/"'
