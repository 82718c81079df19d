// The upstream API for the end-to-end tests: it trusts nothing but the JWT access token, whose
// signature it verifies against the JWKS of the OpenID Provider that issued it (one of ISSUERS;
// plus issuer, audience, type and expiry), and answers with the subject. A token bound to a
// DPoP key (`cnf.jkt`) must come as `Authorization: DPoP` with a proof of that key (RFC 9449
// 4.3, 7.1: typ, ES256 signature by the embedded jwk, htm, htu, iat, a jti never seen, ath).
// Every request is recorded, so the scenarios can prove that a valid token arrived, from which
// provider, and that no cookie did.
//
// Environment (set by run.sh): API_PORT, ISSUERS (space-separated: the providers it trusts),
// API_AUDIENCE, EVENTS_FILE; optional API_TYP, the JWT `typ` required (default `at+jwt`,
// RFC 9068; `none`: not checked, for a provider whose access tokens carry another or none).

import { createHash } from 'node:crypto';
import { appendFileSync } from 'node:fs';
import { createServer } from 'node:http';

import {
  calculateJwkThumbprint, createRemoteJWKSet, decodeJwt, decodeProtectedHeader, EmbeddedJWK,
  jwtVerify,
} from 'jose';

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

const seenProofs = new Set(); // DPoP proof jtis: a replayed proof is refused

/** Verifies the DPoP proof of a request presenting `token` bound to `jkt`; returns what it said. */
async function checkProof(req, token, jkt) {
  const proof = req.headers.dpop;
  if (typeof proof !== 'string' || proof.includes(',')) throw new Error('not one DPoP proof');
  const { payload, protectedHeader } = await jwtVerify(proof, EmbeddedJWK, {
    typ: 'dpop+jwt',
    algorithms: ['ES256'],
  });
  const htu = `http://${req.headers.host}${req.url.split('?')[0]}`;
  if (payload.htm !== req.method) throw new Error('DPoP htm');
  if (payload.htu !== htu) throw new Error(`DPoP htu ${payload.htu} is not ${htu}`);
  if (Math.abs(Date.now() / 1000 - payload.iat) > 60) throw new Error('DPoP iat');
  if (typeof payload.jti !== 'string' || seenProofs.has(payload.jti)) throw new Error('DPoP jti replayed');
  if (payload.ath !== createHash('sha256').update(token).digest('base64url')) throw new Error('DPoP ath');
  const thumbprint = await calculateJwkThumbprint(protectedHeader.jwk);
  if (thumbprint !== jkt) throw new Error('DPoP key is not the token\'s');
  seenProofs.add(payload.jti);
  return { jkt: thumbprint, htu: payload.htu };
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
    const match = /^(Bearer|DPoP) ([A-Za-z0-9._~+/-]+=*)$/.exec(req.headers.authorization ?? '');
    if (!match) throw new Error('no bearer or DPoP token');
    const [, scheme, token] = match;
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
    // A bound token is worth nothing without its key's proof; an unbound one never says DPoP.
    const jkt = payload.cnf?.jkt;
    if ((scheme === 'DPoP') !== Boolean(jkt)) throw new Error(`a ${jkt ? 'bound' : 'bearer'} token sent as ${scheme}`);
    if (jkt) entry.dpop = await checkProof(req, token, jkt);
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
