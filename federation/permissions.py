from __future__ import annotations

from typing import Any

from rest_framework.permissions import BasePermission

from federation.models import Neuron


class HasSiteKey(BasePermission):
    """The request was authenticated by a neuron's publishable key."""

    def has_permission(self, request: Any, view: Any) -> bool:
        return isinstance(request.auth, Neuron)
