// The upstream API for the end-to-end tests: it trusts nothing but the bearer JWT, whose
// signature it verifies against the JWKS of the OpenID Provider that issued it (one of ISSUERS;
// plus issuer, audience, type and expiry), and answers with the subject. Every request is
// recorded, so the scenarios can prove that a valid token arrived, from which provider, and
// that no cookie did.
//
// Environment (set by run.sh): API_PORT, ISSUERS (space-separated: the providers it trusts),
// API_AUDIENCE, EVENTS_FILE; optional API_TYP, the JWT `typ` required (default `at+jwt`,
// RFC 9068; `none`: not checked, for a provider whose access tokens carry another or none).

import { appendFileSync } from 'node:fs';
import { createServer } from 'node:http';

import { createRemoteJWKSet, decodeJwt, decodeProtectedHeader, jwtVerify } from 'jose';

const env = (name) => {
  const value = process.env[name];
  if (!value) throw new Error(`api.mjs: ${name} is not set`);
  return value;
};

const port = Number(env('API_PORT'));
const issuers = env('ISSUERS').split(/\s+/).filter(Boolean);
const audience = env('API_AUDIENCE');
const eventsFile = env('EVENTS_FILE');
const typ = process.env.API_TYP ?? 'at+jwt';

const jwks = new Map(); // issuer -> its key set, from its discovery document

/** The key set of `issuer`, which must be one of ISSUERS. */
async function keySet(issuer) {
  if (!issuers.includes(issuer)) throw new Error('untrusted issuer');
  if (!jwks.has(issuer)) {
    const res = await fetch(`${issuer}/.well-known/openid-configuration`);
    if (!res.ok) throw new Error(`discovery: ${res.status}`);
    const { jwks_uri: jwksUri, issuer: discovered } = await res.json();
    if (discovered !== issuer) throw new Error(`discovery names issuer ${discovered}`);
    jwks.set(issuer, createRemoteJWKSet(new URL(jwksUri)));
  }
  return jwks.get(issuer);
}

function send(res, status, body) {
  res.writeHead(status, { 'content-type': 'application/json', 'cache-control': 'no-store' });
  res.end(JSON.stringify(body));
}

const server = createServer(async (req, res) => {
  const entry = {
    t: Date.now(),
    method: req.method,
    path: req.url,
    forwarded_host: req.headers['x-forwarded-host'] ?? null,
    // Names only: a cookie reaching the API at all is the finding.
    cookie_names: (req.headers.cookie ?? '').split(';').map((c) => c.split('=')[0].trim()).filter(Boolean),
  };
  try {
    const match = /^Bearer ([A-Za-z0-9._~+/-]+=*)$/.exec(req.headers.authorization ?? '');
    if (!match) throw new Error('no bearer token');
    const token = match[1];
    // The signature segment identifies the token (the scenarios look for it in the page)
    // without being usable on its own.
    entry.token_signature = token.split('.')[2] ?? null;
    entry.typ = decodeProtectedHeader(token).typ ?? null;
    // The unverified `iss` only picks the key set; jwtVerify then requires that same issuer
    // in the signed payload.
    const { iss, aud } = decodeJwt(token);
    entry.unverified_aud = aud ?? null; // shown when the audience check fails
    const { payload, protectedHeader } = await jwtVerify(token, await keySet(iss), {
      issuer: iss,
      audience,
      ...(typ === 'none' ? {} : { typ }),
      algorithms: ['RS256'],
    });
    Object.assign(entry, {
      verified: true,
      alg: protectedHeader.alg,
      kid: protectedHeader.kid,
      iss: payload.iss,
      sub: payload.sub,
      client_id: payload.client_id,
      scope: payload.scope ?? null,
      jti: payload.jti,
      iat: payload.iat,
      exp: payload.exp,
    });
    appendFileSync(eventsFile, `${JSON.stringify(entry)}\n`);
    send(res, 200, { sub: payload.sub, iss: payload.iss, jti: payload.jti, exp: payload.exp, via: entry.forwarded_host });
  } catch (err) {
    Object.assign(entry, { verified: false, error: err?.code ? `${err.code}: ${err.message}` : String(err?.message ?? err) });
    appendFileSync(eventsFile, `${JSON.stringify(entry)}\n`);
    send(res, 401, { error: 'invalid_token' });
  }
  console.log(`${new Date().toISOString()} ${req.method} ${req.url} verified=${entry.verified}`);
});

server.listen(port, '127.0.0.1', () => console.log(`api: http://127.0.0.1:${port} ready`));
