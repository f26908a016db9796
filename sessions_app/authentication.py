from __future__ import annotations

from typing import Any

from django.contrib.auth.models import AnonymousUser
from rest_framework.authentication import BaseAuthentication, get_authorization_header
from rest_framework.exceptions import AuthenticationFailed

from sessions_app.selectors import TokenMatch, session_get_by_token


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
        match = session_get_by_token(token=token)
        if match is None:
            raise AuthenticationFailed("Invalid or expired session token.")
        return AnonymousUser(), match

    def authenticate_header(self, request: Any) -> str:
        return 'Bearer realm="session"'
