# django-oauth-toolkit (PyPI) in a minimal Django project (tests/interop/dot/). Sourced by
# tests/interop/run.sh, which sets P_OP, ORIGIN_A, ORIGIN_B, STATE, VENV, API_AUDIENCE,
# ACCESS_TOKEN_TTL and SEALGATE_CLIENT_SECRET, and calls provider_install then provider_start.
DOT_PACKAGES=(django django-oauth-toolkit)

provider_install() {
  if [[ ! -x "$VENV/bin/python" ]]; then
    say "python3 -m venv ${VENV#"$REPO"/}"
    python3 -m venv "$VENV"
  fi
  if ! "$VENV/bin/python" -c 'import django, oauth2_provider' 2>/dev/null; then
    say "pip install ${DOT_PACKAGES[*]}"
    "$VENV/bin/pip" install -q --disable-pip-version-check "${DOT_PACKAGES[@]}"
  fi
}

provider_version() {
  local dot django
  dot="$("$VENV/bin/python" -c 'import importlib.metadata as m; print(m.version("django-oauth-toolkit"))')"
  django="$("$VENV/bin/python" -c 'import importlib.metadata as m; print(m.version("django"))')"
  echo "django-oauth-toolkit $dot (PyPI), Django $django"

}

provider_start() {
  local project="$INTEROP/dot"
  TEST_USER=interop
  TEST_PASSWORD="$(random_secret)"
  ISSUER="http://127.0.0.1:$P_OP/o"
  openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$STATE/oidc.key" 2>/dev/null
  export DOT_PORT="$P_OP" DOT_DIR="$STATE" API_AUDIENCE ACCESS_TOKEN_TTL \
    DJANGO_SETTINGS_MODULE=interop_dot.settings PYTHONPATH="$project" PYTHONDONTWRITEBYTECODE=1
  "$VENV/bin/python" "$project/manage.py" migrate -v 0
  CLIENT_ID=sealgate CLIENT_SECRET="$SEALGATE_CLIENT_SECRET" TEST_USER="$TEST_USER" \
    TEST_PASSWORD="$TEST_PASSWORD" REDIRECT_URIS="$ORIGIN_A/bff/callback/dot $ORIGIN_B/bff/callback/dot" \
    POST_LOGOUT_REDIRECT_URIS="$ORIGIN_A/ $ORIGIN_B/" "$VENV/bin/python" -m interop_dot.setup_client
  EXPECT_SUB="$("$VENV/bin/python" -c 'import django; django.setup(); from django.contrib.auth.models import User; print(User.objects.get(username="interop").pk)')"
  # Django's development server: single process, loopback only, no autoreload.
  start dot "$VENV/bin/python" "$project/manage.py" runserver --noreload --nothreading "127.0.0.1:$P_OP"
  wait_http dot "$ISSUER/.well-known/openid-configuration" 200
  # What a user of sealgate writes for this provider (docs/providers.md, django-oauth-toolkit).
  PROVIDER_TOML='issuer = "'"$ISSUER"'"
client_id = "sealgate"
scopes = ["openid", "profile", "email", "api:read"]
token_endpoint_auth = "client_secret_basic"
id_token_signed_response_alg = "RS256"
# Listed in /o/.well-known/oauth-authorization-server only, not in openid-configuration.
revocation_endpoint = "'"http://127.0.0.1:$P_OP/o/revoke_token/"'"'
}
