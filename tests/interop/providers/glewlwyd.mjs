// Glewlwyd's pages, for tests/interop/scenarios.mjs: its login page is a JavaScript app
// (login.html): the user name, then the password, then the consent ("Continue") for the
// client's scopes. A provider-initiated logout is the user signing out of another app
// ("other-app", registered by glewlwyd.sh): its end-session flow ends the Glewlwyd session,
// which sends back-channel logouts to every client of that session, sealgate included.
import { createHash, randomBytes } from 'node:crypto';

const OTHER_APP = 'other-app';
// Another app of the same Glewlwyd session; its redirect URI is a page of sealgate A that
// does not exist (the code is read off the URL).
const otherAppRedirect = () => `${process.env.ORIGIN_A}/other-app/callback`;

/** On the login app: the consent step, when shown. Returns once the browser is leaving it. */
async function consent(page) {
  const button = page.locator('button:has-text("Continue")');
  await button.waitFor({ state: 'visible' });
  await Promise.all([page.waitForURL((u) => !u.pathname.endsWith('/login.html')), button.click()]);
}

export default {
  title: 'Glewlwyd',
  async login(page, { user, password }) {
    await page.waitForURL((u) => u.pathname.endsWith('/login.html'));
    await page.locator('#username').waitFor({ state: 'visible' });
    await page.fill('#username', user);
    await page.fill('#password', password);
    await page.click('#loginbut');
    await consent(page);
  },
  async onLoginPage(page) {
    return new URL(page.url()).pathname.endsWith('/login.html') && page.isVisible('#username');
  },
  async confirmLogout(page) {
    // end_session shows the login app with prompt=end_session: "Log out" there.
    await page.waitForURL((u) => u.pathname.endsWith('/login.html'));
    const button = page.locator('button:has-text("Log out"), button:has-text("Logout"), button:has-text("Sign out")').first();
    await button.waitFor({ state: 'visible' });
    await button.click();
  },
  /** Signs the browser in to other-app (SSO), then out of it with its ID token: a logout at
   * the provider that sealgate did not start. */
  async logoutAtProvider(page, issuer) {
    const verifier = randomBytes(32).toString('base64url');
    const challenge = createHash('sha256').update(verifier).digest('base64url');
    const OTHER_APP_REDIRECT = otherAppRedirect();
    const authorize = new URL(`${issuer}/auth`);
    Object.entries({
      response_type: 'code', client_id: OTHER_APP, redirect_uri: OTHER_APP_REDIRECT, scope: 'openid',
      state: 'other', nonce: randomBytes(8).toString('hex'), code_challenge: challenge, code_challenge_method: 'S256',
    }).forEach(([k, v]) => authorize.searchParams.set(k, v));
    // Glewlwyd (SQLite) has answered this request with a bare error status once in CI
    // (net::ERR_HTTP_RESPONSE_CODE_FAILURE), sealgate not involved: try up to three times,
    // saying so.
    for (let attempt = 1; ; attempt += 1) {
      try {
        await page.goto(authorize.href);
        break;
      } catch (err) {
        if (attempt === 3) throw err;
        console.log(`    other-app's authorization request failed (${err.message.split('\n')[0]}); again in 1 s`);
        await new Promise((resolve) => { setTimeout(resolve, 1000); });
      }
    }
    await page.waitForURL((u) => u.href.startsWith(OTHER_APP_REDIRECT) || u.pathname.endsWith('/login.html'));
    if (!page.url().startsWith(OTHER_APP_REDIRECT)) await consent(page);
    await page.waitForURL((u) => u.href.startsWith(OTHER_APP_REDIRECT));
    const callback = new URL(page.url());
    const code = callback.searchParams.get('code');
    if (!code) throw new Error(`other-app got no code: ${callback}`);
    const basic = Buffer.from(`${OTHER_APP}:${process.env.OTHER_APP_SECRET}`).toString('base64');
    const response = await fetch(`${issuer}/token`, {
      method: 'POST',
      headers: { authorization: `Basic ${basic}`, 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({ grant_type: 'authorization_code', code, redirect_uri: OTHER_APP_REDIRECT, code_verifier: verifier }),
    });
    const tokens = await response.json();
    if (!tokens.id_token) throw new Error(`other-app's token request: ${response.status} ${JSON.stringify(tokens)}`);
    const end = new URL(`${issuer}/end_session`);
    end.searchParams.set('id_token_hint', tokens.id_token);
    end.searchParams.set('state', 'other-logout');
    await page.goto(end.href);
    await this.confirmLogout(page);
    await page.locator('text=Session closed').waitFor({ state: 'visible' });
  },
  claims: ({ user }) => ({ name: 'Interop User', email: `${user}@example.test` }),
  rotation: true,
  revocation: true,
  backchannel: true,
};
