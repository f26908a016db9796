from __future__ import annotations

from typing import Any

from rest_framework.exceptions import AuthenticationFailed
from rest_framework.permissions import BasePermission

from config.api.errors import NotFound
from sessions_app.selectors import TokenMatch
from sessions_app.services import session_is_alive


class IsSessionTokenHolder(BasePermission):
    """The bearer token opens the session named in the URL, and only that one.

    A token for another session gets the same 404 as a missing session (no
    oracle for which ids exist). A token of an ended or expired session is 401.
    """

    allow_ended: bool = False

    def has_permission(self, request: Any, view: Any) -> bool:
        match = request.auth
        if not isinstance(match, TokenMatch):
            return False
        if match.session.public_id != view.kwargs.get("session_id"):
            raise NotFound("No such session.")
        if not self.allow_ended and not session_is_alive(match.session):
            raise AuthenticationFailed("This session has ended or expired; create or restore a session.")
        return True


class IsSessionTokenHolderEvenEnded(IsSessionTokenHolder):
    """As IsSessionTokenHolder, but an ended session still opens: the service decides
    (events within the grace period after the end are accepted, later ones are 409)."""

    allow_ended = True
