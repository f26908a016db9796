from __future__ import annotations

from typing import Any

from rest_framework.exceptions import AuthenticationFailed
from rest_framework.permissions import BasePermission

from sessions_app.selectors import TokenMatch
from sessions_app.services import session_is_alive


class IsStaffOrSessionHolder(BasePermission):
    """Staff, or a visitor with the token of a live session (who may act only on their own data)."""

    def has_permission(self, request: Any, view: Any) -> bool:
        user = request.user
        if user is not None and user.is_authenticated and user.is_staff:
            return True
        match = request.auth
        if isinstance(match, TokenMatch):
            if not session_is_alive(match.session):
                raise AuthenticationFailed("This session has ended or expired; create or restore a session.")
            return True
        return False
