"""Settings of the guestbook site, read from the environment the kit renders.

Required: DJANGO_SECRET_KEY, DATABASE_URL. Optional: DATABASE_READ_URL (a "replica" alias),
REDIS_URL (cache and sessions), RQ_REDIS_URL (job queues), DJANGO_ALLOWED_HOSTS,
CSRF_TRUSTED_ORIGINS, DJANGO_LOG_LEVEL, KIT_NODE and KIT_INSTANCE (read by the views).
"""

from __future__ import annotations

import os
from typing import Any

import dj_database_url
from django.core.exceptions import ImproperlyConfigured


def required(name: str) -> str:
    value = os.environ.get(name, "")
    if not value:
        raise ImproperlyConfigured(f"The environment variable {name} must be set.")
    return value


def comma_list(value: str) -> list[str]:
    return [item.strip() for item in value.split(",") if item.strip()]


def database(url: str) -> dict[str, Any]:
    """One DATABASES entry from a URL (user and password may be percent-encoded).

    The kit puts PgBouncer in TRANSACTION pooling mode in front of PostgreSQL: each
    transaction may run on a different server connection, so nothing may outlive one:
    - no server-side cursors (DECLARE ... WITH HOLD would land on another connection);
    - no server-side binding, hence no prepared statements: psycopg 3's client-side binding
      cursors, Django's default, never prepare; it is spelled out below.
    Django keeps its connection to PgBouncer (not to PostgreSQL) for 60 s, checking it is
    still usable before reusing it (CONN_HEALTH_CHECKS), so a request costs no new connection.
    PgBouncer tracks the session settings Django sets on connect (TimeZone, client encoding)
    and restores them on whichever server connection a transaction gets.
    """
    config: dict[str, Any] = dict(dj_database_url.parse(url))
    config["CONN_MAX_AGE"] = 60
    config["CONN_HEALTH_CHECKS"] = True
    config["DISABLE_SERVER_SIDE_CURSORS"] = True
    if config["ENGINE"] == "django.db.backends.postgresql":
        config.setdefault("OPTIONS", {})["server_side_binding"] = False
    return config


DEBUG = False
# Never a default: a missing key is a broken deployment. The tests set one (pyproject.toml).
SECRET_KEY = required("DJANGO_SECRET_KEY")
# Plus the names the kit's health checks use (HAProxy's sends Host: localhost, the roll-out
# asks 127.0.0.1), so that a list of public names does not fail them with a 400.
ALLOWED_HOSTS = [*comma_list(os.environ.get("DJANGO_ALLOWED_HOSTS", "*")), "localhost", "127.0.0.1"]
CSRF_TRUSTED_ORIGINS = comma_list(os.environ.get("CSRF_TRUSTED_ORIGINS", ""))
# HAProxy terminates TLS and says so in X-Forwarded-Proto: request.is_secure() trusts it.
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
# The kit's HAProxy may serve plain HTTP (no haproxy_tls_certificate): cookies are not
# Secure-only here. A site served over HTTPS only should add SESSION_COOKIE_SECURE = True,
# CSRF_COOKIE_SECURE = True and HSTS (`django-admin check --deploy` lists them).

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django_rq",
    "guestbook",
]

MIDDLEWARE = [
    # First: it sees every request, and names its route for the kit's request metrics.
    "guestbook_site.metrics.RouteForMetrics",
    "django.middleware.security.SecurityMiddleware",
    # WhiteNoise right after SecurityMiddleware: static files skip everything below it.
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "guestbook_site.urls"
WSGI_APPLICATION = "guestbook_site.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
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

# Writes go to "default" (PgBouncer -> primary). With DATABASE_READ_URL, reads go to
# "replica" (PgBouncer -> streaming replicas): see guestbook_site.routers. Under tests the
# replica is a MIRROR of default: Django creates no second test database, and the alias
# reads what default committed.
DATABASES = {"default": database(required("DATABASE_URL"))}
if read_url := os.environ.get("DATABASE_READ_URL"):
    DATABASES["replica"] = database(read_url) | {"TEST": {"MIRROR": "default"}}
DATABASE_ROUTERS = ["guestbook_site.routers.PrimaryReplicaRouter"]
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# The cache, and so the sessions, live in Redis: a user stays logged in whichever app node
# or gunicorn instance HAProxy sends the next request to. Without REDIS_URL (the tests),
# each process has its own memory cache.
if redis_url := os.environ.get("REDIS_URL"):
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": redis_url,
        }
    }
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
SESSION_ENGINE = "django.contrib.sessions.backends.cache"

# django-rq: three queues on the kit's queues Redis, which `django-admin rqworker
# --with-scheduler high default low` serves. The connection opens on first use only.
RQ_REDIS_URL = os.environ.get("RQ_REDIS_URL", "redis://127.0.0.1:6379/0")
RQ_QUEUES = {name: {"URL": RQ_REDIS_URL} for name in ("high", "default", "low")}

# Static files: WhiteNoise serves them from the installed packages through Django's static
# file finders (WHITENOISE_USE_FINDERS), so a release needs no `collectstatic` step and no
# STATIC_ROOT on the hosts: the wheel is all there is to deploy. Files are indexed once
# when a worker starts.
STATIC_URL = "/static/"
WHITENOISE_USE_FINDERS = True

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

# Everything to stderr: the kit's systemd units send it to journald.
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "plain": {"format": "%(asctime)s %(levelname)s %(name)s %(process)d %(message)s"},
    },
    "handlers": {
        "stderr": {
            "class": "logging.StreamHandler",
            "stream": "ext://sys.stderr",
            "formatter": "plain",
        },
    },
    "root": {"handlers": ["stderr"], "level": os.environ.get("DJANGO_LOG_LEVEL", "INFO")},
}
