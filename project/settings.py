"""Loupe settings, read from the environment.

Defaults run everything on one machine: SQLite in WAL mode, media on local disk and an embedded
Redis on a unix socket under LOUPE_DATA_DIR (started by `python -m project.up`). DATABASE_URL,
REDIS_URL, MEDIA_ROOT and LOUPE_* override them for a cluster.
"""

import os
from datetime import timedelta
from pathlib import Path

import dj_database_url
from csp.constants import NONE, SELF
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent


def env_str(name: str, default: str = "") -> str:
    return os.environ.get(name, default)


def env_bool(name: str, default: bool = False) -> bool:
    value = os.environ.get(name)
    if value is None:
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


def env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    return int(value) if value else default


DATA_DIR = Path(env_str("LOUPE_DATA_DIR", str(BASE_DIR / "var"))).resolve()

DEBUG = env_bool("LOUPE_DEBUG", False)
SECRET_KEY = env_str("LOUPE_SECRET_KEY") or env_str("DJANGO_SECRET_KEY")
if not SECRET_KEY:
    # A per-installation key kept beside the data, so sessions survive restarts without a
    # secret ever living in the repository.
    _key_file = DATA_DIR / "secret_key"
    if _key_file.exists():
        SECRET_KEY = _key_file.read_text().strip()
    else:
        import secrets

        DATA_DIR.mkdir(parents=True, exist_ok=True)
        SECRET_KEY = secrets.token_urlsafe(50)
        _key_file.write_text(SECRET_KEY)
        _key_file.chmod(0o600)

# Host names Loupe answers to. Unset: this machine's local names only (`up` binds 127.0.0.1);
# "*" serves any Host, and then absolute URLs stay root-relative (project/hosts.py).
ALLOWED_HOSTS = [h.strip() for h in env_str("LOUPE_ALLOWED_HOSTS").split(",") if h.strip()] or [
    "localhost",
    "127.0.0.1",
    "[::1]",
]
CSRF_TRUSTED_ORIGINS = [o for o in env_str("LOUPE_CSRF_TRUSTED_ORIGINS").split(",") if o]

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "rest_framework",
    "rest_framework.authtoken",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "django_htmx",
    "template_partials",
    "channels",
    "axes",
    "csp",
    "labeling",
    "training",
    "predictions",
    "customvision",
]

MIDDLEWARE = [
    # First: it must wrap a multipart body before anything (CSRF, DRF) parses it.
    "project.multipart.MultipartSanitizerMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "csp.middleware.CSPMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    "project.middleware.LoupeErrorMiddleware",
    # Last: turns a login refused by the lockout into project.auth.lockout_response.
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "project.urls"
ASGI_APPLICATION = "project.asgi.application"

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

# --- Database -------------------------------------------------------------------------------
if env_str("DATABASE_URL"):
    DATABASES = {"default": dj_database_url.parse(env_str("DATABASE_URL"), conn_max_age=60)}
else:
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": DATA_DIR / "db.sqlite3",
            # Long-lived threads (the prediction fast lane's pool, Celery tasks) keep their
            # connection and its warm page cache: a fresh one costs the PRAGMAs below and cold
            # reads, ~3 ms of a 20 ms prediction. Per-request threads drop theirs as they end.
            "CONN_MAX_AGE": 60,
            "OPTIONS": {
                # WAL lets the web server read while the worker writes; IMMEDIATE transactions
                # take the write lock up front, so two writers queue on busy_timeout instead of
                # failing with "database is locked" when a read transaction upgrades.
                "transaction_mode": "IMMEDIATE",
                "timeout": 20,
                "init_command": (
                    "PRAGMA journal_mode=WAL;"
                    "PRAGMA synchronous=NORMAL;"
                    "PRAGMA busy_timeout=20000;"
                    "PRAGMA cache_size=-32000;"
                    "PRAGMA foreign_keys=ON;"
                ),
            },
        }
    }
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Redis: broker and channel layer --------------------------------------------------------
REDIS_SOCKET = DATA_DIR / "redis.sock"
REDIS_URL = env_str("REDIS_URL")
if REDIS_URL:
    CELERY_BROKER_URL = REDIS_URL
    _channel_hosts: list[object] = [REDIS_URL]
else:
    CELERY_BROKER_URL = f"redis+socket://{REDIS_SOCKET}"
    _channel_hosts = [{"address": f"unix://{REDIS_SOCKET}"}]

CELERY_RESULT_BACKEND = CELERY_BROKER_URL
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_DEFAULT_QUEUE = "celery"
# Above the longest training budget, so Redis does not redeliver a running task (STYLE §6).
CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": 4 * 3600}
CELERY_RESULT_EXPIRES = 3600
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# Enqueueing from a request (project/queue.py): one connection attempt of at most this long,
# then the send is logged and skipped for LOUPE_QUEUE_BACKOFF_S; periodic sweeps re-send.
LOUPE_QUEUE_TIMEOUT_S = float(env_str("LOUPE_QUEUE_TIMEOUT_S", "2"))
LOUPE_QUEUE_BACKOFF_S = float(env_str("LOUPE_QUEUE_BACKOFF_S", "10"))

# --- Training (training/) ---------------------------------------------------------------------
# Pooled backbone embeddings per image content hash: a worker-local cache, rebuilt on a miss.
LOUPE_FEATURE_CACHE_DIR = Path(env_str("LOUPE_FEATURE_CACHE_DIR", str(DATA_DIR / "features")))
# A training worker renews its iteration's lease every third of this; the sweep treats an
# iteration whose lease ran out as lost (worker killed) and re-queues or fails it.
LOUPE_TRAIN_LEASE_S = env_int("LOUPE_TRAIN_LEASE_S", 90)
# Runs of one iteration before the sweep gives up: a dataset that kills its worker must not loop.
LOUPE_TRAIN_MAX_ATTEMPTS = env_int("LOUPE_TRAIN_MAX_ATTEMPTS", 2)
LOUPE_TRAIN_MIN_BUDGET_S = env_int("LOUPE_TRAIN_MIN_BUDGET_S", 60)
LOUPE_TRAIN_MAX_BUDGET_S = env_int("LOUPE_TRAIN_MAX_BUDGET_S", 3 * 3600)
# Quick detection training's time budget (advanced takes the user's): 300 images of 640x480 reach
# mAP@0.5 >= 0.5 in 10 minutes on a 2-core CPU (bench/RESULTS.md).
LOUPE_DETECTION_QUICK_BUDGET_S = env_int("LOUPE_DETECTION_QUICK_BUDGET_S", 600)
# The detector's input (shorter side, px): smaller is faster on a CPU, larger finds small objects.
LOUPE_DETECTION_IMAGE_SIZE_PX = env_int("LOUPE_DETECTION_IMAGE_SIZE_PX", 320)
# At most this many passes over the training images; on a real dataset the budget ends it first.
LOUPE_DETECTION_MAX_EPOCHS = env_int("LOUPE_DETECTION_MAX_EPOCHS", 200)
# Plain-view backbone maps of detection training images, kept between runs so an interrupted
# or repeated training does not prepare the same images again; at most this many MB (about
# 0.4 MB an image at 320 px).
LOUPE_DETECTION_MAP_CACHE_DIR = Path(
    env_str("LOUPE_DETECTION_MAP_CACHE_DIR", str(DATA_DIR / "detection_maps"))
)
LOUPE_DETECTION_MAP_CACHE_MB = env_int("LOUPE_DETECTION_MAP_CACHE_MB", 2048)
# Torch threads of a training run (0: torch's default, one per core). On a machine whose cores
# other processes also use, 2 threads ran the detector 15-25x slower than 1 (threads wait for
# each other at every barrier), so 1 is the default; a dedicated GPU or CPU host may raise it.
LOUPE_TRAIN_THREADS = env_int("LOUPE_TRAIN_THREADS", 1)
# Where training and predictions run: "auto" (a CUDA GPU when torch sees one, else the CPU),
# "cpu" or "cuda" (set it only on GPU hosts: without a GPU, training then fails with a reason).
LOUPE_DEVICE = env_str("LOUPE_DEVICE", "auto").strip().lower()
if LOUPE_DEVICE not in ("auto", "cpu", "cuda"):
    raise ImproperlyConfigured(f"LOUPE_DEVICE must be auto, cpu or cuda, not {LOUPE_DEVICE!r}.")
# Dataset imports (labeling/services/import_jobs.py): the same lease rule as training. A job
# nobody took within LOUPE_IMPORT_QUEUED_MAX_S fails (its message was lost with Redis).
LOUPE_IMPORT_LEASE_S = env_int("LOUPE_IMPORT_LEASE_S", 90)
LOUPE_IMPORT_QUEUED_MAX_S = env_int("LOUPE_IMPORT_QUEUED_MAX_S", 6 * 3600)
# Dataset exports (labeling/services/export_jobs.py) follow the import rules above; a finished
# export's archive is kept this long for download, then the sweep deletes it.
LOUPE_EXPORT_KEEP_S = env_int("LOUPE_EXPORT_KEEP_S", 24 * 3600)
CELERY_BEAT_SCHEDULE = {
    "training-sweep-iterations": {"task": "training.sweep_iterations", "schedule": 60.0},
    "training-sweep-health": {"task": "training.sweep_health", "schedule": 60.0},
    "training-sweep-model-exports": {"task": "training.sweep_model_exports", "schedule": 60.0},
    "labeling-sweep-imports": {"task": "labeling.sweep_imports", "schedule": 60.0},
    "labeling-sweep-exports": {"task": "labeling.sweep_exports", "schedule": 60.0},
    "labeling-sweep-customvision-imports": {
        "task": "labeling.sweep_customvision_imports",
        "schedule": 60.0,
    },
    # Thumbnails whose task was never queued (broker down at upload time) or was lost: every
    # minute, so they appear soon after Redis is back (it skips while the queue has a backlog).
    "labeling-queue-missing-thumbnails": {
        "task": "labeling.queue_missing_thumbnails",
        "schedule": 60.0,
    },
}

CHANNEL_LAYERS = {
    "default": {
        "BACKEND": "channels_redis.core.RedisChannelLayer",
        "CONFIG": {"hosts": _channel_hosts},
    }
}

# --- Auth -----------------------------------------------------------------------------------
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "labeling:project-list"
LOGOUT_REDIRECT_URL = "login"
AUTH_PASSWORD_VALIDATORS = [
    {
        "NAME": "django.contrib.auth.password_validation.MinimumLengthValidator",
        "OPTIONS": {"min_length": 8},
    },
]
# Brute-force protection (django-axes, state in the database): after LOUPE_LOGIN_FAILURE_LIMIT
# failed logins for one account (from any address) or from one client address (for any
# account), logins there are refused for LOUPE_LOGIN_LOCKOUT_MINUTES — the right password too —
# on the login page (429 with a message) and at /api/auth/token/ (429 JSON, code locked_out).
# An admin lifts a lockout early: Django admin → Axes → Access attempts (delete the row), or
# `manage.py axes_reset` / `axes_reset_username <name>` / `axes_reset_ip <address>`.
AXES_ENABLED = env_bool("LOUPE_LOGIN_THROTTLE", True)
AXES_FAILURE_LIMIT = env_int("LOUPE_LOGIN_FAILURE_LIMIT", 10)
AXES_COOLOFF_TIME = timedelta(minutes=env_int("LOUPE_LOGIN_LOCKOUT_MINUTES", 15))
AXES_LOCKOUT_PARAMETERS = ["username", "ip_address"]  # either one locks: account OR address
AXES_HANDLER = "axes.handlers.database.AxesDatabaseHandler"
AXES_LOCKOUT_CALLABLE = "project.auth.lockout_response"
AXES_CLIENT_IP_CALLABLE = "project.auth.client_ip"
# Reverse proxies in front of Loupe that append to X-Forwarded-For (0: none, REMOTE_ADDR is the
# client). Behind one proxy set 1, or every user shares the proxy's address and its lockout.
LOUPE_PROXY_COUNT = env_int("LOUPE_PROXY_COUNT", 0)
AUTHENTICATION_BACKENDS = [
    # First: it refuses a locked-out account or address before any password is checked.
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]
# Who may create projects: "staff" (staff accounts and superusers), "superusers", or "everyone"
# (any signed-in user). Members of a project are invited by its admins either way.
LOUPE_PROJECT_CREATORS = env_str("LOUPE_PROJECT_CREATORS", "staff")

# --- HTTPS and browser security --------------------------------------------------------------
# LOUPE_HTTPS=1 when users reach Loupe over https (directly or through a TLS-terminating proxy):
# plain-http requests are redirected, browsers are told to use https only (HSTS), and the
# session and CSRF cookies are sent over https only. `manage.py check --deploy` is clean with it.
LOUPE_HTTPS = env_bool("LOUPE_HTTPS", False)
if LOUPE_HTTPS:
    SECURE_SSL_REDIRECT = True
    # A load balancer's health probe may come over plain http inside the cluster.
    SECURE_REDIRECT_EXEMPT = [r"^healthz$"]
    SECURE_HSTS_SECONDS = env_int("LOUPE_HSTS_SECONDS", 365 * 24 * 3600)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SECURE_HSTS_PRELOAD = True
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True


def _proxy_ssl_header(value: str) -> tuple[str, str] | None:
    """ "X-Forwarded-Proto" or "X-Forwarded-Proto: https" -> Django's SECURE_PROXY_SSL_HEADER."""
    if not value.strip():
        return None
    name, _, expected = value.partition(":")
    return "HTTP_" + name.strip().upper().replace("-", "_"), expected.strip() or "https"


# Behind a TLS-terminating proxy: the header it sets to say the client used https (e.g.
# "X-Forwarded-Proto"). Set it only if the proxy always sets or overwrites that header: a client
# could otherwise claim https itself. Unset (the default), request.is_secure() is the connection's.
_ssl_header = _proxy_ssl_header(env_str("LOUPE_PROXY_SSL_HEADER"))
if _ssl_header:
    SECURE_PROXY_SSL_HEADER = _ssl_header

# Content-Security-Policy (django-csp) on every response: scripts and styles from Loupe's own
# origin only (static/js modules, static/css, static/vendor), no inline script, handler or
# <style>, no eval; websockets and fetches to the same origin; nothing may frame Loupe.
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": [SELF],
        "script-src": [SELF],
        "style-src": [SELF],
        "img-src": [SELF, "data:"],
        "font-src": [SELF],
        "connect-src": [SELF],
        "object-src": [NONE],
        "base-uri": [SELF],
        "form-action": [SELF],
        "frame-ancestors": [NONE],
    }
}

# --- Static and media -----------------------------------------------------------------------
STATIC_URL = "/static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = Path(env_str("LOUPE_STATIC_ROOT", str(BASE_DIR / "staticfiles")))
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"},
}
MEDIA_URL = "/media/"
MEDIA_ROOT = Path(env_str("MEDIA_ROOT", str(DATA_DIR / "media")))
# Media on S3-compatible object storage (project/storage_s3.py) when LOUPE_S3_BUCKET is set, for web
# and worker hosts that share no disk; MEDIA_ROOT is then unused. Credentials come from boto3's
# usual chain: AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, an instance role, ~/.aws. The bucket
# stays private: /media/ checks membership and streams the object.
LOUPE_S3_BUCKET = env_str("LOUPE_S3_BUCKET")
LOUPE_S3_TIMEOUT_S = float(env_str("LOUPE_S3_TIMEOUT_S", "30"))
if LOUPE_S3_BUCKET:
    STORAGES["default"] = {
        "BACKEND": "project.storage_s3.MediaS3Storage",
        "OPTIONS": {
            "bucket_name": LOUPE_S3_BUCKET,
            # Unset: AWS itself. MinIO, Ceph, R2...: their URL, e.g. http://minio:9000.
            "endpoint_url": env_str("LOUPE_S3_ENDPOINT_URL") or None,
            "region_name": env_str("LOUPE_S3_REGION") or None,
            # "path" for servers without bucket subdomains (MinIO); unset lets boto3 choose.
            "addressing_style": env_str("LOUPE_S3_ADDRESSING_STYLE") or None,
            # A key prefix, so one bucket can hold several installations.
            "location": env_str("LOUPE_S3_PREFIX"),
        },
    }

# Uploads: many files per request; each file is checked by content in labeling.services.ingest.
DATA_UPLOAD_MAX_NUMBER_FILES = env_int("LOUPE_MAX_FILES_PER_REQUEST", 1000)
DATA_UPLOAD_MAX_MEMORY_SIZE = 10 * 1024 * 1024
FILE_UPLOAD_MAX_MEMORY_SIZE = 8 * 1024 * 1024
LOUPE_MAX_IMAGE_BYTES = env_int("LOUPE_MAX_IMAGE_BYTES", 6 * 1024 * 1024)
LOUPE_MAX_IMAGE_PIXELS = env_int("LOUPE_MAX_IMAGE_PIXELS", 50_000_000)
# Bytes of decoded pixels the process holds at once (uploads' checks and predictions together,
# labeling.services.ingest.decode_budget): large images take turns. 200 MB is one 49 MP upload,
# or one 24 MP PNG prediction (decode + RGB copy); bench/memory.py measures it.
LOUPE_DECODE_BUDGET_MB = env_int("LOUPE_DECODE_BUDGET_MB", 200)
LOUPE_SMALL_EDGE_PX = 256
LOUPE_THUMBNAIL_PX = 256
# Prediction API (predictions/): the largest image a client may send, how many published
# models each process keeps loaded (least recently used ones are dropped), and the threads one
# forward pass uses. 1 is fastest under load: concurrent requests already fill every core, and
# a second thread per image costs 20-65% more CPU for 0-20% less latency (see build_engine).
LOUPE_MAX_PREDICTION_BYTES = env_int("LOUPE_MAX_PREDICTION_BYTES", 4 * 1024 * 1024)
# The pixels one prediction may decode (after a JPEG's reduced-scale decode): a 24 MP camera
# photo passes, a 49 MP PNG (147 MB of RGB, 1.35 GB of web-process RSS before) is refused (413).
LOUPE_MAX_PREDICTION_PIXELS = env_int("LOUPE_MAX_PREDICTION_PIXELS", 25_000_000)
LOUPE_PREDICTION_MODELS_CACHED = env_int("LOUPE_PREDICTION_MODELS_CACHED", 4)
LOUPE_PREDICTION_THREADS = env_int("LOUPE_PREDICTION_THREADS", 1)
# Images fetched from a URL (quick test; predictions/services/fetch.py): only public addresses,
# unless listed here (comma-separated networks, e.g. "10.1.0.0/16" for an intranet image
# server), within LOUPE_FETCH_TIMEOUT_S seconds and LOUPE_MAX_PREDICTION_BYTES.
LOUPE_FETCH_ALLOW_NETWORKS = env_str("LOUPE_FETCH_ALLOW_NETWORKS")
LOUPE_FETCH_TIMEOUT_S = float(env_str("LOUPE_FETCH_TIMEOUT_S", "10"))

# --- REST API -------------------------------------------------------------------------------
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "rest_framework.authentication.TokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "project.errors.api_exception_handler",
    "DEFAULT_PAGINATION_CLASS": None,
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Loupe API",
    "DESCRIPTION": "Projects, tags, members and images of a Loupe installation.",
    "VERSION": "1",
    "SERVE_INCLUDE_SCHEMA": False,
    "COMPONENT_SPLIT_REQUEST": True,
    # Swagger UI files come from the sidecar package: no CDN at run time.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "predictions.openapi.add_prediction_paths",
    ],
    # Project and Tag both have a `kind`: name their enums so the schema has no collision.
    "ENUM_NAME_OVERRIDES": {
        "ProjectKindEnum": "labeling.models.Project.Kind",
        "TagKindEnum": "labeling.models.Tag.Kind",
    },
}

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = False
USE_TZ = True

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env_str("LOUPE_LOG_LEVEL", "INFO")},
    "loggers": {"django.db.backends": {"level": "WARNING"}},
}
