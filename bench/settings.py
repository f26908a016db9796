"""Benchmark settings: the product's settings plus a bare baseline view, no throttling."""

from config.settings import *  # noqa: F403

ROOT_URLCONF = "bench.urls"
REST_FRAMEWORK = {
    **REST_FRAMEWORK,  # noqa: F405
    "DEFAULT_THROTTLE_RATES": {**REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"], "session_create": "1000000/s"},  # noqa: F405
}
DEBUG = False
LOGGING["root"]["level"] = "WARNING"  # noqa: F405
