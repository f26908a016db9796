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
