"""OpenAPI descriptions of the product's authentication schemes, a schema for DELETE bodies, and
FilterSet filters as query parameters."""

from drf_spectacular.authentication import SessionScheme
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from drf_spectacular.openapi import AutoSchema
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter


class SiteKeyScheme(OpenApiAuthenticationExtension):
    target_class = "federation.authentication.SiteKeyAuthentication"
    name = "siteKey"

    def get_security_definition(self, auto_schema):
        return {"type": "apiKey", "in": "header", "name": "X-Site-Key"}


class SessionTokenScheme(OpenApiAuthenticationExtension):
    target_class = "sessions_app.authentication.SessionTokenAuthentication"
    name = "sessionToken"

    def get_security_definition(self, auto_schema):
        return {"type": "http", "scheme": "bearer", "description": "The session token from /create."}


class BeaconTokenScheme(OpenApiAuthenticationExtension):
    target_class = "sessions_app.authentication.BeaconTokenAuthentication"
    name = "beaconToken"

    def get_security_definition(self, auto_schema):
        # OpenAPI has no "token in the body" scheme; the description says where it really goes.
        return {
            "type": "http",
            "scheme": "bearer",
            "description": (
                "The session token for navigator.sendBeacon, which cannot set headers: sent as `token` "
                "in a text/plain JSON body, without an Authorization header."
            ),
        }


class StaffSessionScheme(SessionScheme):
    """The admin login cookie, as DRF's SessionAuthentication (it only adds a 401 challenge)."""

    target_class = "sessions_app.authentication.StaffSessionAuthentication"
    name = "staffSession"


class BodyOnDeleteSchema(AutoSchema):
    """drf-spectacular documents bodies for POST/PUT/PATCH only. A DELETE that takes a selection
    document (the admin delete) declares it here so the schema shows what the view parses."""

    def _get_request_body(self, direction="request"):
        if self.method != "DELETE":
            return super()._get_request_body(direction)
        self.method = "POST"  # the body logic is method-neutral past its guard
        try:
            return super()._get_request_body(direction)
        finally:
            self.method = "DELETE"


def filterset_parameters(filterset_class: type) -> list[OpenApiParameter]:
    """A django-filter FilterSet's filters as OpenAPI query parameters (for APIViews, which
    drf-spectacular's django-filter support does not cover): name, type, choices, help."""
    import django_filters

    parameters = []
    for name, flt in filterset_class.base_filters.items():
        if isinstance(flt, django_filters.BooleanFilter):
            kind = bool
        elif isinstance(flt, django_filters.NumberFilter):
            kind = float
        elif isinstance(flt, django_filters.IsoDateTimeFilter):
            kind = OpenApiTypes.DATETIME
        elif isinstance(flt, django_filters.DateFilter):
            kind = OpenApiTypes.DATE
        else:
            kind = str
        choices = flt.extra.get("choices")
        enum = [value for value, _ in choices] if isinstance(choices, list | tuple) else None
        many = isinstance(flt, django_filters.MultipleChoiceFilter)
        description = str(flt.extra.get("help_text") or flt.label or "")
        parameters.append(
            OpenApiParameter(
                name,
                kind,
                enum=enum,
                many=many or None,
                description=description + (" Repeat for several." if many else ""),
            )
        )
    return parameters
