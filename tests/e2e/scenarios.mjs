// End-to-end scenarios: a real Chromium (driven by playwright-core) signs in through a real
// OpenID Provider (oidc-provider; two instances, sealgate's providers "op", the default, and
// "op2") via two sealgate instances sharing Redis, and calls an API that verifies the token it
// receives. Each scenario asserts what the user sees and what the
// servers recorded (the provider's and the API's event files). run.sh starts every server and
// sets the environment; `node scenarios.mjs [name …]` runs all scenarios or the named ones.

import { readFileSync } from 'node:fs';
import { join } from 'node:path';

import {
  JWT_SHAPE, SESSION_COOKIE, callApi, check, env, equal, eventsIn, eventually, pageFetch, readEvents,
  runScenarios, seeText, sessionCookies, sleep, text,
} from './lib.mjs';

const A = env('ORIGIN_A'); // sealgate instance A (receives back-channel logout)
const B = env('ORIGIN_B'); // sealgate instance B
const OP = env('ISSUER'); // provider "op", the first in sealgate's config: the default
const OP2 = env('ISSUER2'); // provider "op2"; its subjects are "op2|" + the login
const ARTIFACTS = env('ARTIFACTS');
const OP_EVENTS = env('OP_EVENTS');
const OP2_EVENTS = env('OP2_EVENTS');
const API_EVENTS = env('API_EVENTS');
const ACCESS_TOKEN_TTL = Number(env('ACCESS_TOKEN_TTL'));
const CHROMIUM = env('CHROMIUM');

// ---------------------------------------------------------------------------------------------
// Helpers (the shared ones are in lib.mjs)

/** Provider op's events since `t` (ms), optionally of one kind. */
const opEvents = (since, event) => eventsIn(OP_EVENTS, since, event);
/** Provider op2's events since `t` (ms), optionally of one kind. */
const op2Events = (since, event) => eventsIn(OP2_EVENTS, since, event);

/** The requests the API received since `t` (ms). */
function apiCalls(since) {
  return readEvents(API_EVENTS).filter((e) => e.t >= since);
}

const refreshGrants = (since) => opEvents(since).filter((e) => e.grant_type === 'refresh_token'
  && (e.event === 'grant.success' || e.event === 'grant.error'));

const onOp = (url, op = OP) => url.startsWith(`${op}/`);

/**
 * Signs in from the SPA at `origin`: the SPA's button, the provider's own login page (any
 * login, any password with devInteractions) and, when asked, its consent page. Ends on the SPA
 * showing the user.
 */
async function signIn(page, origin, user) {
  if (!page.url().startsWith(`${origin}/`)) {
    await page.goto(`${origin}/`);
  }
  await seeText(page, '#state', 'no');
  await page.click('#login');
  await completeOpLogin(page, origin, user);
}

/** Which of the provider's interaction pages is shown: "login" or "consent". */
async function opPrompt(page, op = OP) {
  await page.waitForURL((u) => onOp(u.href, op) && u.pathname.startsWith('/interaction/'));
  const form = await page.waitForSelector('form input[name=prompt]', { state: 'attached' });
  return form.getAttribute('value');
}

async function seeOpLoginPage(page, message, op = OP) {
  equal(await opPrompt(page, op), 'login', message);
  equal(await text(page, 'h1'), 'Sign-in', `${message} (heading)`);
  check(await page.isVisible('input[name=login]') && await page.isVisible('input[name=password]'),
    `${message} (login and password fields)`);
}

/**
 * On the provider `op`'s login page: signs in as `user` and, when asked, consents. The
 * browser is then on its way back to sealgate at `origin`.
 */
async function passOpPages(page, origin, user, op = OP) {
  await seeOpLoginPage(page, 'the provider shows its login page', op);
  await page.fill('input[name=login]', user);
  await page.fill('input[name=password]', 'correct horse battery staple');
  await page.click('button[type=submit]');
  await page.waitForURL((u) => u.href.startsWith(`${origin}/`)
    || (onOp(u.href, op) && u.pathname.startsWith('/interaction/') && !u.pathname.endsWith('/login')));
  if (onOp(page.url(), op)) {
    equal(await opPrompt(page, op), 'consent', 'after the login, the provider asks for consent');
    equal(await text(page, 'h1'), 'Authorize', 'the consent page\'s heading');
    await page.click('button[type=submit]');
  }
}

/**
 * Signs in as `user` on the provider `op`'s pages; ends on the SPA at `origin` showing the
 * subject `sub`. Returns what the SPA shows (`/bff/user`).
 */
async function completeOpLogin(page, origin, user, { op = OP, sub = user } = {}) {
  await passOpPages(page, origin, user, op);
  await page.waitForURL((u) => u.href.startsWith(`${origin}/`));
  await seeText(page, '#state', 'yes');
  const shown = JSON.parse(await text(page, '#user'));
  equal(shown.sub, sub, 'the SPA shows the signed-in subject');
  return shown;
}

/** On the provider's logout confirmation page: "Yes, sign me out". */
async function confirmOpLogout(page, op = OP) {
  await page.waitForURL((u) => onOp(u.href, op) && u.pathname === '/session/end');
  equal(await page.title(), 'Logout Request', 'the provider asks to confirm the logout');
  await page.click('button[name=logout][value=yes]');
}

let userCounter = 0;
const newUser = (name) => `${name}-${process.pid}-${(userCounter += 1)}`;

// ---------------------------------------------------------------------------------------------
// Scenarios

const scenarios = [];
const scenario = (name, title, fn) => scenarios.push({ name, title, fn });

scenario('login', 'log in through the provider\'s login page; the SPA shows /bff/user', async ({ context, since }) => {
  const page = await context.newPage();
  const user = newUser('alice');
  await page.goto(`${A}/`);
  await seeText(page, '#state', 'no'); // anonymous: /bff/user is 401
  await page.click('#login');
  await completeOpLogin(page, A, user);

  const shown = JSON.parse(await text(page, '#user'));
  equal(shown.provider, 'op', '/bff/user names the provider: without ?provider=, the first one');
  equal(shown.claims?.email, `${user}@example.test`, '/bff/user carries the ID token\'s claims');
  equal(shown.claims?.preferred_username, user, '/bff/user carries preferred_username');
  check(typeof shown.logout_url === 'string' && shown.session?.absolute_expires_at > Date.now() / 1000,
    '/bff/user carries the logout URL and session expiry', shown);

  const grants = opEvents(since, 'grant.success');
  equal(grants.length, 1, 'the provider issued tokens once');
  equal(grants[0].grant_type, 'authorization_code', 'through the authorization-code grant');
  equal(grants[0].client_id, 'sealgate', 'to sealgate');
  equal(opEvents(since, 'grant.error').length, 0, 'no failed grant at the provider');

  const cookies = await sessionCookies(context);
  const first = cookies.find((c) => c.name === `${SESSION_COOKIE}.0`);
  check(first, 'the session cookie is set', cookies.map((c) => c.name));
  check(first.httpOnly && first.secure && first.sameSite === 'Strict' && first.path === '/'
    && first.domain === '127.0.0.1', 'the session cookie is HttpOnly, Secure, SameSite=Strict, host-only, Path=/', first);
  check(cookies.every((c) => !c.name.includes('login')), 'no login-flow cookie is left', cookies.map((c) => c.name));
});

scenario('api', 'an API call through sealgate succeeds; the upstream verified the token', async ({ context }) => {
  const page = await context.newPage();
  const user = newUser('bob');
  await signIn(page, A, user);
  const t = Date.now();
  const answer = await callApi(page);
  equal(answer.sub, user, 'the API answers with the signed-in subject');

  const calls = apiCalls(t);
  equal(calls.length, 1, 'the upstream received one request');
  const [call] = calls;
  check(call.verified, 'the upstream verified the bearer JWT against the provider\'s JWKS', call);
  equal(call.iss, OP, 'the token was issued by the default provider, op');
  equal(call.sub, user, 'the token\'s subject');
  equal(call.client_id, 'sealgate', 'the token was issued to sealgate');
  check(call.scope?.split(' ').includes('api:read'), 'the token carries the API scope', call);
  equal(call.path, '/whoami', 'the route prefix was mapped onto the upstream');
  equal(call.cookie_names.length, 0, `no cookie reached the upstream (got ${call.cookie_names})`);
  equal(call.forwarded_host, new URL(A).host, 'through instance A');
});

scenario('no-token-in-page', 'document.cookie shows no session cookie; no token anywhere in page storage', async ({ context, since }) => {
  const page = await context.newPage();
  await signIn(page, A, newUser('carol'));
  await callApi(page);
  await page.reload();
  await seeText(page, '#state', 'yes');

  const accessTokenSignature = apiCalls(since).at(-1).token_signature;
  const refreshToken = opEvents(since, 'refresh_token.saved').at(-1)?.jti;
  check(accessTokenSignature && refreshToken, 'the servers recorded the tokens they issued and received');

  const seen = await page.evaluate(async () => {
    const dump = (s) => JSON.stringify(Object.fromEntries(Object.keys(s).map((k) => [k, s.getItem(k)])));
    const user = await (await fetch('/bff/user', { headers: { 'X-CSRF': '1' } })).text();
    return {
      cookie: document.cookie,
      localStorage: dump(localStorage),
      sessionStorage: dump(sessionStorage),
      indexedDB: JSON.stringify(await indexedDB.databases()),
      caches: JSON.stringify(await caches.keys()),
      html: document.documentElement.outerHTML,
      user,
    };
  });
  equal(seen.cookie, '', 'document.cookie is empty: the session cookie is HttpOnly');
  for (const [where, value] of Object.entries(seen)) {
    check(!value.includes(accessTokenSignature), `no access token in ${where}`);
    check(!value.includes(refreshToken), `no refresh token in ${where}`);
    check(!JWT_SHAPE.test(value), `nothing JWT-shaped in ${where}`);
  }
  for (const c of await sessionCookies(context)) {
    check(!c.value.includes(accessTokenSignature) && !c.value.includes(refreshToken) && !JWT_SHAPE.test(c.value),
      `the sealed cookie ${c.name} shows no token`);
  }
});

scenario('refresh', 'past the access-token lifetime, API calls from two tabs at once still succeed (one rotation)', async ({ context }) => {
  const tabA = await context.newPage();
  const user = newUser('dave');
  await signIn(tabA, A, user);
  const first = await callApi(tabA);
  const tabB = await context.newPage();
  await tabB.goto(`${B}/`); // the same browser, so the same cookie: a load balancer's view
  await seeText(tabB, '#state', 'yes');
  const cookieBefore = (await sessionCookies(context)).map((c) => c.value).join();

  // Past the access token's expiry: every call now needs a refreshed token.
  const waitMs = first.exp * 1000 + 1000 - Date.now();
  check(waitMs <= (ACCESS_TOKEN_TTL + 1) * 1000, 'the access token lives ACCESS_TOKEN_TTL seconds', first);
  await sleep(Math.max(0, waitMs));
  const t = Date.now();
  await Promise.all([tabA.click('#call-many'), tabB.click('#call-many')]);
  await seeText(tabA, '#api-status', '200,200,200');
  await seeText(tabB, '#api-status', '200,200,200');

  const calls = apiCalls(t);
  equal(calls.length, 6, 'the upstream received all six calls');
  check(calls.every((c) => c.verified && c.sub === user), 'every call carried a valid token for the user', calls);
  const jtis = new Set(calls.map((c) => c.jti));
  equal(jtis.size, 1, 'every call carried the same refreshed token');
  check(!jtis.has(first.jti) && calls[0].exp > first.exp, 'a new access token, expiring later', { first, calls });
  check(calls.some((c) => c.forwarded_host === new URL(A).host) && calls.some((c) => c.forwarded_host === new URL(B).host),
    'calls went through both instances', calls.map((c) => c.forwarded_host));

  const refreshes = refreshGrants(t);
  equal(refreshes.length, 1, 'one refresh at the provider for six parallel calls on two instances');
  equal(refreshes[0].event, 'grant.success', 'the refresh succeeded');
  equal(opEvents(t, 'refresh_token.consumed').length, 1, 'the old refresh token was consumed once (rotation)');
  equal(opEvents(t, 'grant.revoked').length, 0, 'no refresh-token reuse detected (the provider would revoke the grant)');
  check((await sessionCookies(context)).map((c) => c.value).join() !== cookieBefore, 'the browser holds the re-sealed cookie');

  // The browser's new cookie carries the new tokens: no further refresh.
  const t2 = Date.now();
  equal((await callApi(tabA)).jti, calls[0].jti, 'the next call from tab A uses the refreshed token');
  equal((await callApi(tabB)).jti, calls[0].jti, 'the next call from tab B uses the refreshed token');
  equal(refreshGrants(t2).length, 0, 'no second refresh');
});

scenario('logout', 'logout → RP-initiated logout at the provider → the old cookie, replayed, is refused', async ({ browser, context, since }) => {
  const page = await context.newPage();
  await signIn(page, A, newUser('erin'));
  await callApi(page);
  const stolen = await sessionCookies(context);

  const t = Date.now();
  await page.click('#logout');
  await confirmOpLogout(page);
  await page.waitForURL((u) => u.href.startsWith(`${A}/`));
  await seeText(page, '#state', 'no');

  const ended = opEvents(t, 'end_session.success');
  equal(ended.length, 1, 'the provider ended its session');
  equal(ended[0].client_id, 'sealgate', 'for sealgate (id_token_hint), then returned to post_logout_redirect_uri');
  const revocations = opEvents(t, 'revocation');
  check(revocations.length === 1 && revocations[0].status === 200 && revocations[0].client_id === 'sealgate',
    'sealgate revoked the refresh token at the provider (RFC 7009)', revocations);
  const refreshToken = opEvents(since, 'refresh_token.saved').at(-1).jti;
  check(opEvents(t, 'refresh_token.destroyed').some((e) => e.jti === refreshToken),
    'the provider destroyed the session\'s refresh token');
  equal((await sessionCookies(context)).length, 0, 'every session cookie was cleared');

  // Someone who copied the cookie before the logout replays it.
  const thief = await browser.newContext();
  try {
    await thief.addCookies(stolen);
    const replay = await thief.newPage();
    await replay.goto(`${A}/`);
    await seeText(replay, '#state', 'no');
    const t2 = Date.now();
    equal(await pageFetch(replay, '/api/whoami'), 401, 'the replayed cookie gets 401 from the API route');
    equal(await pageFetch(replay, '/bff/user'), 401, 'and from /bff/user');
    equal(apiCalls(t2).length, 0, 'nothing reached the upstream');
  } finally {
    await thief.close();
  }

  // Signing in again needs the provider's login page: its session is gone.
  await page.click('#login');
  await seeOpLoginPage(page, 'signing in again needs the provider\'s login page');
});

scenario('backchannel', 'ending the session at the provider reaches sealgate by back-channel; the next API call gets 401', async ({ context }) => {
  const page = await context.newPage();
  const user = newUser('frank');
  await signIn(page, A, user);
  await callApi(page);

  // The user signs out at the provider itself (another app, or the provider's own page).
  const t = Date.now();
  const opTab = await context.newPage();
  const discovery = await (await fetch(`${OP}/.well-known/openid-configuration`)).json();
  await opTab.goto(discovery.end_session_endpoint);
  await confirmOpLogout(opTab);
  await opTab.waitForURL((u) => onOp(u.href) && u.pathname.startsWith('/session/end/success'));
  check((await opTab.textContent('h1')).includes('Sign-out Success'), 'the provider confirms the sign-out');

  const delivered = await eventually('the provider delivered the back-channel logout',
    () => opEvents(t).find((e) => e.event === 'backchannel.success' || e.event === 'backchannel.error'));
  equal(delivered.event, 'backchannel.success', `sealgate accepted the logout token (${delivered.error ?? ''})`);
  equal(delivered.sub, user, 'for the user');
  check(delivered.sid, 'with the provider session id', delivered);

  // The SPA's next API call: 401, and the SPA sends the user to sign in.
  const [response] = await Promise.all([
    page.waitForResponse((r) => r.url() === `${A}/api/whoami`),
    page.click('#call'),
  ]);
  equal(response.status(), 401, 'the browser\'s next API call gets 401');
  await seeOpLoginPage(page, 'the SPA sent the user to the provider\'s login page');

  // Instance B learned it through Redis (the provider only calls A).
  const tabB = await context.newPage();
  await tabB.goto(`${B}/`);
  await seeText(tabB, '#state', 'no');
  equal(apiCalls(t).length, 0, 'nothing reached the upstream after the provider\'s logout');
  equal(refreshGrants(t).length, 0, 'no refresh was attempted: the refusal came from the back-channel logout');

  // Signing in again works (the revocation covers sessions issued before it, not after).
  await completeOpLogin(page, A, user);
  equal((await callApi(page)).sub, user, 'a new session after the provider\'s logout works');
});

scenario('cluster', 'two instances and Redis: a logout on A is honoured by B', async ({ browser, context }) => {
  const tabA = await context.newPage();
  const user = newUser('grace');
  await signIn(tabA, A, user);
  const tabB = await context.newPage();
  await tabB.goto(`${B}/`);
  await seeText(tabB, '#state', 'yes');
  const t0 = Date.now();
  equal((await callApi(tabB)).via, new URL(B).host, 'instance B serves the session A created');
  equal(apiCalls(t0).length, 1, 'the upstream received the call through B');
  const stolen = await sessionCookies(context);

  const t = Date.now();
  await tabA.click('#logout');
  await confirmOpLogout(tabA);
  await tabA.waitForURL((u) => u.href.startsWith(`${A}/`));
  await seeText(tabA, '#state', 'no');

  const thief = await browser.newContext();
  try {
    await thief.addCookies(stolen);
    const replay = await thief.newPage();
    await replay.goto(`${B}/`);
    const took = Date.now();
    await eventually('instance B refuses the replayed cookie', async () => (await pageFetch(replay, '/bff/user')) === 401, 1000);
    console.log(`    B refused the logged-out session ${Date.now() - took} ms after the page loaded`);
    equal(await pageFetch(replay, '/api/whoami'), 401, 'B refuses the API call too');
  } finally {
    await thief.close();
  }
  equal(apiCalls(t).length, 0, 'nothing reached the upstream after the logout');
  equal(refreshGrants(t).length, 0, 'no refresh was attempted: the refusal came from the shared denylist');
});

scenario('two-providers', 'sign in with op2 and, in another browser, with op (the default): both sessions work; op2\'s logout leaves op\'s', async ({ context, newContext, since }) => {
  const login = newUser('heidi'); // the same login at both providers: two different accounts
  const sub2 = `op2|${login}`;

  // Browser 1: provider op2, on its own login page.
  const page2 = await context.newPage();
  await page2.goto(`${A}/`);
  await seeText(page2, '#state', 'no');
  await page2.goto(`${A}/bff/login?provider=op2&returnUrl=%2F`);
  check(onOp(page2.url(), OP2), 'login?provider=op2 goes to op2', page2.url());
  const shown2 = await completeOpLogin(page2, A, login, { op: OP2, sub: sub2 });
  equal(shown2.provider, 'op2', '/bff/user names provider op2');
  equal(shown2.claims?.preferred_username, login, 'with op2\'s claims');
  const codeGrants = (events) => events.filter((e) => e.grant_type === 'authorization_code');
  equal(codeGrants(op2Events(since, 'grant.success')).length, 1, 'op2 issued the tokens');
  equal(op2Events(since, 'grant.success')[0].client_id, 'sealgate-op2', 'to sealgate\'s client at op2');
  equal(opEvents(since, 'token.request').length, 0, 'op was not asked for tokens');

  let t = Date.now();
  const answer2 = await callApi(page2);
  equal(answer2.sub, sub2, 'the API answers with op2\'s subject');
  const [call2, ...more2] = apiCalls(t);
  check(call2 && more2.length === 0, 'the upstream received one request', apiCalls(t));
  check(call2.verified, 'the upstream verified the token against op2\'s JWKS', call2);
  equal(call2.iss, OP2, 'the token was issued by op2');
  equal(call2.kid, 'e2e-op2-rs256', 'signed with op2\'s key');
  equal(call2.client_id, 'sealgate-op2', 'to sealgate\'s client at op2');

  // Browser 2: the default provider, op, with the same login name.
  const other = await newContext();
  const page1 = await other.newPage();
  await page1.goto(`${A}/`);
  await seeText(page1, '#state', 'no');
  await page1.click('#login'); // /bff/login without provider
  check(onOp(page1.url()), 'login without provider goes to op', page1.url());
  const shown1 = await completeOpLogin(page1, A, login);
  equal(shown1.provider, 'op', '/bff/user names provider op');
  t = Date.now();
  equal((await callApi(page1)).sub, login, 'the API answers with op\'s subject');
  const [call1] = apiCalls(t);
  check(call1.verified && call1.iss === OP && call1.kid === 'e2e-op-rs256' && call1.client_id === 'sealgate',
    'the token came from op, signed with op\'s key, issued to sealgate', call1);

  // Side by side: each browser keeps its own session and provider, on either instance.
  const tabB = await context.newPage();
  await tabB.goto(`${B}/`);
  await seeText(tabB, '#state', 'yes');
  equal(JSON.parse(await text(tabB, '#user')).provider, 'op2', 'instance B serves the op2 session');
  equal((await callApi(tabB)).iss, OP2, 'browser 1 still calls with op2\'s token');
  equal((await callApi(page1)).iss, OP, 'browser 2 still calls with op\'s token');

  // Logging out of the op2 session ends it at op2, not at op.
  t = Date.now();
  await page2.click('#logout');
  await confirmOpLogout(page2, OP2);
  await page2.waitForURL((u) => u.href.startsWith(`${A}/`));
  await seeText(page2, '#state', 'no');
  const ended = op2Events(t, 'end_session.success');
  check(ended.length === 1 && ended[0].client_id === 'sealgate-op2', 'op2 ended its session, for sealgate', ended);
  const revocations = op2Events(t, 'revocation');
  check(revocations.length === 1 && revocations[0].status === 200 && revocations[0].client_id === 'sealgate-op2',
    'sealgate revoked the refresh token at op2', revocations);
  const delivered = await eventually('op2 delivered its back-channel logout',
    () => op2Events(t).find((e) => e.event === 'backchannel.success' || e.event === 'backchannel.error'));
  equal(delivered.event, 'backchannel.success', `sealgate accepted op2's logout token (${delivered.error ?? ''})`);
  const atOp = opEvents(t).filter((e) => ['end_session.success', 'revocation', 'token.request', 'backchannel.success',
    'backchannel.error'].includes(e.event));
  equal(atOp.length, 0, `nothing reached op (${JSON.stringify(atOp)})`);

  // The op session is untouched, on both instances.
  await page1.reload();
  await seeText(page1, '#state', 'yes');
  equal(JSON.parse(await text(page1, '#user')).provider, 'op', 'browser 2 is still signed in with op');
  t = Date.now();
  const after = await callApi(page1);
  check(after.sub === login && after.iss === OP, 'and its API calls still succeed with op\'s token', after);
  const tab1B = await other.newPage();
  await tab1B.goto(`${B}/`);
  await seeText(tab1B, '#state', 'yes');
  equal((await callApi(tab1B)).sub, login, 'on instance B too');
  equal(apiCalls(t).filter((c) => c.iss === OP2).length, 0, 'no op2 token reached the upstream after the logout');
});

scenario('dpop', 'op2\'s tokens are DPoP-bound: its nonce is honoured, each session has its own key, each API call a fresh proof', async ({ context, newContext, since }) => {
  const signInAtOp2 = async (ctx, login) => {
    const page = await ctx.newPage();
    await page.goto(`${A}/bff/login?provider=op2&returnUrl=%2F`);
    await completeOpLogin(page, A, login, { op: OP2, sub: `op2|${login}` });
    return page;
  };
  const page = await signInAtOp2(context, newUser('ivan'));
  // Every token request carries a proof. op2 refuses one without its current nonce
  // (use_dpop_nonce) and sealgate retries once with the nonce it gave, then keeps it for later
  // grants: a refusal shows up at an instance's first grant at op2 (in this scenario, or an
  // earlier one of the run) and when op2 rotates its nonce, each time followed by a success.
  const requests = op2Events(since, 'token.request');
  check(requests.length >= 1 && requests.every((r) => r.dpop), 'each token request had a DPoP proof', requests);
  equal(requests.at(-1).status, 200, 'the code exchange is granted');
  const run = op2Events(0).filter((e) => e.event === 'token.request' || e.event === 'grant.error');
  const refusals = run.filter((e) => e.event === 'grant.error');
  check(refusals.length >= 1 && refusals.every((e) => e.error === 'use_dpop_nonce'),
    'op2 asked for its nonce, and refused nothing else', refusals);
  check(run.every((e, i) => e.event !== 'grant.error' || run.slice(i + 1).some((n) => n.status === 200)),
    'each nonce refusal was followed by a granted retry', run);

  let t = Date.now();
  await callApi(page);
  await callApi(page);
  const calls = apiCalls(t);
  check(calls.length === 2 && calls.every((c) => c.verified && c.dpop && c.iss === OP2),
    'the API verified op2\'s bound token and a proof of its key on each call', calls);
  equal(calls[0].dpop.jkt, calls[1].dpop.jkt, 'the same key for the whole session');
  check(calls[0].dpop.htu.endsWith('/whoami'), 'the proof names the upstream URL', calls[0].dpop);

  // Another session, another key.
  const other = await signInAtOp2(await newContext(), newUser('judy'));
  t = Date.now();
  await callApi(other);
  const [call] = apiCalls(t);
  check(call?.dpop && call.dpop.jkt !== calls[0].dpop.jkt, 'another session signs with a key of its own', call);
});

scenario('mix-up', 'op2\'s authorization response delivered to op\'s callback: the failure page, no token request', async ({ context, since }) => {
  const page = await context.newPage();
  // Hold the browser's request to sealgate's callback (it follows op2's redirect, which
  // Playwright's page.route does not see) and take its URL: what an attacker would deliver.
  const cdp = await context.newCDPSession(page);
  const held = new Promise((resolve) => {
    cdp.on('Fetch.requestPaused', ({ requestId, request }) => {
      resolve(request.url);
      cdp.send('Fetch.failRequest', { requestId, errorReason: 'Aborted' }).catch(() => {});
    });
  });
  await cdp.send('Fetch.enable', { patterns: [{ urlPattern: `${A}/bff/callback/*`, requestStage: 'Request' }] });
  const login = newUser('ivan');
  await page.goto(`${A}/bff/login?provider=op2&returnUrl=%2F`);
  await passOpPages(page, A, login, OP2);
  const response = new URL(await held);
  await cdp.send('Fetch.disable');
  await cdp.detach();
  equal(response.pathname, '/bff/callback/op2', 'op2 sent the browser to op2\'s callback');
  check(response.searchParams.get('code') && response.searchParams.get('state'), 'with a code and the state');
  equal(response.searchParams.get('iss'), OP2, 'and op2 as iss (RFC 9207)');

  const log = join(ARTIFACTS, 'sealgate-a.log');
  const mixUps = () => (readFileSync(log, 'utf8').match(/mix-up: a flow of provider "op2~[^"]*" at the callback of "op"/g) ?? []).length;
  const before = mixUps();
  const t = Date.now();
  const crossed = new URL(response);
  crossed.pathname = '/bff/callback/op';
  const shown = await page.goto(crossed.href);
  equal(shown.status(), 400, 'op\'s callback answers 400');
  equal(await text(page, 'h1'), 'Sign-in failed', 'sealgate shows its failure page');
  check(await page.isVisible('a'), 'with a link to start again');
  await eventually('sealgate logged the refusal as a mix-up', () => mixUps() > before, 2000);
  equal(opEvents(t, 'token.request').length, 0, 'op\'s token endpoint was not called');
  equal(op2Events(since, 'token.request').length, 0, 'nor op2\'s: the code was never redeemed');

  // The flow is spent: delivered to op2's own callback now, it fails too.
  equal((await page.goto(response.href)).status(), 400, 'op2\'s callback then refuses the response as well');
  equal(op2Events(since, 'token.request').length, 0, 'still no token request at op2');
  equal((await sessionCookies(context)).length, 0, 'no session cookie');
  await page.goto(`${A}/`);
  await seeText(page, '#state', 'no'); // the SPA: /bff/user is 401
});

// ---------------------------------------------------------------------------------------------

await runScenarios({
  scenarios,
  only: process.argv.slice(2),
  label: 'e2e',
  artifacts: ARTIFACTS,
  chromiumPath: CHROMIUM,
  timeoutSeconds: Number(process.env.E2E_TIMEOUT ?? 300),
});
