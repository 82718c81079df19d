// The OpenID Provider for the end-to-end tests: `oidc-provider` 8.x (OpenID Certified), configured
// for sealgate as a confidential client. Everything here is test-only: devInteractions signs in
// anyone, keys are generated at start, and storage is in memory.
//
// run.sh starts two of them, "op" and "op2": sealgate's two `[[providers]]`. Each has its own
// issuer, signing key (kid `e2e-NAME-rs256`), client and event file; op2 also gives its
// accounts other subjects (SUBJECT_PREFIX), so a session shows which provider signed it in.
//
// Environment (set by run.sh):
//   OP_PORT              port on 127.0.0.1; the issuer is http://127.0.0.1:OP_PORT
//   PROVIDER_NAME        the provider's name in sealgate's config: the redirect URI is
//                        ORIGIN/bff/callback/PROVIDER_NAME
//   SEALGATE_ORIGINS     space-separated origins of the sealgate instances (first gets back-channel logout)
//   API_AUDIENCE         resource indicator and `aud` of the JWT access tokens
//   CLIENT_ID            sealgate's client id
//   CLIENT_SECRET        sealgate's client secret
//   SUBJECT_PREFIX       optional: the client is pairwise and the subject of account X is
//                        SUBJECT_PREFIX + X (in ID and access tokens); unset: X
//   ACCESS_TOKEN_TTL     access-token lifetime in seconds (short, so refresh happens mid-test)
//   EVENTS_FILE          JSON lines of what happened, read by the scenarios
//   DPOP                 optional: "1" makes the client's access tokens DPoP-bound (RFC 9449),
//                        with a server nonce required on every token request

import { appendFileSync } from 'node:fs';

import { exportJWK, generateKeyPair } from 'jose';
import Provider, { errors } from 'oidc-provider';

const env = (name) => {
  const value = process.env[name];
  if (!value) throw new Error(`op.mjs: ${name} is not set`);
  return value;
};

const port = Number(env('OP_PORT'));
const issuer = `http://127.0.0.1:${port}`;
const name = env('PROVIDER_NAME');
const subjectPrefix = process.env.SUBJECT_PREFIX ?? '';
const origins = env('SEALGATE_ORIGINS').split(/\s+/).filter(Boolean);
const audience = env('API_AUDIENCE');
const accessTokenTtl = Number(env('ACCESS_TOKEN_TTL'));
const eventsFile = env('EVENTS_FILE');
const dpop = process.env.DPOP === '1';

function record(event, details = {}) {
  appendFileSync(eventsFile, `${JSON.stringify({ t: Date.now(), event, ...details })}\n`);
}

const { privateKey } = await generateKeyPair('RS256', { extractable: true });
const signingKey = { ...(await exportJWK(privateKey)), kid: `e2e-${name}-rs256`, alg: 'RS256', use: 'sig' };

const provider = new Provider(issuer, {
  clients: [
    {
      client_id: env('CLIENT_ID'),
      client_secret: env('CLIENT_SECRET'),
      client_name: `sealgate e2e (${name})`,
      grant_types: ['authorization_code', 'refresh_token'],
      response_types: ['code'],
      token_endpoint_auth_method: 'client_secret_basic',
      // DPoP: a token request without a proof is refused, not answered with a bearer token.
      ...(dpop ? { dpop_bound_access_tokens: true } : {}),
      id_token_signed_response_alg: 'RS256',
      redirect_uris: origins.map((o) => `${o}/bff/callback/${name}`),
      post_logout_redirect_uris: origins.map((o) => `${o}/`),
      // One back-channel URI per client (the spec's rule): the first instance receives it and
      // shares the revocation with the others through Redis.
      backchannel_logout_uri: `${origins[0]}/bff/backchannel-logout`,
      backchannel_logout_session_required: true,
      // A pairwise client needs a sector identifier when its redirect URIs name several hosts
      // (host:port here); this one is never fetched (sectorIdentifierUriValidate below).
      ...(subjectPrefix ? { subject_type: 'pairwise', sector_identifier_uri: 'https://sector.example.test/sealgate-e2e' } : {}),
    },
  ],
  subjectTypes: subjectPrefix ? ['public', 'pairwise'] : ['public'],
  // Pairwise subjects are how a real provider gives an account a subject of its own: here a
  // readable one, so the scenarios can predict it.
  pairwiseIdentifier: async (_ctx, accountId) => `${subjectPrefix}${accountId}`,
  sectorIdentifierUriValidate: () => false,
  jwks: { keys: [signingKey] },
  cookies: {
    keys: [Buffer.from(crypto.getRandomValues(new Uint8Array(32))).toString('base64url')],
    // 8.x defaults its session cookie to SameSite=None, which browsers drop without Secure, and
    // this provider runs on plain http://127.0.0.1. Everything here is same-site anyway.
    long: { httpOnly: true, sameSite: 'lax' },
  },
  async findAccount(_ctx, id) {
    return {
      accountId: id,
      async claims() {
        return {
          sub: id,
          name: `E2E ${id}`,
          preferred_username: id,
          email: `${id}@example.test`,
          email_verified: true,
        };
      },
    };
  },
  claims: {
    openid: ['sub'],
    profile: ['name', 'preferred_username'],
    email: ['email', 'email_verified'],
  },
  // sealgate reads user claims from the ID token (it does not call userinfo): put the scopes'
  // claims there.
  conformIdTokenClaims: false,
  pkce: { required: () => true },
  // Refresh tokens without offline_access, always rotated: a replayed refresh token makes the
  // provider revoke the whole grant (refresh-token reuse detection), which the scenarios watch.
  issueRefreshToken: async (_ctx, client) => client.grantTypeAllowed('refresh_token'),
  rotateRefreshToken: () => true,
  ttl: {
    AccessToken: accessTokenTtl,
    AuthorizationCode: 60,
    IdToken: 3600,
    RefreshToken: 3600,
    Interaction: 600,
    Session: 3600,
    Grant: 3600,
  },
  features: {
    devInteractions: { enabled: true }, // the provider's own login and consent pages
    revocation: { enabled: true },
    // With DPOP=1: proofs required (the client's dpop_bound_access_tokens) and a server nonce
    // on every token request, so sealgate's use_dpop_nonce retry runs at each grant.
    dPoP: dpop
      ? {
        enabled: true,
        nonceSecret: Buffer.from(crypto.getRandomValues(new Uint8Array(32))),
        requireNonce: () => true,
      }
      : { enabled: false },
    rpInitiatedLogout: { enabled: true },
    backchannelLogout: { enabled: true },
    resourceIndicators: {
      enabled: true,
      // Every authorization is for the API, so the access token is a JWT the API can verify.
      defaultResource: async () => audience,
      useGrantedResource: async () => true,
      async getResourceServerInfo(_ctx, resourceIndicator) {
        if (resourceIndicator !== audience) throw new errors.InvalidTarget();
        return {
          scope: 'api:read',
          audience,
          accessTokenTTL: accessTokenTtl,
          accessTokenFormat: 'jwt',
          jwt: { sign: { alg: 'RS256' } },
        };
      },
    },
  },
  // oidc-provider 8.x (the line that supports Node 20) sends back-channel logouts with `got` and
  // no address filter, so loopback works as is. 9.x refuses special-use addresses (SSRF
  // protection): when moving to it, override its `fetch` option to drop the guard dispatcher.
});

const grantType = (ctx) => ctx?.oidc?.params?.grant_type;
const clientId = (ctx) => ctx?.oidc?.client?.clientId;

// Access log: method, path (no query string: it carries codes) and status.
provider.use(async (ctx, next) => {
  const started = Date.now();
  await next();
  console.log(`${new Date().toISOString()} ${ctx.method} ${ctx.path} ${ctx.status} ${Date.now() - started}ms`);
  // Every request to the token endpoint, whatever its outcome (the mix-up scenario proves
  // that none was made).
  if (ctx.method === 'POST' && ctx.path === '/token') {
    record('token.request', { status: ctx.status, client_id: clientId(ctx), dpop: Boolean(ctx.get('dpop')) });
  }
  // 8.x emits no event for a successful RFC 7009 revocation.
  if (ctx.method === 'POST' && ctx.path === '/token/revocation') {
    record('revocation', { status: ctx.status, client_id: clientId(ctx) });
  }
});

provider.on('grant.success', (ctx) => record('grant.success', { grant_type: grantType(ctx), client_id: clientId(ctx) }));
provider.on('grant.error', (ctx, err) => record('grant.error', {
  grant_type: grantType(ctx), error: err.error, description: err.error_description,
}));
provider.on('grant.revoked', (_ctx, grantId) => record('grant.revoked', { grant_id: grantId }));
provider.on('authorization.success', (ctx) => record('authorization.success', { client_id: clientId(ctx) }));
provider.on('authorization.error', (_ctx, err) => record('authorization.error', { error: err.error, description: err.error_description }));
provider.on('interaction.started', (_ctx, prompt) => record('interaction.started', { prompt: prompt.name }));
provider.on('interaction.ended', () => record('interaction.ended'));
provider.on('end_session.success', (ctx) => record('end_session.success', { client_id: clientId(ctx) }));
provider.on('end_session.error', (_ctx, err) => record('end_session.error', { error: err.error, description: err.error_description }));
provider.on('revocation.success', (ctx) => record('revocation.success', { client_id: clientId(ctx) }));
provider.on('revocation.error', (_ctx, err) => record('revocation.error', { error: err.error, description: err.error_description }));
provider.on('backchannel.success', (_ctx, client, accountId, sid) => record('backchannel.success', {
  client_id: client.clientId, sub: accountId, sid,
}));
provider.on('backchannel.error', (_ctx, err, client, accountId, sid) => record('backchannel.error', {
  client_id: client.clientId, sub: accountId, sid, error: String(err?.message ?? err),
}));
provider.on('server_error', (_ctx, err) => record('server_error', { error: String(err?.stack ?? err) }));
// The refresh token's value is its jti (opaque format): recorded so the scenarios can check
// that it never reaches the page.
for (const what of ['saved', 'consumed', 'destroyed']) {
  provider.on(`refresh_token.${what}`, (token) => record(`refresh_token.${what}`, {
    jti: token.jti, grant_id: token.grantId, sid: token.sessionUid,
  }));
}

provider.listen(port, '127.0.0.1', () => {
  console.log(`${name}: ${issuer} ready`);
  record('ready', { issuer });
});
