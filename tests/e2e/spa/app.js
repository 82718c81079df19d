// A minimal SPA on sealgate: it never sees a token, only /bff/user and API answers.
// Every call carries the anti-forgery header; a 401 from the API starts a login.
'use strict';

const CSRF = { 'X-CSRF': '1' };
const $ = (id) => document.getElementById(id);
let calls = 0;

function login() {
  location.assign(`/bff/login?returnUrl=${encodeURIComponent(location.pathname)}`);
}

async function loadUser() {
  const res = await fetch('/bff/user', { headers: CSRF });
  if (res.status === 200) {
    const user = await res.json();
    $('user').textContent = JSON.stringify(user, null, 2);
    $('state').textContent = 'yes';
  } else {
    $('user').textContent = '';
    $('state').textContent = res.status === 401 ? 'no' : `error ${res.status}`;
  }
  return res.status;
}

async function callApi() {
  const res = await fetch('/api/whoami', { headers: CSRF });
  // The whole answer first, the counter last: the tests wait for the counter, then read the
  // status and the result, which must be this call's (a streamed body arrives after the
  // headers).
  if (res.status !== 401) $('api-result').textContent = await res.text();
  $('api-status').textContent = String(res.status);
  calls += 1;
  $('calls').textContent = String(calls);
  if (res.status === 401) {
    login();
    return 401;
  }
  return res.status;
}

async function callMany() {
  // What a page does on load: several API calls at once.
  const statuses = await Promise.all([callApi(), callApi(), callApi()]);
  $('api-status').textContent = statuses.join(',');
  return statuses;
}

async function logout() {
  const res = await fetch('/bff/logout', {
    method: 'POST',
    headers: { ...CSRF, Accept: 'application/json' },
  });
  if (!res.ok) {
    $('error').textContent = `logout failed: ${res.status}`;
    return;
  }
  const { location: next } = await res.json();
  location.assign(next);
}

function guard(fn) {
  return () => fn().catch((err) => { $('error').textContent = String(err); });
}

$('login').addEventListener('click', login);
$('call').addEventListener('click', guard(callApi));
$('call-many').addEventListener('click', guard(callMany));
$('logout').addEventListener('click', guard(logout));
guard(loadUser)();
