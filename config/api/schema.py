"""OpenAPI descriptions of the product's authentication schemes, its problem-details errors,
paginated lists, a schema for DELETE bodies, and FilterSet filters as query parameters."""

import functools

from drf_spectacular.authentication import SessionScheme
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from drf_spectacular.openapi import AutoSchema
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, inline_serializer
from rest_framework import serializers

from config.api.problems import PROBLEM_CONTENT_TYPE


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


class Problem(serializers.Serializer):
    """An RFC 9457 problem-details document, as every error of the API is answered."""

    type = serializers.URLField(help_text="A URL naming the kind of problem.")
    title = serializers.CharField()
    status = serializers.IntegerField()
    detail = serializers.CharField()
    errors = serializers.DictField(
        required=False, help_text="Field (or `events[i].field`) to its messages, for invalid input."
    )


# The errors every operation can answer, by what it takes; an operation declares others
# (409, 422) with a description in its @extend_schema responses.
PROBLEM_DESCRIPTIONS = {
    "400": "Invalid request: `errors` names each bad field.",
    "401": "Missing or invalid credentials.",
    "403": "These credentials do not open this resource.",
    "404": "No such resource, or not one these credentials open.",
    "413": "The request body is too large.",
    "415": "The request body's content type is not accepted.",
    "429": "Too many requests: `Retry-After` says when to try again.",
}


def problem(description: str) -> OpenApiResponse:
    """An error answer an operation declares beside the common ones (ProductAutoSchema adds
    the problem-details body)."""
    return OpenApiResponse(description=description)


class ProductAutoSchema(AutoSchema):
    """drf-spectacular's AutoSchema, with the problem-details answers each operation can give
    documented beside its success: 400 for an operation with input, 401/403 where credentials
    are required, 404 for one with path parameters, 413/415 for one with a body, 429 where
    throttled. An error response an operation declares without a body gets the problem body."""

    def get_operation(self, path, path_regex, path_prefix, method, registry):
        operation = super().get_operation(path, path_regex, path_prefix, method, registry)
        if operation is None:
            return None
        responses = operation["responses"]
        for code in self._problem_codes(operation):
            responses.setdefault(code, {"description": PROBLEM_DESCRIPTIONS[code]})
        problem = {PROBLEM_CONTENT_TYPE: {"schema": self.resolve_serializer(Problem, "response").ref}}
        for code, response in responses.items():
            if code.startswith(("4", "5")) and not response.get("content"):
                response["content"] = problem
        return operation

    def get_operation_id(self) -> str:
        """A GET answering a list wrapper (`paginated`, `results_list`) is a list operation,
        named `..._list` as drf-spectacular names one answering `many=True`."""
        operation_id = super().get_operation_id()
        responses = self.get_response_serializers()
        success = responses.get(200) if isinstance(responses, dict) else responses
        if self.method == "GET" and getattr(success, "is_list_response", False):
            return operation_id.removesuffix("_retrieve") + "_list"
        return operation_id

    def _problem_codes(self, operation) -> list[str]:
        places = {parameter["in"] for parameter in operation.get("parameters", [])}
        has_body = "requestBody" in operation
        security = operation.get("security", [])
        codes = []
        if has_body or "query" in places or "path" in places:
            codes.append("400")
        if security and {} not in security:
            codes += ["401", "403"]
        if "path" in places:
            codes.append("404")
        if has_body:
            codes += ["413", "415"]
        if self.view.get_throttles():
            codes.append("429")
        return codes


@functools.cache
def paginated(serializer_class: type[serializers.Serializer]) -> serializers.Serializer:
    """The response of a keyset-paginated list of `serializer_class` (config.api.pagination)."""
    name = serializer_class.__name__.removesuffix("Output")
    wrapper = inline_serializer(
        name=f"Paginated{name}List",
        fields={
            "next": serializers.URLField(allow_null=True, help_text="The next page, or null on the last."),
            "previous": serializers.URLField(allow_null=True, help_text="The previous page, or null on the first."),
            "results": serializer_class(many=True),
        },
    )
    wrapper.is_list_response = True
    return wrapper


@functools.cache
def results_list(serializer_class: type[serializers.Serializer]) -> serializers.Serializer:
    """The response `{"results": [...]}` of an unpaginated list of `serializer_class`."""
    name = serializer_class.__name__.removesuffix("Output")
    wrapper = inline_serializer(name=f"{name}List", fields={"results": serializer_class(many=True)})
    wrapper.is_list_response = True
    return wrapper


class BodyOnDeleteSchema(ProductAutoSchema):
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
