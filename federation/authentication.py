from __future__ import annotations

from typing import Any

from rest_framework.authentication import BaseAuthentication
from rest_framework.exceptions import AuthenticationFailed

from federation.models import Neuron
from federation.selectors import neuron_get_by_publishable_key

SITE_KEY_HEADER = "HTTP_X_SITE_KEY"


class SiteKeyAuthentication(BaseAuthentication):
    """Browser calls that open a session: `X-Site-Key: <publishable key>`.

    `request.auth` becomes the Neuron; there is no user.
    """

    def authenticate(self, request: Any) -> tuple[Any, Neuron] | None:
        key = request.META.get(SITE_KEY_HEADER, "").strip()
        if not key:
            return None
        neuron = neuron_get_by_publishable_key(key=key)
        if neuron is None:
            raise AuthenticationFailed("Unknown or inactive site key.")
        from django.contrib.auth.models import AnonymousUser

        return AnonymousUser(), neuron

    def authenticate_header(self, request: Any) -> str:
        return 'SiteKey header="X-Site-Key"'
