// django-oauth-toolkit's pages, for tests/interop/scenarios.mjs: Django's admin login form,
// no consent (the application skips authorization), no logout confirmation with an
// id_token_hint of the signed-in user.
export default {
  title: 'django-oauth-toolkit',
  /** On the provider's login page: signs in. The browser is then on its way back to sealgate. */
  async login(page, { user, password }) {
    await page.waitForURL((u) => u.pathname === '/admin/login/');
    await page.fill('input[name=username]', user);
    await page.fill('input[name=password]', password);
    await page.click('input[type=submit]');
  },
  /** Whether the page shows the provider's login form. */
  async onLoginPage(page) {
    return new URL(page.url()).pathname === '/admin/login/' && page.isVisible('input[name=username]');
  },
  /** After sealgate sent the browser to the end-session endpoint: nothing to confirm. */
  async confirmLogout() {},
  claims: ({ user }) => ({ preferred_username: user, email: `${user}@example.test` }),
  rotation: true,
  // The RFC 7009 endpoint (/o/revoke_token/) is listed in RFC 8414 metadata only, not in
  // openid-configuration: sealgate is told it with `revocation_endpoint` (dot.sh).
  revocation: true,
  backchannel: 'django-oauth-toolkit does not implement OpenID Connect Back-Channel Logout',
};
