"""One settings module: embedded default, production refusal, `check --deploy` clean."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

PRODUCTION_ENV = {
    "DJANGO_ENV": "production",
    "SECRET_KEY": "x7#kQ9!vLm2$Rt8@pZ4^wN6&yB1*eH5(jC3)uF0-gD9+sA7=oI2",
    "FIELD_ENCRYPTION_KEYS": "c2Vzc2lvbi1lbmdpbmUtdGVzdC1rZXktMzItYnl0ZXM=",
    "IDENTIFIER_HASH_KEY": "0f" * 32,
    "ALLOWED_HOSTS": "sessions.example.com",
}


def _manage(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    base = {k: v for k, v in os.environ.items() if k not in {"DJANGO_ENV", "SECRET_KEY", "PYTEST_CURRENT_TEST"}}
    base.pop("TESTING", None)
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env={**base, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


def _print_setting(expr: str, env: dict[str, str]) -> str:
    result = _manage("shell", "-c", f"from django.conf import settings; print({expr})", env=env)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip().splitlines()[-1]


def test_production_check_deploy_has_zero_warnings():
    result = _manage("check", "--deploy", "--fail-level", "WARNING", env=PRODUCTION_ENV)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


def test_production_refuses_to_start_without_secrets():
    for missing in ("SECRET_KEY", "FIELD_ENCRYPTION_KEYS", "IDENTIFIER_HASH_KEY", "ALLOWED_HOSTS"):
        env = {k: v for k, v in PRODUCTION_ENV.items() if k != missing}
        env[missing] = ""
        result = _manage("check", env=env)
        assert result.returncode != 0
        assert missing in result.stderr


def test_production_refuses_a_weak_secret_key():
    result = _manage("check", env={**PRODUCTION_ENV, "SECRET_KEY": "short"})
    assert result.returncode != 0 and "SECRET_KEY" in result.stderr


def test_embedded_default_needs_no_variable():
    env = {"DATABASE_URL": "", "REDIS_URL": "", "CELERY_BROKER_URL": ""}
    assert _print_setting("settings.DATABASES['default']['ENGINE']", env) == "django.db.backends.sqlite3"
    assert _print_setting("settings.CACHES['default']['BACKEND']", env).endswith("LocMemCache")
    assert _print_setting("settings.CHANNEL_LAYERS['default']['BACKEND']", env).endswith("InMemoryChannelLayer")
    assert _print_setting("settings.CELERY_TASK_ALWAYS_EAGER", env) == "True"
    assert _print_setting("settings.CELERY_BROKER_URL", env) == "memory://"


def test_urls_switch_to_postgresql_and_redis():
    env = {"DATABASE_URL": "postgres://u@db.internal:5432/app", "REDIS_URL": "redis://cache.internal:6379/0"}
    assert _print_setting("settings.DATABASES['default']['ENGINE']", env) == "config.postgresql"
    assert _print_setting("settings.DATABASES['default']['CONN_MAX_AGE']", env) == "60"
    assert _print_setting("settings.CACHES['default']['BACKEND']", env).endswith("RedisCache")
    assert _print_setting("settings.CHANNEL_LAYERS['default']['BACKEND']", env).endswith("RedisChannelLayer")
    assert _print_setting("settings.CELERY_BROKER_URL", env) == "redis://cache.internal:6379/0"
    assert _print_setting("settings.CELERY_TASK_ALWAYS_EAGER", env) == "False"
    pooled = _print_setting(
        "settings.DATABASES['default']['OPTIONS']['pool']['max_size']", {**env, "DATABASE_POOL": "1"}
    )
    assert pooled == "10"


def test_bad_variable_values_fail_clearly():
    result = _manage("check", env={"SESSION_IDLE_TIMEOUT_SECONDS": "soon"})
    assert result.returncode != 0 and "SESSION_IDLE_TIMEOUT_SECONDS" in result.stderr
    result = _manage("check", env={"CONSENT_MODE": "maybe"})
    assert result.returncode != 0 and "CONSENT_MODE" in result.stderr
