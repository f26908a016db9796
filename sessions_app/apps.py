from django.apps import AppConfig


class SessionsAppConfig(AppConfig):
    name = "sessions_app"
    verbose_name = "Sessions, events and identity"

    def ready(self) -> None:
        import config.api.schema  # noqa: F401  registers the OpenAPI auth schemes
