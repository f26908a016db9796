"""OpenAPI descriptions of the product's authentication schemes."""

from drf_spectacular.extensions import OpenApiAuthenticationExtension


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
