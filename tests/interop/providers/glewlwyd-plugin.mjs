// The Glewlwyd OIDC plugin instance for tests/interop (printed as the JSON body of
// POST /api/mod/plugin/): the admin UI's defaults (webapp/admin.js) with what the tests need.
import { readFileSync } from 'node:fs';

const env = (name) => process.env[name];

const defaults = {
  'oauth-as-iss-id': false, 'jwt-type': 'rsa', 'jwt-key-size': '256', 'jwks-uri': '', 'jwks-private': '',
  'default-kid': '', 'client-sign_kid-parameter': '', 'jwks-public': '', key: '', cert: '',
  'access-token-duration': 3600, 'refresh-token-duration': 1209600, 'code-duration': 600,
  'refresh-token-rolling': true, 'refresh-token-one-use': 'never',
  'client-refresh-token-one-use-parameter': 'refresh-token-one-use', 'allow-non-oidc': false,
  'auth-type-code-enabled': true, 'auth-type-code-revoke-replayed': false, 'auth-type-token-enabled': true,
  'auth-type-id-token-enabled': true, 'auth-type-none-enabled': true, 'auth-type-password-enabled': false,
  'auth-type-client-enabled': true, 'auth-type-device-enabled': false, 'auth-type-refresh-enabled': true,
  scope: [], 'additional-parameters': [], claims: [],
  'service-documentation': 'https://github.com/babelouest/glewlwyd/tree/master/docs', 'op-policy-uri': '',
  'op-tos-uri': '', 'jwks-show': true, 'jwks-x5c': [], 'request-parameter-allow': true,
  'request-uri-allow-https-non-secure': false, 'request-parameter-allow-encrypted': true,
  'request-parameter-ietf-strict': false, 'secret-type': 'pairwise',
  'address-claim': { type: 'no', formatted: '', street_address: '', locality: '', region: '', postal_code: '', country: '', mandatory: false },
  'name-claim': 'on-demand', 'name-claim-scope': [], 'email-claim': 'no', 'email-claim-scope': [],
  'scope-claim': 'no', 'scope-claim-scope': [], 'allowed-scope': ['openid'], 'pkce-allowed': false,
  'pkce-method-plain-allowed': false, 'pkce-required': false, 'pkce-required-public-client': false,
  'pkce-scopes': [], 'introspection-revocation-allowed': false, 'introspection-revocation-auth-scope': [],
  'introspection-revocation-allow-target-client': true, 'register-client-allowed': false,
  'register-client-auth-scope': [], 'register-client-credentials-scope': [], 'register-client-token-one-use': true,
  'register-client-management-allowed': true, 'register-resource-specify-allowed': false,
  'register-resource-default': [], 'register-default-properties': {}, 'session-management-allowed': false,
  'session-cookie-name': 'GLEWLWYD2_OIDC_SID', 'session-cookie-expiration': 2419200,
  'front-channel-logout-allowed': true, 'back-channel-logout-allowed': true, 'client-pubkey-parameter': '',
  'client-jwks-parameter': 'jwks', 'client-jwks_uri-parameter': 'jwks_uri', 'request-maximum-exp': 3600,
  'encrypt-out-token-allow': false, 'client-enc-parameter': 'enc', 'client-alg-parameter': 'alg',
  'client-alg_kid-parameter': 'alg_kid', 'client-encrypt_code-parameter': 'encrypt_code',
  'client-encrypt_at-parameter': 'encrypt_at', 'client-encrypt_userinfo-parameter': 'encrypt_userinfo',
  'client-encrypt_id_token-parameter': 'encrypt_id_token',
  'client-encrypt_refresh_token-parameter': 'encrypt_refresh_token',
  'client-encrypt_introspection-parameter': 'encrypt_introspection', 'device-authorization-expiration': 600,
  'device-authorization-interval': 5, 'client-cert-header-name': 'SSL_CLIENT_CERT',
  'client-cert-use-endpoint-aliases': false, 'client-cert-self-signed-allowed': false,
  'oauth-dpop-allowed': false, 'oauth-dpop-iat-duration': 10, 'oauth-dpop-iat-gap-duration': 0,
  'oauth-dpop-dpop_bound_access_tokens-property': 'dpop_bound_access_tokens', 'oauth-dpop-nonce-mandatory': false,
  'oauth-dpop-nonce-counter': 10, 'resource-allowed': false, 'resource-scope': {}, 'resource-client-property': '',
  'resource-scope-and-client-property': false, 'oauth-rar-allowed': false,
  'rar-types-client-property': 'authorization_details_types', 'rar-allow-auth-unsigned': false,
  'rar-allow-auth-unencrypted': true, 'rar-types': {}, 'oauth-par-allowed': false, 'oauth-par-duration': 90,
  'oauth-par-required': false, 'oauth-par-request_uri-prefix': 'urn:ietf:params:oauth:request_uri:',
  'prompt-continue-client-property': '', 'restrict-scope-client-property': '', 'oauth-ciba-allowed': false,
  'oauth-fapi-check-all': false, 'jwks-public-uri': '', iss: '/',
};

const parameters = {
  ...defaults,
  iss: env('ISSUER'),
  'jwt-type': 'rsa',
  'jwt-key-size': '256', // RS256
  key: readFileSync(env('KEY_FILE'), 'utf8'),
  cert: readFileSync(env('PUB_FILE'), 'utf8'),
  'access-token-duration': Number(env('ACCESS_TOKEN_TTL')),
  'refresh-token-duration': 3600,
  'refresh-token-one-use': 'always', // rotation: a refresh token works once
  'pkce-allowed': true,
  'pkce-required': true,
  'introspection-revocation-allowed': true, // RFC 7009 for clients with client_credentials
  'name-claim': 'mandatory',
  'email-claim': 'mandatory',
  'back-channel-logout-allowed': true,
  'session-management-allowed': true, // end_session (RP-initiated logout)
  // Access tokens name the granted scopes in `aud`, unless the client asks for a resource
  // (RFC 8707): then the API's audience.
  'resource-allowed': true,
  'resource-scope': { openid: [env('API_AUDIENCE')] },
};

console.log(JSON.stringify({ module: 'oidc', name: 'oidc', display_name: 'OpenID Connect', parameters }));
