// LemonLDAP::NG's portal pages, for tests/interop/scenarios.mjs: its login form (#lform, with
// an anti-CSRF token), consent bypassed for sealgate, and with an id_token_hint no logout
// confirmation (LogoutBypassConfirm).
export default {
  title: 'LemonLDAP::NG',
  async login(page, { user, password }) {
    await page.waitForSelector('#lform input[name=user]');
    await page.fill('#lform input[name=user]', user);
    await page.fill('#lform input[name=password]', password);
    await page.click('#lform button[type=submit]');
  },
  async onLoginPage(page) {
    return page.isVisible('#lform input[name=user]');
  },
  async confirmLogout() {},
  claims: ({ user }) => ({ preferred_username: user, email: `${user}@badwolf.org` }),
  rotation: 'LemonLDAP::NG does not rotate refresh tokens (the same one stays valid)',
  revocation: 'LemonLDAP::NG offers no RFC 7009 revocation endpoint (introspection only)',
  backchannel: 'LemonLDAP::NG 2.16 sends no back-channel logout (its "back" logout type is unimplemented; discovery says false)',
};
