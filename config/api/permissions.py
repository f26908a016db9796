"""Staff endpoints: the Django model permissions matching what they do, as the admin checks them.

`is_staff` only lets a user sign in to the admin; what they may see or change there is decided
by their model permissions (a superuser has them all). The staff API follows the same rule: a
view names the permissions each method needs in `required_permissions`, either one sequence for
every method or a mapping from HTTP method to a sequence:

    class ExportApi(APIView):
        permission_classes = [StaffWithPermissions]
        required_permissions = {"GET": ["sessions_app.view_usersession"]}

HEAD needs what GET needs; OPTIONS (the endpoint's description) what any one of its methods
needs. A method the view does not handle needs only staff status: DRF answers 405 and shows
nothing. A handled method the view does not name is refused, and a view that names no
permissions at all is a configuration error: deny by default.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from django.core.exceptions import ImproperlyConfigured
from rest_framework.permissions import BasePermission


def is_operator(user: Any) -> bool:
    """An active, signed-in staff user: someone who may use the staff surfaces at all."""
    return bool(user is not None and user.is_authenticated and user.is_active and user.is_staff)


def declared_permissions(view: Any, method: str) -> list[tuple[str, ...]]:
    """The alternatives of permission sets that open `method` on `view` (the user needs every
    permission of one of them); an empty list when nothing does."""
    declared = getattr(view, "required_permissions", None)
    if declared is None:
        raise ImproperlyConfigured(f"{type(view).__name__} uses StaffWithPermissions without required_permissions.")
    if not isinstance(declared, Mapping):
        return [_checked(view, "", declared)]
    method = method.upper()
    if method == "HEAD" and "HEAD" not in declared:
        method = "GET"
    if method == "OPTIONS" and "OPTIONS" not in declared:
        return [_checked(view, key, perms) for key, perms in declared.items()]
    if method not in declared:
        return []
    return [_checked(view, method, declared[method])]


def _checked(view: Any, method: str, perms: Any) -> tuple[str, ...]:
    where = f"{type(view).__name__}.required_permissions" + (f"[{method!r}]" if method else "")
    if isinstance(perms, str) or not isinstance(perms, Sequence) or not perms:
        # A bare string would be read letter by letter, and an empty sequence would open the
        # method to every staff user: both are mistakes.
        raise ImproperlyConfigured(f"{where} must be a non-empty sequence of 'app_label.codename' strings.")
    return tuple(perms)


def staff_has_permissions(request: Any, view: Any) -> bool:
    """Whether the (staff) user holds what `view` declares for the request's method."""
    user = request.user
    handler = getattr(view, request.method.lower(), None) if request.method.lower() in view.http_method_names else None
    if handler is None:
        return True  # the view answers 405, whatever the permissions
    return any(user.has_perms(perms) for perms in declared_permissions(view, request.method))


class StaffWithPermissions(BasePermission):
    """An active staff user holding the model permissions the view declares for the method
    (superusers hold every permission). Anonymous callers are refused as by IsAdminUser: 401
    where the view's first authenticator names a challenge, 403 otherwise."""

    def has_permission(self, request: Any, view: Any) -> bool:
        return is_operator(request.user) and staff_has_permissions(request, view)
