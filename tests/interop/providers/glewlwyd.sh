# Glewlwyd (Debian `glewlwyd`) with its OpenID Connect plugin, on SQLite. Sourced by
# tests/interop/run.sh (see dot.sh for what it sets). Configured like its admin UI does,
# through the admin REST API: the plugin (RS256 key, PKCE required, one-use refresh tokens,
# revocation and back-channel logout allowed), a user and sealgate's client, plus a second
# client, "other-app", that the back-channel scenario signs out from.
GLEWLWYD_PACKAGES=(glewlwyd dbconfig-no-thanks sqlite3 openssl)

provider_install() {
  if ! dpkg-query -W -f='${Status}' glewlwyd 2>/dev/null | grep -q 'install ok installed'; then
    # The package would otherwise ask (debconf) how to set up its database.
    echo 'glewlwyd glewlwyd/config_type select No configuration' | debconf-set-selections
  fi
  apt_install "${GLEWLWYD_PACKAGES[@]}"
}

provider_version() {
  echo "Glewlwyd $(dpkg-query -W -f='${Version}' glewlwyd) (Debian)"
}

# glewlwyd_api METHOD PATH [JSON]: the admin REST API, with the admin session's cookie.
glewlwyd_api() {
  local out status
  out="$(curl -s -w '\n%{http_code}' -b "$STATE/admin.cookies" -c "$STATE/admin.cookies" \
    -X "$1" -H 'Content-Type: application/json' ${3:+--data-binary "$3"} "http://127.0.0.1:$P_OP/api$2")"
  status="${out##*$'\n'}"
  if [[ "$status" != 200 ]]; then
    say "glewlwyd: $1 /api$2 answered $status: ${out%$'\n'*}"
    return 1
  fi
}

provider_start() {
  TEST_USER=interop
  TEST_PASSWORD="$(random_secret)"
  OTHER_APP_SECRET="$(random_secret)"
  ISSUER="http://127.0.0.1:$P_OP/api/oidc"
  openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$STATE/oidc.key" 2>/dev/null
  openssl pkey -in "$STATE/oidc.key" -pubout -out "$STATE/oidc.pub"
  zcat /usr/share/doc/glewlwyd/database/init.sqlite3.sql.gz | sqlite3 "$STATE/glewlwyd.db"
  # The OIDC scope needs the user's password (the schema's default asks for nothing).
  sqlite3 "$STATE/glewlwyd.db" "UPDATE g_scope SET gs_password_required=1 WHERE gs_name='openid'"
  # The plugin reads the client property post_logout_redirect_uris, which the database client
  # module's data format lacks (it has the singular): add it, multiple.
  sqlite3 "$STATE/glewlwyd.db" "UPDATE g_client_module_instance SET gcmi_parameters = json_set(gcmi_parameters,
    '\$.\"data-format\".post_logout_redirect_uris', json('{\"multiple\":true,\"read\":true,\"write\":true}'))
    WHERE gcmi_name='database'"
  # The web app (login page), with its config.json: Debian ships that path as a directory
  # (/etc/glewlwyd/config-2.7.json/config.json), which leaves the login page "Loading...".
  local webapp=/usr/share/glewlwyd/webapp f
  mkdir -p "$STATE/webapp"
  for f in "$webapp"/*; do [[ "${f##*/}" == config.json ]] || cp -rL "$f" "$STATE/webapp/"; done # (it serves no symlinks)
  if [[ -f "$webapp/config.json" ]]; then cp "$webapp/config.json" "$STATE/webapp/config.json"
  else cp "$webapp/config.json/config.json" "$STATE/webapp/config.json"; fi
  zcat /usr/share/doc/glewlwyd/glewlwyd.conf.sample.gz | sed \
    -e "s|^static_files_path=.*|static_files_path=\"$STATE/webapp/\"|" \
    -e "s|^port=.*|port=$P_OP|" \
    -e "s|^external_url=.*|external_url=\"http://127.0.0.1:$P_OP\"|" \
    -e "s|^cookie_domain=.*|cookie_domain=\"127.0.0.1\"|" \
    -e "s|^cookie_secure=.*|cookie_secure=0|" \
    -e "s|^log_mode=.*|log_mode=\"console\"|" \
    -e "s|^#bind_address=.*|bind_address=\"127.0.0.1\"|" \
    -e "s|path = \"/var/cache/glewlwyd/glewlwyd.db\"|path = \"$STATE/glewlwyd.db\"|" \
    >"$STATE/glewlwyd.conf"
  start glewlwyd glewlwyd --config-file="$STATE/glewlwyd.conf"
  wait_http glewlwyd "http://127.0.0.1:$P_OP/config" 200

  glewlwyd_api POST /auth/ '{"username":"admin","password":"password"}'
  local params
  params="$(KEY_FILE="$STATE/oidc.key" PUB_FILE="$STATE/oidc.pub" ISSUER="$ISSUER" API_AUDIENCE="$API_AUDIENCE" \
    ACCESS_TOKEN_TTL="$ACCESS_TOKEN_TTL" node "$INTEROP/providers/glewlwyd-plugin.mjs")"
  glewlwyd_api POST /mod/plugin/ "$params"
  glewlwyd_api POST /user/ "$(node -e 'console.log(JSON.stringify({
    username: process.argv[1], password: process.argv[2], name: "Interop User",
    email: `${process.argv[1]}@example.test`, enabled: true, scope: ["openid"] }))' "$TEST_USER" "$TEST_PASSWORD")"
  glewlwyd_api POST /client/ "$(node -e 'const [a, b, secret] = process.argv.slice(1); console.log(JSON.stringify({
    client_id: "sealgate", name: "sealgate", enabled: true, confidential: true, scope: [],
    client_secret: secret,
    redirect_uri: [`${a}/bff/callback/glewlwyd`, `${b}/bff/callback/glewlwyd`],
    authorization_type: ["code", "refresh_token", "client_credentials"],
    token_endpoint_auth_method: ["client_secret_basic"],
    post_logout_redirect_uris: [`${a}/`, `${b}/`],
    backchannel_logout_uri: `${a}/bff/backchannel-logout`,
    backchannel_logout_session_required: "1" }))' "$ORIGIN_A" "$ORIGIN_B" "$SEALGATE_CLIENT_SECRET")"
  glewlwyd_api POST /client/ "$(node -e 'console.log(JSON.stringify({
    client_id: "other-app", name: "Another app", enabled: true, confidential: true, scope: [],
    client_secret: process.argv[1], redirect_uri: [`${process.argv[2]}/other-app/callback`],
    authorization_type: ["code"], token_endpoint_auth_method: ["client_secret_basic"] }))' \
    "$OTHER_APP_SECRET" "$ORIGIN_A")"
  export OTHER_APP_SECRET

  # What a user of sealgate writes for this provider (docs/providers.md, Glewlwyd).
  PROVIDER_TOML='issuer = "'"$ISSUER"'"
client_id = "sealgate"
scopes = ["openid"]
token_endpoint_auth = "client_secret_basic"
id_token_signed_response_alg = "RS256"
empty_400_is_invalid_grant = true
# Without a resource (RFC 8707), the access token names the scopes in aud.
auth_params = { resource = "'"$API_AUDIENCE"'" }'
}
