# LemonLDAP::NG (Debian `lemonldap-ng`): its portal (the OpenID Provider) under
# llng-fastcgi-server, behind nginx on a loopback port. Sourced by tests/interop/run.sh (see
# dot.sh for what it sets). The configuration is the package's demo configuration (users
# dwho/dwho, rtyler/rtyler) with the OIDC service enabled and a relying party for sealgate,
# written into a private configuration directory (LLNG_DEFAULTCONFFILE names its ini).
LLNG_PACKAGES=(lemonldap-ng lemonldap-ng-fastcgi-server nginx-light libhttp-parser-xs-perl
  libemail-sender-perl libimage-magick-perl libgd-securityimage-perl libstring-random-perl
  libcookie-baker-xs-perl libcrypt-openssl-bignum-perl libapache-session-browseable-perl
  libio-string-perl libmime-tools-perl libxml-simple-perl openssl)

provider_install() {
  # nginx-light is enough; an nginx already installed (any flavour) is used as it is.
  if command -v nginx >/dev/null 2>&1; then LLNG_PACKAGES=("${LLNG_PACKAGES[@]/nginx-light/}"); fi
  apt_install "${LLNG_PACKAGES[@]}"
}

provider_version() {
  echo "LemonLDAP::NG $(dpkg-query -W -f='${Version}' lemonldap-ng) (Debian), nginx $(nginx -v 2>&1 | sed 's|.*/||')"
}

provider_start() {
  TEST_USER=dwho
  TEST_PASSWORD=dwho
  EXPECT_SUB=dwho
  API_TYP=JWT # its JWT access tokens are typed "JWT", not RFC 9068's "at+jwt"
  ISSUER="http://127.0.0.1:$P_OP"
  local portal="$ISSUER/"
  mkdir -p "$STATE"/{conf,sessions/lock,psessions/lock,cache,notifications,nginx}
  openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$STATE/oidc.key" 2>/dev/null
  openssl pkey -in "$STATE/oidc.key" -pubout -out "$STATE/oidc.pub"
  sed -e "s|^dirName.*|dirName = $STATE/conf|" -e "s|/var/lib/lemonldap-ng/cache|$STATE/cache|" \
    /etc/lemonldap-ng/lemonldap-ng.ini >"$STATE/lemonldap-ng.ini"
  # The demo configuration, made to live on 127.0.0.1 and to serve sealgate.
  STATE="$STATE" PORTAL="$portal" ISSUER="$ISSUER" ORIGIN_A="$ORIGIN_A" ORIGIN_B="$ORIGIN_B" \
    API_AUDIENCE="$API_AUDIENCE" ACCESS_TOKEN_TTL="$ACCESS_TOKEN_TTL" node -e '
    const fs = require("fs");
    const e = process.env;
    const conf = JSON.parse(fs.readFileSync("/var/lib/lemonldap-ng/conf/lmConf-1.json", "utf8"));
    const text = JSON.stringify(conf).replaceAll("/var/lib/lemonldap-ng", e.STATE);
    Object.assign(conf, JSON.parse(text), {
      cfgNum: 1,
      portal: e.PORTAL,
      domain: "127.0.0.1",
      securedCookie: 0,
      trustedDomains: "127.0.0.1",
      issuerDBOpenIDConnectActivation: 1,
      oidcServiceMetaDataIssuer: e.ISSUER,
      oidcServicePrivateKeySig: fs.readFileSync(`${e.STATE}/oidc.key`, "utf8"),
      oidcServicePublicKeySig: fs.readFileSync(`${e.STATE}/oidc.pub`, "utf8"),
      oidcServiceKeyIdSig: "interop-llng-rs256",
      oidcRPMetaDataOptions: {
        sealgate: {
          oidcRPMetaDataOptionsClientID: "sealgate",
          oidcRPMetaDataOptionsClientSecret: process.env.SEALGATE_CLIENT_SECRET,
          oidcRPMetaDataOptionsPublic: 0,
          oidcRPMetaDataOptionsRedirectUris: `${e.ORIGIN_A}/bff/callback/lemonldap ${e.ORIGIN_B}/bff/callback/lemonldap`,
          oidcRPMetaDataOptionsPostLogoutRedirectUris: `${e.ORIGIN_A}/ ${e.ORIGIN_B}/`,
          oidcRPMetaDataOptionsIDTokenSignAlg: "RS256",
          oidcRPMetaDataOptionsRequirePKCE: 1,
          oidcRPMetaDataOptionsRefreshToken: 1,
          oidcRPMetaDataOptionsBypassConsent: 1,
          oidcRPMetaDataOptionsLogoutBypassConfirm: 1,
          oidcRPMetaDataOptionsIDTokenForceClaims: 1,
          oidcRPMetaDataOptionsAccessTokenJWT: 1,
          oidcRPMetaDataOptionsAccessTokenClaims: 1,
          oidcRPMetaDataOptionsAccessTokenSignAlg: "RS256",
          oidcRPMetaDataOptionsAccessTokenExpiration: Number(e.ACCESS_TOKEN_TTL),
          oidcRPMetaDataOptionsAdditionalAudiences: e.API_AUDIENCE,
        },
      },
      oidcRPMetaDataExportedVars: { sealgate: { email: "mail", name: "cn", preferred_username: "uid" } },
    });
    fs.writeFileSync(`${e.STATE}/conf/lmConf-1.json`, JSON.stringify(conf, null, 1));
  '
  chown -R www-data:www-data "$STATE"
  chmod 600 "$STATE/conf/lmConf-1.json"

  cat >"$STATE/nginx.conf" <<NGINX
daemon off;
master_process on;
worker_processes 1;
user www-data www-data;
pid $STATE/nginx/nginx.pid;
error_log stderr warn;
events { worker_connections 64; }
http {
  include /etc/nginx/mime.types;
  access_log $STATE/nginx/access.log;
  client_body_temp_path $STATE/nginx/body;
  fastcgi_temp_path $STATE/nginx/fastcgi;
  proxy_temp_path $STATE/nginx/proxy;
  uwsgi_temp_path $STATE/nginx/uwsgi;
  scgi_temp_path $STATE/nginx/scgi;
  server {
    listen 127.0.0.1:$P_OP;
    root /usr/share/lemonldap-ng/portal/htdocs/;
    if (\$uri !~ ^/((static|javascript|favicon).*|.*\.psgi)) {
      rewrite ^/(.*)\$ /index.psgi/\$1 break;
    }
    location ~ ^(?<sc>/.*\.psgi)(?:\$|/) {
      include /etc/nginx/fastcgi_params;
      fastcgi_pass unix:$STATE/llng-fastcgi.sock;
      fastcgi_param HTTP_HOST \$http_host;
      fastcgi_param LLTYPE psgi;
      fastcgi_param SCRIPT_FILENAME \$document_root\$fastcgi_script_name;
      fastcgi_split_path_info ^(.*\.psgi)(/.*)\$;
      fastcgi_param PATH_INFO \$fastcgi_path_info;
    }
    index index.psgi;
    location / { try_files \$uri \$uri/ =404; }
    location /static/ { alias /usr/share/lemonldap-ng/portal/htdocs/static/; }
    location /javascript/ { alias /usr/share/javascript/; }
  }
}
NGINX

  start llng-fastcgi env LLNG_DEFAULTCONFFILE="$STATE/lemonldap-ng.ini" \
    LLNG_DEFAULTLOGGER=Lemonldap::NG::Common::Logger::Std \
    /usr/sbin/llng-fastcgi-server --foreground --user www-data --group www-data \
    --proc 2 --pid "$STATE/llng-fastcgi.pid" --socket "$STATE/llng-fastcgi.sock"
  for ((i = 0; ; i++)); do
    [[ -S "$STATE/llng-fastcgi.sock" ]] && break
    kill -0 "${pids[-1]}" 2>/dev/null || { say "llng-fastcgi-server exited during start-up"; return 1; }
    ((i < 300)) || { say "llng-fastcgi-server made no socket in 30 s"; return 1; }
    sleep 0.1
  done
  start nginx nginx -c "$STATE/nginx.conf" -e stderr
  wait_http nginx "$ISSUER/.well-known/openid-configuration" 200

  # What a user of sealgate writes for this provider (docs/providers.md, LemonLDAP::NG).
  PROVIDER_TOML='issuer = "'"$ISSUER"'"
client_id = "sealgate"
scopes = ["openid", "profile", "email"]
token_endpoint_auth = "client_secret_basic"
id_token_signed_response_alg = "RS256"
# The additional audience (the API) is in the ID token too.
trusted_audiences = ["'"$API_AUDIENCE"'"]'
}
