"""Settings for the Session + Personalization Engine.

One module, driven by the environment. With no variable set it runs on the
embedded default (SQLite, local-memory cache, in-memory channel layer, eager
Celery). `DATABASE_URL` and `REDIS_URL` switch to PostgreSQL and Redis;
`DJANGO_ENV=production` demands real secrets and passes `check --deploy`.
"""

from __future__ import annotations

import base64
import hashlib
import os
import sys
import warnings
from datetime import timedelta
from pathlib import Path

import dj_database_url
from corsheaders.defaults import default_headers as corsheaders_default_headers
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent


# ---------------------------------------------------------------------------
# Environment helpers
# ---------------------------------------------------------------------------


def env_str(name: str, default: str = "") -> str:
    return os.environ.get(name, default).strip()


def env_bool(name: str, default: bool = False) -> bool:
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    value = raw.strip().lower()
    if value in {"1", "true", "yes", "on"}:
        return True
    if value in {"0", "false", "no", "off"}:
        return False
    raise ImproperlyConfigured(f"{name} must be a boolean, got {raw!r}")


def env_int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        return int(raw)
    except ValueError as exc:
        raise ImproperlyConfigured(f"{name} must be an integer, got {raw!r}") from exc


def env_float(name: str, default: float) -> float:
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        return float(raw)
    except ValueError as exc:
        raise ImproperlyConfigured(f"{name} must be a number, got {raw!r}") from exc


def env_list(name: str, default: list[str] | None = None) -> list[str]:
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return list(default or [])
    return [item.strip() for item in raw.split(",") if item.strip()]


# ---------------------------------------------------------------------------
# Mode and secrets
# ---------------------------------------------------------------------------

DJANGO_ENV = env_str("DJANGO_ENV", "development").lower()
PRODUCTION = DJANGO_ENV == "production"
TESTING = "pytest" in sys.modules or env_bool("TESTING")

if PRODUCTION:
    _missing = [
        name
        for name in ("SECRET_KEY", "FIELD_ENCRYPTION_KEYS", "IDENTIFIER_HASH_KEY", "ALLOWED_HOSTS")
        if not env_str(name)
    ]
    if _missing:
        raise ImproperlyConfigured("DJANGO_ENV=production refuses to start without: " + ", ".join(_missing))
    SECRET_KEY = env_str("SECRET_KEY")
    if len(SECRET_KEY) < 50 or len(set(SECRET_KEY)) < 5 or SECRET_KEY.startswith("django-insecure"):
        raise ImproperlyConfigured("SECRET_KEY must be at least 50 random characters in production")
else:
    # A fixed development key: the embedded default must work with no variable set.
    SECRET_KEY = env_str("SECRET_KEY", "django-insecure-development-only-key-never-use-in-production-0000")

DEBUG = env_bool("DEBUG", default=not PRODUCTION and not TESTING)
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["127.0.0.1", "localhost", "testserver", "[::1]"])
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS")


def _derive_dev_key(purpose: str) -> bytes:
    return hashlib.sha256(f"{purpose}:{SECRET_KEY}".encode()).digest()


# Identifiers (user ids, emails) are stored encrypted with MultiFernet: the first
# key encrypts, every key decrypts, so keys rotate without downtime.
FIELD_ENCRYPTION_KEYS = env_list("FIELD_ENCRYPTION_KEYS")
if not FIELD_ENCRYPTION_KEYS:
    if not TESTING:
        warnings.warn(
            "FIELD_ENCRYPTION_KEYS is not set: using a development key derived from SECRET_KEY",
            stacklevel=1,
        )
    FIELD_ENCRYPTION_KEYS = [base64.urlsafe_b64encode(_derive_dev_key("field-encryption")).decode()]

# Key for the HMAC that turns identifiers into lookup hashes (separate from SECRET_KEY so
# rotating SECRET_KEY does not orphan every stored hash).
IDENTIFIER_HASH_KEY = env_str("IDENTIFIER_HASH_KEY") or _derive_dev_key("identifier-hash").hex()


# ---------------------------------------------------------------------------
# Applications
# ---------------------------------------------------------------------------

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "django_filters",
    "corsheaders",
    "drf_spectacular",
    "django_celery_beat",
    "channels",
    "federation",
    "sessions_app",
    "privacy",
    "personalization",
    "analytics",
]

MIDDLEWARE = [
    "corsheaders.middleware.CorsMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "config.urls"
WSGI_APPLICATION = "config.wsgi.application"
ASGI_APPLICATION = "config.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]


# ---------------------------------------------------------------------------
# Database
# ---------------------------------------------------------------------------

DATABASE_URL = env_str("DATABASE_URL")
if DATABASE_URL:
    _db = dj_database_url.parse(DATABASE_URL, conn_health_checks=True)
    if env_bool("DATABASE_POOL"):
        # Django's psycopg pool: one shared pool per process. Best under ASGI, where
        # persistent connections would open one connection per request thread.
        _db["CONN_MAX_AGE"] = 0
        _db.setdefault("OPTIONS", {})["pool"] = {
            "min_size": env_int("DATABASE_POOL_MIN", 2),
            "max_size": env_int("DATABASE_POOL_MAX", 10),
        }
    else:
        _db["CONN_MAX_AGE"] = env_int("DATABASE_CONN_MAX_AGE", 60)
    if _db["ENGINE"] == "django.db.backends.postgresql":
        # Django's backend, with a health check that asks the server only when its socket
        # shows a hang-up or a message (config/postgresql/base.py).
        _db["ENGINE"] = "config.postgresql"
        # The planner's cost of a random page read, relative to a sequential one (PostgreSQL's
        # default, 4, is for spinning disks). On SSDs, or with the data in memory, 1.1: index
        # lookups are then preferred where they are cheaper, e.g. joining a few hours of events
        # to their sessions instead of scanning every session.
        _pg_options = f"-c random_page_cost={float(env_str('DATABASE_RANDOM_PAGE_COST') or 1.1)}"
        _db.setdefault("OPTIONS", {})["options"] = _pg_options
        # Server-side prepared statements only where the code asks for them
        # (sessions_app.ingestion.server_cursor(prepared=True)): psycopg prepares a statement
        # by itself after this many runs on one connection, i.e. never.
        _db["OPTIONS"]["prepare_threshold"] = 2**31 - 1
    DATABASES = {"default": _db}
else:
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": env_str("SQLITE_PATH") or str(BASE_DIR / "db.sqlite3"),
            # WAL lets the dashboard read while ingestion writes; IMMEDIATE avoids
            # "database is locked" upgrades from read to write locks.
            "OPTIONS": {
                "transaction_mode": "IMMEDIATE",
                "timeout": 20,
                "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
            },
        }
    }

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"


# ---------------------------------------------------------------------------
# Cache, channel layer, Celery
# ---------------------------------------------------------------------------

REDIS_URL = env_str("REDIS_URL")

if REDIS_URL:
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": REDIS_URL,
            "KEY_PREFIX": env_str("CACHE_KEY_PREFIX", "spe"),
            # A Redis outage must degrade live features, not hang requests.
            "OPTIONS": {"socket_connect_timeout": 0.5, "socket_timeout": 0.5},
        }
    }
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {
                # redis-py's asyncio client times reads out after 5 s by default, exactly
                # channels-redis's blocking-pop timeout: an idle socket's consumer would die
                # with "Timeout reading". Reads may block longer than that pop; a dead Redis
                # is still noticed.
                "hosts": [{"address": REDIS_URL, "socket_timeout": 15, "socket_connect_timeout": 2}],
                "prefix": env_str("CACHE_KEY_PREFIX", "spe") + ":ws",
            },
        }
    }
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}

_broker = env_str("CELERY_BROKER_URL") or REDIS_URL
# Without a broker, tasks run in-process: the embedded default needs no worker. The
# in-memory transport stands in so nothing ever reaches for a default AMQP server.
CELERY_BROKER_URL = _broker or "memory://"
CELERY_TASK_ALWAYS_EAGER = env_bool("CELERY_TASK_ALWAYS_EAGER", default=not _broker)
CELERY_TASK_EAGER_PROPAGATES = True
CELERY_RESULT_BACKEND = None
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_TIME_LIMIT = 300
CELERY_TASK_SOFT_TIME_LIMIT = 240
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_BEAT_SCHEDULER = "django_celery_beat.schedulers:DatabaseScheduler"
CELERY_TIMEZONE = "UTC"


# ---------------------------------------------------------------------------
# Auth, i18n, static
# ---------------------------------------------------------------------------

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
if TESTING:
    PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]

LOGIN_URL = "admin:login"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
# Browser libraries come from the npm registry (package.json + lockfile, `npm ci` in the
# Makefile) and are served from node_modules: nothing vendored into the tree, no CDN.
# Folders not there yet (before the first install) are left out rather than warned about.
STATICFILES_DIRS = [
    entry
    for entry in [BASE_DIR / "static", ("vendor/echarts", BASE_DIR / "node_modules" / "echarts" / "dist")]
    if (entry[1] if isinstance(entry, tuple) else entry).is_dir()
]
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": (
            "whitenoise.storage.CompressedManifestStaticFilesStorage"
            if PRODUCTION
            else "django.contrib.staticfiles.storage.StaticFilesStorage"
        )
    },
}
# Outside production, serve straight from the app/static folders: no collectstatic step.
WHITENOISE_USE_FINDERS = not PRODUCTION
WHITENOISE_AUTOREFRESH = DEBUG
if not PRODUCTION:  # STATIC_ROOT is filled by collectstatic only in production
    warnings.filterwarnings("ignore", message="No directory at")

# Largest request body accepted anywhere; the API parser answers 413 above it.
DATA_UPLOAD_MAX_MEMORY_SIZE = env_int("DATA_UPLOAD_MAX_MEMORY_SIZE", 1024 * 1024)
API_MAX_BODY_BYTES = env_int("API_MAX_BODY_BYTES", 64 * 1024)


# ---------------------------------------------------------------------------
# Security (production)
# ---------------------------------------------------------------------------

SESSION_COOKIE_HTTPONLY = True
# Admin messages (a new site's secret key, shown once) stay in the server-side session: the default
# cookie storage would send them to the browser in a signed but readable cookie.
MESSAGE_STORAGE = "django.contrib.messages.storage.session.SessionStorage"
CSRF_COOKIE_HTTPONLY = False
# Problem details for a CSRF failure under the API prefixes (HTML elsewhere).
CSRF_FAILURE_VIEW = "config.views.csrf_failure"
X_FRAME_OPTIONS = "DENY"
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"

if PRODUCTION:
    SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", True)
    # Health probes come from the load balancer over plain HTTP.
    SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^readyz$"]
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 31536000)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", True)
    SECURE_HSTS_PRELOAD = env_bool("SECURE_HSTS_PRELOAD", True)
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True


# ---------------------------------------------------------------------------
# Operator dashboard and admin API
# ---------------------------------------------------------------------------

# Most sessions one admin bulk update may change; larger selections must be narrowed
# (a dry run counts any size).
ADMIN_BULK_MAX_SESSIONS = env_int("ADMIN_BULK_MAX_SESSIONS", 10_000)
# Most sessions one admin delete may erase. Lower than the bulk update's: each person
# behind the selection becomes a data-subject erasure request run by Celery.
ADMIN_DELETE_MAX_SESSIONS = env_int("ADMIN_DELETE_MAX_SESSIONS", 1_000)

# The live dashboard: one snapshot per tick for every connected operator (target: an
# accepted event on screen within 2 s). The lease lets one process of many broadcast.
DASHBOARD_TICK_SECONDS = env_float("DASHBOARD_TICK_SECONDS", 1.0)
DASHBOARD_TICK_LEASE_SECONDS = env_int("DASHBOARD_TICK_LEASE_SECONDS", 5)


# ---------------------------------------------------------------------------
# REST framework and OpenAPI
# ---------------------------------------------------------------------------

REST_FRAMEWORK = {
    "DEFAULT_RENDERER_CLASSES": ["config.api.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["config.api.parsers.JSONParser"],
    "DEFAULT_AUTHENTICATION_CLASSES": ["rest_framework.authentication.SessionAuthentication"],
    # Deny by default: a view that forgets its permission opens nothing.
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAdminUser"],
    "DEFAULT_FILTER_BACKENDS": ["django_filters.rest_framework.DjangoFilterBackend"],
    "DEFAULT_SCHEMA_CLASS": "config.api.schema.ProductAutoSchema",
    "EXCEPTION_HANDLER": "config.api.exceptions.problem_exception_handler",
    "DEFAULT_THROTTLE_RATES": {
        "session_create": env_str("SESSION_CREATE_RATE", "120/min"),
    },
    # Client address for throttles: REMOTE_ADDR unless TRUSTED_PROXY_COUNT says
    # how many reverse proxies append to X-Forwarded-For.
    "NUM_PROXIES": env_int("TRUSTED_PROXY_COUNT", 0),
    "UNAUTHENTICATED_USER": "django.contrib.auth.models.AnonymousUser",
}

SPECTACULAR_SETTINGS = {
    "TITLE": "Session + Personalization Engine API",
    "DESCRIPTION": (
        "Anonymous sessions, behaviour events, cross-device identity, personalization, "
        "analytics and privacy tooling. Errors are RFC 9457 problem details."
    ),
    "VERSION": "0.1.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SERVE_PERMISSIONS": ["rest_framework.permissions.AllowAny"],
    "COMPONENT_SPLIT_REQUEST": True,
    # The Segment-compatible /v1 endpoints are plain Django views: described by hand.
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "sessions_app.segment_schema.add_segment_paths",
    ],
}

# CORS for the browser-facing API only (session lifecycle and events, consent and the
# visitor's own data, per-session personalization, the Segment-compatible /v1). Those
# authenticate with a publishable key or a session token in a header, never a cookie, so
# any site may call them by default; CORS_ALLOWED_ORIGINS narrows that to a list.
# Staff endpoints (admin API, analytics, profiles) stay same-origin.
_UUID = "[0-9a-fA-F-]{36}"
CORS_URLS_REGEX = rf"^/(api/sessions/(create|consent|user-data/.*|{_UUID}(/.*)?)|api/personalization/{_UUID}/.*|v1/.*)$"
CORS_ALLOWED_ORIGINS = [origin for origin in env_list("CORS_ALLOWED_ORIGINS") if origin != "*"]
CORS_ALLOW_ALL_ORIGINS = not CORS_ALLOWED_ORIGINS
CORS_ALLOW_CREDENTIALS = False
CORS_ALLOW_HEADERS = (*corsheaders_default_headers, "x-site-key")
CORS_EXPOSE_HEADERS = ["Retry-After"]


# ---------------------------------------------------------------------------
# Product settings
# ---------------------------------------------------------------------------

SESSION_IDLE_TIMEOUT = timedelta(seconds=env_int("SESSION_IDLE_TIMEOUT_SECONDS", 30 * 60))
SESSION_ABSOLUTE_LIFETIME = timedelta(seconds=env_int("SESSION_ABSOLUTE_LIFETIME_SECONDS", 24 * 3600))
SESSION_TOKEN_ROTATION_INTERVAL = timedelta(seconds=env_int("SESSION_TOKEN_ROTATION_SECONDS", 15 * 60))
SESSION_TOKEN_GRACE_PERIOD = timedelta(seconds=env_int("SESSION_TOKEN_GRACE_SECONDS", 60))
SESSION_EXPIRY_SWEEP_SECONDS = env_int("SESSION_EXPIRY_SWEEP_SECONDS", 60)
SESSION_EXPIRY_SWEEP_BATCH = env_int("SESSION_EXPIRY_SWEEP_BATCH", 5000)

# "opt-in" (GDPR: nothing without a choice) or "opt-out" (CCPA: allowed until refused).
CONSENT_MODE = env_str("CONSENT_MODE", "opt-in")
if CONSENT_MODE not in {"opt-in", "opt-out"}:
    raise ImproperlyConfigured("CONSENT_MODE must be 'opt-in' or 'opt-out'")

GEOIP_ENABLED = env_bool("GEOIP_ENABLED", True)

# /.well-known/gpc.json: the date this site's GPC support last changed.
GPC_LAST_UPDATE = env_str("GPC_LAST_UPDATE", "2026-11-29")

# Retention purges delete this many rows per transaction.
RETENTION_BATCH_SIZE = env_int("RETENTION_BATCH_SIZE", 5000)

# Sites by publishable key are cached in each process this long: a deactivated key is
# refused everywhere within it (at once in the process that saved the change). 0 disables.
NEURON_CACHE_SECONDS = 5.0

# Ingestion. Events for a session that ended less than the grace period ago (the unload
# beacon, a retried batch) are still accepted; later ones get a 409 so the client restores.
EVENTS_GRACE_PERIOD = timedelta(seconds=env_int("EVENTS_GRACE_SECONDS", 5 * 60))
EVENTS_MAX_BATCH = env_int("EVENTS_MAX_BATCH", 500)
EVENTS_MAX_BODY_BYTES = env_int("EVENTS_MAX_BODY_BYTES", 512 * 1024)
EVENT_DATA_MAX_BYTES = env_int("EVENT_DATA_MAX_BYTES", 32 * 1024)
# PostgreSQL: single events that arrive together are committed together
# (sessions_app.ingest_group); each request still answers after its own commit.
EVENTS_GROUP_COMMIT = env_bool("EVENTS_GROUP_COMMIT", True)
# Segment's published limits for its HTTP tracking API.
SEGMENT_MAX_CALL_BYTES = env_int("SEGMENT_MAX_CALL_BYTES", 32 * 1024)
SEGMENT_MAX_BATCH_BYTES = env_int("SEGMENT_MAX_BATCH_BYTES", 500 * 1024)
SEGMENT_MAX_BATCH_EVENTS = env_int("SEGMENT_MAX_BATCH_EVENTS", 2500)
# Anonymously counted events (no analytics consent) carrying a client message id are
# remembered this long in the cache (a keyed hash, nothing else), so a resend is not
# counted twice.
ANONYMOUS_DEDUPE_SECONDS = env_int("ANONYMOUS_DEDUPE_SECONDS", 3600)
# Live dashboard counters: per-minute buckets kept this long in the cache.
LIVE_COUNTER_TTL_SECONDS = env_int("LIVE_COUNTER_TTL_SECONDS", 2 * 3600)
# After a cache failure, live counters skip the cache for this long instead of paying a
# timeout on every request while Redis is down.
LIVE_COUNTER_BACKOFF_SECONDS = env_float("LIVE_COUNTER_BACKOFF_SECONDS", 5.0)
# Live counters are summed in each process and published this often (one round trip for
# all of them); 0 publishes on every call (sessions_app/live.py).
LIVE_COUNTER_FLUSH_SECONDS = env_float("LIVE_COUNTER_FLUSH_SECONDS", 0.5)

# Cross-device identity (sessions_app/linking.py documents the score these feed).
IDENTITY_MERGE_THRESHOLD = env_float("IDENTITY_MERGE_THRESHOLD", 0.9)
IDENTITY_SUGGEST_THRESHOLD = env_float("IDENTITY_SUGGEST_THRESHOLD", 0.3)
IDENTITY_FINGERPRINT_WEIGHT = env_float("IDENTITY_FINGERPRINT_WEIGHT", 0.99)
IDENTITY_FINGERPRINT_HALF_LIFE = timedelta(days=env_float("IDENTITY_FINGERPRINT_HALF_LIFE_DAYS", 180))
IDENTITY_SHARED_DEVICE_CAP = env_float("IDENTITY_SHARED_DEVICE_CAP", 0.5)
# Device types a household passes around (a family tablet): their sessions are attributed one by
# one, never as one visitor (sessions_app/identity.py, device_is_shared). Empty: only devices on
# which two user ids signed in count as shared.
IDENTITY_SHARED_DEVICE_TYPES = env_list("IDENTITY_SHARED_DEVICE_TYPES", ["tablet"])
IDENTITY_PLACE_MAX_DEVICES = env_int("IDENTITY_PLACE_MAX_DEVICES", 30)
IDENTITY_PLACE_WINDOW = timedelta(days=env_float("IDENTITY_PLACE_WINDOW_DAYS", 30))
IDENTITY_NETWORK_WEIGHT = env_float("IDENTITY_NETWORK_WEIGHT", 0.6)
IDENTITY_NETWORK_HALF_LIFE = timedelta(hours=env_float("IDENTITY_NETWORK_HALF_LIFE_HOURS", 24))
IDENTITY_NETWORK_WINDOW = timedelta(hours=env_float("IDENTITY_NETWORK_WINDOW_HOURS", 24))
IDENTITY_NETWORK_MAX_PROFILES = env_int("IDENTITY_NETWORK_MAX_PROFILES", 6)
IDENTITY_LINK_SWEEP_SECONDS = env_int("IDENTITY_LINK_SWEEP_SECONDS", 300)
IDENTITY_LINK_MAX_PASSES = env_int("IDENTITY_LINK_MAX_PASSES", 3)
if not 0 < IDENTITY_SUGGEST_THRESHOLD <= IDENTITY_MERGE_THRESHOLD <= 1:
    raise ImproperlyConfigured("need 0 < IDENTITY_SUGGEST_THRESHOLD <= IDENTITY_MERGE_THRESHOLD <= 1")

# Personalization. An event's contribution to an interest weight halves every
# half-life: a week by default, so last month's browsing fades but does not vanish.
PERSONALIZATION_INTEREST_HALF_LIFE = timedelta(
    seconds=env_int("PERSONALIZATION_INTEREST_HALF_LIFE_SECONDS", 7 * 24 * 3600)
)
# Categories kept per vector (the weakest are dropped beyond it).
PERSONALIZATION_MAX_CATEGORIES = env_int("PERSONALIZATION_MAX_CATEGORIES", 64)
# Sessions active within this window are evaluated when segments are materialized.
PERSONALIZATION_SEGMENT_WINDOW = timedelta(days=env_int("PERSONALIZATION_SEGMENT_WINDOW_DAYS", 30))
PERSONALIZATION_SEGMENT_REFRESH_SECONDS = env_int("PERSONALIZATION_SEGMENT_REFRESH_SECONDS", 15 * 60)
PERSONALIZATION_ARCHETYPE_REFRESH_SECONDS = env_int("PERSONALIZATION_ARCHETYPE_REFRESH_SECONDS", 6 * 3600)
PERSONALIZATION_ARCHETYPE_MAX_K = env_int("PERSONALIZATION_ARCHETYPE_MAX_K", 8)
# Item co-occurrence is learned from this much history and refreshed this often.
PERSONALIZATION_RECOMMEND_WINDOW = timedelta(days=env_int("PERSONALIZATION_RECOMMEND_WINDOW_DAYS", 90))
PERSONALIZATION_RECOMMEND_REFRESH_SECONDS = env_int("PERSONALIZATION_RECOMMEND_REFRESH_SECONDS", 3600)

# /demo/: the browser session manager against this server, for the demo site `make run` seeds.
DEMO_PAGE_ENABLED = env_bool("DEMO_PAGE_ENABLED", not PRODUCTION)
DEMO_NEURON_SLUG = env_str("DEMO_NEURON_SLUG", "demo")

# Analytics. A session counts as converted when it holds an event of one of these
# types or names.
ANALYTICS_CONVERSION_EVENT_TYPES = env_list("ANALYTICS_CONVERSION_EVENT_TYPES", ["conversion"])
ANALYTICS_CONVERSION_EVENT_NAMES = env_list("ANALYTICS_CONVERSION_EVENT_NAMES", [])
# "Active now": activity within this window.
ANALYTICS_ACTIVE_WINDOW = timedelta(seconds=env_int("ANALYTICS_ACTIVE_WINDOW_SECONDS", 5 * 60))
# An hour is rolled up once nothing that started in it can change: once every session that
# started in it has ended and is past the events grace period, and at the latest after this
# long (a session lives at most the absolute lifetime and takes events for the grace period).
ANALYTICS_ROLLUP_SETTLE = timedelta(
    seconds=env_int(
        "ANALYTICS_ROLLUP_SETTLE_SECONDS",
        int((SESSION_ABSOLUTE_LIFETIME + EVENTS_GRACE_PERIOD).total_seconds()) + 10 * 60,
    )
)
ANALYTICS_ROLLUP_EVERY_SECONDS = env_int("ANALYTICS_ROLLUP_EVERY_SECONDS", 300)
ANALYTICS_RECONCILE_EVERY_SECONDS = env_int("ANALYTICS_RECONCILE_EVERY_SECONDS", 3600)
# Closed hours this far back are recounted and rebuilt when their raw rows changed.
ANALYTICS_ROLLUP_RECHECK_DAYS = env_int("ANALYTICS_ROLLUP_RECHECK_DAYS", 7)
ANALYTICS_MAX_RANGE_DAYS = env_int("ANALYTICS_MAX_RANGE_DAYS", 400)
# Per process: closed days' packed sequences kept in memory while their row is unchanged
# (analytics.day_cache); about 22 MB holds 30 days of 100k sessions. 0 turns it off.
ANALYTICS_SEQUENCE_DAY_CACHE_BYTES = env_int("ANALYTICS_SEQUENCE_DAY_CACHE_BYTES", 64 * 1024 * 1024)
# Per process: what funnels and journeys computed from those closed days (analytics.day_cache),
# kept while the days' rows are unchanged; about 13 MB for a 4-step funnel over 30 days of
# 100k sessions, 1-2 MB for a journey. 0 turns it off.
ANALYTICS_SEQUENCE_RESULT_CACHE_BYTES = env_int("ANALYTICS_SEQUENCE_RESULT_CACHE_BYTES", 64 * 1024 * 1024)
# Per process: rollup sums read by reports, kept while the rollups they were read from are
# unchanged (analytics.rollup_cache); bounded by result rows. 0 turns it off.
ANALYTICS_ROLLUP_CACHE_ROWS = env_int("ANALYTICS_ROLLUP_CACHE_ROWS", 50_000)
# Per process: each report bucket's union of closed hours' visitor sets, kept while the sets are
# unchanged (analytics.rollup_cache); 8 bytes a visitor. 0 turns it off.
ANALYTICS_VISITOR_SET_CACHE_BYTES = env_int("ANALYTICS_VISITOR_SET_CACHE_BYTES", 32 * 1024 * 1024)


# ---------------------------------------------------------------------------
# Logging
# ---------------------------------------------------------------------------

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    # Subjects of data-subject requests (in their paths) never reach a log line.
    "filters": {"redact_subjects": {"()": "config.log_filters.RedactSubjectIds"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain", "filters": ["redact_subjects"]}},
    "root": {"handlers": ["console"], "level": env_str("LOG_LEVEL", "INFO")},
    "loggers": {
        "django": {"handlers": ["console"], "level": "INFO", "propagate": False},
        # Access logs would carry client addresses; the app logs only truncated ones.
        "django.server": {"level": "WARNING"},
        "uvicorn.access": {"level": "WARNING"},
    },
}
