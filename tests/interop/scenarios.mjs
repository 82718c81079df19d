// Interoperability scenarios: a real Chromium (playwright-core) signs in through a real OpenID
// Provider's own login page via sealgate, calls an API that verifies the access token against
// that provider's JWKS, refreshes, and logs out. The provider's pages are driven by its hooks
// (providers/NAME.mjs: login, logout confirmation, provider-initiated logout, and which
// features it offers); a scenario a provider cannot support throws Skip with the reason, which
// the matrix shows. The assertions use what the user sees, what the API recorded, sealgate's
// metrics and, for the revocation, a second sealgate instance that shares nothing with the
// first but its key.
//
// tests/interop/run.sh starts the servers and sets the environment; `node scenarios.mjs
// [name …]` runs all scenarios or the named ones, and writes RESULTS_FILE.

import { readFileSync } from 'node:fs';
import { join } from 'node:path';

import {
  JWT_SHAPE, SESSION_COOKIE, Skip, callApi, check, env, equal, eventually, pageFetch, readEvents,
  runScenarios, seeText, sessionCookies, sleep, text,
} from '../e2e/lib.mjs';

const A = env('ORIGIN_A'); // sealgate instance A
const B = env('ORIGIN_B'); // sealgate instance B: the same key, no shared state
const ISSUER = env('ISSUER');
const PROVIDER = env('PROVIDER'); // sealgate's [[providers]] name, and providers/NAME.mjs
const ARTIFACTS = env('ARTIFACTS');
const API_EVENTS = env('API_EVENTS');
const ACCESS_TOKEN_TTL = Number(env('ACCESS_TOKEN_TTL'));
const CREDENTIALS = { user: env('TEST_USER'), password: env('TEST_PASSWORD') };
const EXPECT_SUB = process.env.EXPECT_SUB || undefined; // unset: the provider's subject is opaque

const hooks = (await import(`./providers/${PROVIDER}.mjs`)).default;

// ---------------------------------------------------------------------------------------------
// Helpers

/** The requests the API received since `t` (ms). */
const apiCalls = (since) => readEvents(API_EVENTS).filter((e) => e.t >= since);

/** The sum of sealgate's counter `name` with `outcome` at `origin` (its /metrics page). */
async function counter(origin, name, outcome) {
  const page = await (await fetch(`${origin}/metrics`)).text();
  let sum = 0;
  for (const line of page.split('\n')) {
    if (line.startsWith(`${name}{`) && line.includes(`outcome="${outcome}"`)) sum += Number(line.split(' ').at(-1));
  }
  return sum;
}
const refreshes = async (origin = A) => ({
  success: await counter(origin, 'sealgate_refreshes_total', 'success'),
  failure: await counter(origin, 'sealgate_refreshes_total', 'failure'),
});

/** Signs in from the SPA at `origin` through the provider's login page; returns /bff/user. */
async function signIn(page, origin = A) {
  if (!page.url().startsWith(`${origin}/`)) await page.goto(`${origin}/`);
  await seeText(page, '#state', 'no');
  await page.click('#login');
  await page.waitForURL((u) => !u.href.startsWith(`${origin}/`));
  await hooks.login(page, CREDENTIALS);
  await page.waitForURL((u) => u.href.startsWith(`${origin}/`) && !u.pathname.startsWith('/bff/callback/'), { timeout: 20000 })
    .catch(async (err) => {
      // sealgate's failure page: say why, from its log.
      if ((await page.title()) !== 'Sign-in failed') throw err;
      const log = readFileSync(join(ARTIFACTS, `sealgate-${origin === A ? 'a' : 'b'}.log`), 'utf8');
      check(false, `sealgate refused the login: ${log.match(/detail=login: .*$/gm)?.at(-1) ?? 'see its log'}`);
    });
  await seeText(page, '#state', 'yes');
  const shown = JSON.parse(await text(page, '#user'));
  if (EXPECT_SUB) equal(shown.sub, EXPECT_SUB, 'the SPA shows the signed-in subject');
  return shown;
}

/** Waits until the access token behind `answer` (the API's answer) has expired. */
async function pastExpiry(answer) {
  const waitMs = answer.exp * 1000 + 1000 - Date.now();
  check(waitMs <= (ACCESS_TOKEN_TTL + 2) * 1000, `the access token lives ACCESS_TOKEN_TTL (${ACCESS_TOKEN_TTL}) seconds`, answer);
  await sleep(Math.max(0, waitMs));
}

/** Replays `cookies` in a new browser at `origin`; returns the page. */
async function replay(newContext, cookies, origin) {
  const thief = await newContext();
  await thief.addCookies(cookies);
  const page = await thief.newPage();
  await page.goto(`${origin}/`);
  return page;
}

// ---------------------------------------------------------------------------------------------
// Scenarios

const scenarios = [];
const scenario = (name, title, fn) => scenarios.push({ name, title, fn });

scenario('login', 'log in through the provider\'s own login page', async ({ context }) => {
  const page = await context.newPage();
  const shown = await signIn(page);
  equal(shown.provider, PROVIDER, '/bff/user names the provider');
  const cookies = await sessionCookies(context);
  const first = cookies.find((c) => c.name === `${SESSION_COOKIE}.0`);
  check(first, 'the session cookie is set', cookies.map((c) => c.name));
  check(first.httpOnly && first.secure && first.sameSite === 'Strict' && first.path === '/',
    'the session cookie is HttpOnly, Secure, SameSite=Strict, Path=/', first);
  check(cookies.every((c) => !c.name.includes('login')), 'no login-flow cookie is left', cookies.map((c) => c.name));
});

scenario('user', '/bff/user shows the ID token\'s claims, the logout URL and the session\'s expiry', async ({ context }) => {
  const page = await context.newPage();
  const shown = await signIn(page);
  for (const [claim, want] of Object.entries(hooks.claims?.(CREDENTIALS) ?? {})) {
    equal(shown.claims?.[claim], want, `/bff/user carries ${claim}`);
  }
  check(typeof shown.logout_url === 'string' && shown.session?.absolute_expires_at > Date.now() / 1000,
    '/bff/user carries the logout URL and the session expiry', shown);
  const html = await page.evaluate(() => document.documentElement.outerHTML + document.cookie
    + JSON.stringify(Object.entries(localStorage)) + JSON.stringify(Object.entries(sessionStorage)));
  check(!JWT_SHAPE.test(html.replace(/"logout_url":[^,]*/, '')), 'nothing JWT-shaped in the page or its storage');
});

scenario('api', 'an API call through sealgate; the API verified the token against the provider\'s JWKS', async ({ context }) => {
  const page = await context.newPage();
  const shown = await signIn(page);
  const t = Date.now();
  const answer = await callApi(page);
  equal(answer.sub, shown.sub, 'the API answers with the signed-in subject');
  const calls = apiCalls(t);
  equal(calls.length, 1, 'the API received one request');
  const [call] = calls;
  check(call.verified, 'the API verified the bearer JWT (signature against the JWKS, iss, aud, exp)', call);
  equal(call.iss, ISSUER, 'issued by the provider');
  equal(call.alg, 'RS256', 'signed with RS256');
  equal(call.cookie_names.length, 0, `no cookie reached the API (got ${call.cookie_names})`);
  const seen = await page.evaluate(() => document.documentElement.outerHTML + document.cookie);
  check(!seen.includes(call.token_signature), 'the access token is nowhere in the page');
});

scenario('refresh', 'past the access token\'s lifetime, the next API call carries a refreshed token', async ({ context }) => {
  const page = await context.newPage();
  await signIn(page);
  const first = await callApi(page);
  const cookieBefore = (await sessionCookies(context)).map((c) => c.value).join();
  await pastExpiry(first);
  const before = await refreshes();
  const t = Date.now();
  const second = await callApi(page);
  const [call] = apiCalls(t);
  check(call?.verified, 'the API verified the refreshed token', call);
  check(second.jti !== first.jti && second.exp > first.exp, 'a new access token, expiring later', { first, second });
  const after = await refreshes();
  equal(after.success - before.success, 1, 'sealgate refreshed once');
  equal(after.failure - before.failure, 0, 'no failed refresh');
  check((await sessionCookies(context)).map((c) => c.value).join() !== cookieBefore, 'the browser holds the re-sealed cookie');
});

scenario('rotation', 'the provider rotates refresh tokens: a second refresh uses the rotated one', async ({ context }) => {
  if (hooks.rotation !== true) throw new Skip(hooks.rotation);
  const page = await context.newPage();
  await signIn(page);
  let answer = await callApi(page);
  const before = await refreshes();
  const seen = new Set([answer.jti]);
  for (const round of [1, 2]) {
    await pastExpiry(answer);
    answer = await callApi(page);
    check(!seen.has(answer.jti), `refresh ${round} gave a new access token`, answer);
    seen.add(answer.jti);
  }
  const after = await refreshes();
  equal(after.success - before.success, 2, 'two successful refreshes: the second redeemed the rotated refresh token');
  equal(after.failure - before.failure, 0, 'no failed refresh (a reused refresh token would fail, or revoke the grant)');
});

scenario('two-tabs', 'past the lifetime, two tabs call the API three times each at once: one refresh', async ({ context }) => {
  const tabA = await context.newPage();
  await signIn(tabA);
  const first = await callApi(tabA);
  const tabB = await context.newPage();
  await tabB.goto(`${A}/`);
  await seeText(tabB, '#state', 'yes');
  await pastExpiry(first);
  const before = await refreshes();
  const t = Date.now();
  await Promise.all([tabA.click('#call-many'), tabB.click('#call-many')]);
  await seeText(tabA, '#api-status', '200,200,200');
  await seeText(tabB, '#api-status', '200,200,200');
  const calls = apiCalls(t);
  equal(calls.length, 6, 'the API received all six calls');
  check(calls.every((c) => c.verified), 'every call carried a valid token', calls);
  const jtis = new Set(calls.map((c) => c.jti));
  equal(jtis.size, 1, 'every call carried the same refreshed token');
  check(!jtis.has(first.jti), 'a new access token');
  const after = await refreshes();
  equal(after.success - before.success, 1, 'one refresh at the provider for six parallel calls');
  equal(after.failure - before.failure, 0, 'no failed refresh');
  equal((await callApi(tabB)).jti, calls[0].jti, 'the next call uses the refreshed token');
});

scenario('logout', 'RP-initiated logout ends the provider\'s session; the old cookie, replayed, is refused', async ({ context, newContext }) => {
  const page = await context.newPage();
  await signIn(page);
  await callApi(page);
  const stolen = await sessionCookies(context);
  await page.click('#logout');
  // Off to the provider's end-session endpoint, and back to the post-logout URI with the
  // state sealgate sent (at once, when the provider asks nothing).
  const back = (u) => u.href.startsWith(`${A}/`) && u.searchParams.has('state');
  await page.waitForURL((u) => !u.href.startsWith(`${A}/`) || back(u));
  if (!back(new URL(page.url()))) await hooks.confirmLogout(page);
  await page.waitForURL(back, { timeout: 20000 });
  await seeText(page, '#state', 'no');
  equal((await sessionCookies(context)).length, 0, 'every session cookie was cleared');

  const t = Date.now();
  const thief = await replay(newContext, stolen, A);
  await seeText(thief, '#state', 'no');
  equal(await pageFetch(thief, '/api/whoami'), 401, 'the replayed cookie gets 401 from the API route');
  equal(await pageFetch(thief, '/bff/user'), 401, 'and from /bff/user');
  equal(apiCalls(t).length, 0, 'nothing reached the API');

  // The provider's session is gone: signing in again shows its login page.
  await page.click('#login');
  await page.waitForURL((u) => !u.href.startsWith(`${A}/`));
  await eventually('the provider shows its login page again', () => hooks.onLoginPage(page), 10000);
});

scenario('revocation', 'logout revokes the refresh token at the provider (RFC 7009): another instance cannot refresh with it', async ({ context, newContext }) => {
  if (hooks.revocation !== true) throw new Skip(hooks.revocation);
  const page = await context.newPage();
  await signIn(page);
  const answer = await callApi(page);
  const stolen = await sessionCookies(context);
  const log = join(ARTIFACTS, 'sealgate-a.log');
  const failures = () => (readFileSync(log, 'utf8').match(/refresh token revocation failed/g) ?? []).length;
  const failedBefore = failures();
  // sealgate's logout, without following it to the provider: the provider's session stays,
  // so only the revocation can end the refresh token.
  const status = await page.evaluate(async () => (await fetch('/bff/logout', {
    method: 'POST', headers: { 'X-CSRF': '1', Accept: 'application/json' },
  })).status);
  equal(status, 200, 'sealgate logged out');
  equal(failures(), failedBefore, 'sealgate logged no revocation failure');

  // Instance B shares the key but not A's denylist: it accepts the copied cookie, and past the
  // access token's expiry it must refresh, with the refresh token A revoked.
  await pastExpiry(answer);
  const before = await refreshes(B);
  const t = Date.now();
  const thief = await replay(newContext, stolen, B);
  await seeText(thief, '#state', 'yes');
  equal(await pageFetch(thief, '/api/whoami'), 401, 'B cannot refresh: the API call gets 401');
  const after = await refreshes(B);
  equal(after.failure - before.failure, 1, 'B\'s refresh was refused by the provider');
  equal(after.success - before.success, 0, 'and none succeeded');
  equal(apiCalls(t).length, 0, 'nothing reached the API');
});

scenario('backchannel', 'a logout at the provider reaches sealgate by back-channel; the next API call gets 401', async ({ context }) => {
  if (hooks.backchannel !== true) throw new Skip(hooks.backchannel);
  const page = await context.newPage();
  await signIn(page);
  await callApi(page);
  const before = await counter(A, 'sealgate_backchannel_logouts_total', 'success');
  const rejectedBefore = await counter(A, 'sealgate_backchannel_logouts_total', 'failure');
  const opTab = await context.newPage();
  await hooks.logoutAtProvider(opTab, ISSUER);
  await eventually('sealgate accepted a back-channel logout', async () => {
    const rejected = await counter(A, 'sealgate_backchannel_logouts_total', 'failure');
    check(rejected === rejectedBefore, 'sealgate rejected a back-channel logout (see sealgate-a.log)');
    return (await counter(A, 'sealgate_backchannel_logouts_total', 'success')) > before;
  }, 10000);
  const t = Date.now();
  equal(await pageFetch(page, '/api/whoami'), 401, 'the next API call gets 401');
  equal(await pageFetch(page, '/bff/user'), 401, 'and /bff/user');
  equal(apiCalls(t).length, 0, 'nothing reached the API');
});

// ---------------------------------------------------------------------------------------------

await runScenarios({
  scenarios,
  only: process.argv.slice(2),
  label: `interop ${PROVIDER}`,
  artifacts: ARTIFACTS,
  chromiumPath: env('CHROMIUM'),
  timeoutSeconds: Number(process.env.INTEROP_TIMEOUT ?? 400),
  resultsFile: process.env.RESULTS_FILE,
});
