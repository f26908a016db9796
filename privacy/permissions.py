from __future__ import annotations

from typing import Any

from rest_framework.exceptions import AuthenticationFailed
from rest_framework.permissions import BasePermission

from config.api.permissions import is_operator, staff_has_permissions
from sessions_app.selectors import TokenMatch
from sessions_app.services import session_is_alive


class IsStaffOrSessionHolder(BasePermission):
    """Staff holding the model permissions the view declares for the method (`required_permissions`,
    as for StaffWithPermissions), or a visitor with the token of a live session (who may act only on
    their own data, and needs no model permission)."""

    def has_permission(self, request: Any, view: Any) -> bool:
        if is_operator(request.user):
            return staff_has_permissions(request, view)
        match = request.auth
        if isinstance(match, TokenMatch):
            if not session_is_alive(match.session):
                raise AuthenticationFailed("This session has ended or expired; create or restore a session.")
            return True
        return False
