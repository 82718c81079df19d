"""A minimal Django project serving django-oauth-toolkit's OpenID Provider for sealgate's
interoperability tests (tests/interop/providers/dot.sh). Test-only: DEBUG, a throwaway
SECRET_KEY and SQLite database, plain http on 127.0.0.1.

Environment (set by dot.sh): DOT_PORT, DOT_DIR (database and key), API_AUDIENCE,
ACCESS_TOKEN_TTL (seconds).
"""

import os
from pathlib import Path

PORT = os.environ["DOT_PORT"]
STATE = Path(os.environ["DOT_DIR"])
ISSUER = f"http://127.0.0.1:{PORT}/o"
API_AUDIENCE = os.environ["API_AUDIENCE"]

SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "interop-test-only")
DEBUG = True
ALLOWED_HOSTS = ["127.0.0.1"]
ROOT_URLCONF = "interop_dot.urls"
USE_TZ = True
INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "oauth2_provider",
]
MIDDLEWARE = [
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
]
TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ]
        },
    }
]
DATABASES = {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": STATE / "db.sqlite3"}}
DEFAULT_AUTO_FIELD = "django.db.models.AutoField"
# The provider's login page: Django's admin login form (the user is staff).
LOGIN_URL = "/admin/login/"
# The provider's and sealgate's cookies share the host 127.0.0.1 (ports do not separate
# cookies): give the provider's its own names.
SESSION_COOKIE_NAME = "dot_sessionid"
CSRF_COOKIE_NAME = "dot_csrftoken"

OAUTH2_PROVIDER = {
    "OIDC_ENABLED": True,
    "OIDC_RSA_PRIVATE_KEY": (STATE / "oidc.key").read_text(),
    "OIDC_ISS_ENDPOINT": ISSUER,
    "OIDC_RP_INITIATED_LOGOUT_ENABLED": True,
    "OIDC_RP_INITIATED_LOGOUT_ALWAYS_PROMPT": False,
    "PKCE_REQUIRED": True,
    "ROTATE_REFRESH_TOKEN": True,
    "REFRESH_TOKEN_REUSE_PROTECTION": True,
    "ACCESS_TOKEN_EXPIRE_SECONDS": int(os.environ["ACCESS_TOKEN_TTL"]),
    # JWT access tokens the API can verify against the JWKS (django-oauth-toolkit's own are
    # opaque); refresh tokens stay opaque.
    "ACCESS_TOKEN_GENERATOR": "interop_dot.oidc.jwt_access_token",
    "REFRESH_TOKEN_GENERATOR": "oauthlib.oauth2.rfc6749.tokens.random_token_generator",
    "OAUTH2_VALIDATOR_CLASS": "interop_dot.oidc.Validator",
    "SCOPES": {
        "openid": "OpenID Connect",
        "profile": "Profile",
        "email": "Email",
        "offline_access": "Refresh tokens",
        "api:read": "Read the API",
    },
    "DEFAULT_SCOPES": ["openid"],
}
