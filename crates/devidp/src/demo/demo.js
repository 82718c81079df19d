// The sealgate demo page: /bff/user, a call to /api/whoami through sealgate, and what
// JavaScript on this page can see (no token, ever).
'use strict';
(function () {
  var CSRF_HEADERS = { 'X-CSRF': '1' };
  var TIME_CLAIMS = ['exp', 'iat', 'auth_time', 'nbf', 'updated_at'];
  var shownTimes = [];

  function $(id) { return document.getElementById(id); }

  function show(el, visible) { el.hidden = !visible; }

  function pretty(value) {
    return typeof value === 'string' ? value : JSON.stringify(value, null, 2);
  }

  // Unix seconds (or milliseconds, or an ISO string) to a Date; null when it is none of those.
  function toDate(value) {
    if (typeof value === 'number' && isFinite(value)) {
      return new Date(value < 1e12 ? value * 1000 : value);
    }
    if (typeof value === 'string' && value !== '') {
      var d = new Date(value);
      if (!isNaN(d.getTime())) { return d; }
    }
    return null;
  }

  function relative(date) {
    var seconds = Math.round((date.getTime() - Date.now()) / 1000);
    var abs = Math.abs(seconds);
    var text;
    if (abs < 60) { text = abs + ' s'; }
    else if (abs < 3600) { text = Math.round(abs / 60) + ' min'; }
    else { text = (abs / 3600).toFixed(1) + ' h'; }
    return seconds >= 0 ? 'in ' + text : text + ' ago';
  }

  function renderTime(el, value) {
    var date = toDate(value);
    el.textContent = date ? date.toLocaleString() + ' (' + relative(date) + ')' : '\u2014';
  }

  function showTime(el, value) {
    renderTime(el, value);
    shownTimes.push([el, value]);
  }

  function refreshTimes() {
    shownTimes.forEach(function (entry) { renderTime(entry[0], entry[1]); });
  }

  function storageSummary(storage) {
    try {
      return storage.length === 0 ? 'empty' : storage.length + ' item(s), none from sealgate';
    } catch (e) {
      return 'not available';
    }
  }

  function renderBrowserView() {
    var cookie = document.cookie;
    $('doc-cookie').textContent = JSON.stringify(cookie);
    $('doc-cookie-note').textContent = cookie === ''
      ? 'Empty: the session cookie is HttpOnly, so no script (not this page, not an XSS payload, not an extension\u2019s content script) can read it. And it holds no token anyway, only a sealed, encrypted blob.'
      : 'These are other, script-readable cookies of this origin. The sealgate session cookie is HttpOnly and never appears here.';
    $('local-storage').textContent = storageSummary(window.localStorage);
    $('session-storage').textContent = storageSummary(window.sessionStorage);
  }

  // Only same-origin URLs become links: a logout URL is never an open redirect.
  function sameOriginUrl(candidate) {
    if (typeof candidate !== 'string' || candidate === '') { return null; }
    try {
      var url = new URL(candidate, window.location.href);
      return url.origin === window.location.origin ? url.pathname + url.search : null;
    } catch (e) {
      return null;
    }
  }

  async function callJson(path) {
    var response = await fetch(path, {
      headers: CSRF_HEADERS, credentials: 'same-origin', cache: 'no-store'
    });
    var text = await response.text();
    var body = text;
    try { body = JSON.parse(text); } catch (e) { /* not JSON: keep the text */ }
    return { status: response.status, statusText: response.statusText, body: body };
  }

  function setPill(text, kind) {
    var pill = $('status-pill');
    pill.textContent = text;
    pill.className = 'pill' + (kind ? ' ' + kind : '');
  }

  function renderClaims(claims) {
    var list = $('claims');
    list.textContent = '';
    var names = claims && typeof claims === 'object' ? Object.keys(claims) : [];
    if (names.length === 0) {
      var none = document.createElement('dd');
      none.textContent = 'none selected';
      list.appendChild(none);
      return;
    }
    names.forEach(function (name) {
      var dt = document.createElement('dt');
      dt.textContent = name;
      var dd = document.createElement('dd');
      if (TIME_CLAIMS.indexOf(name) >= 0 && toDate(claims[name])) {
        showTime(dd, claims[name]);
      } else {
        dd.textContent = pretty(claims[name]);
      }
      list.appendChild(dt);
      list.appendChild(dd);
    });
  }

  async function loadUser() {
    show($('user-error'), false);
    shownTimes = [];
    var result;
    try {
      result = await callJson('/bff/user');
    } catch (e) {
      setPill('unreachable', 'bad');
      $('user-error').textContent = 'Could not reach sealgate: ' + e.message;
      show($('user-error'), true);
      return;
    }
    $('user-raw').textContent = result.status + ' ' + result.statusText + '\n\n' + pretty(result.body);
    if (result.status === 200 && result.body && typeof result.body === 'object') {
      var user = result.body;
      var claims = user.claims || {};
      var session = user.session || user;
      setPill('signed in', 'ok');
      $('sub').textContent = user.sub || claims.sub || '\u2014';
      showTime($('issued-at'), session.issued_at);
      showTime($('idle-expires'), session.idle_expires_at);
      showTime($('absolute-expires'), session.absolute_expires_at);
      renderClaims(claims);
      var logout = sameOriginUrl(user.logout_url);
      show($('logout'), logout !== null);
      if (logout !== null) { $('logout').setAttribute('href', logout); }
      show($('signed-in'), true);
      show($('anonymous'), false);
    } else if (result.status === 401) {
      setPill('not signed in');
      show($('signed-in'), false);
      show($('anonymous'), true);
    } else {
      setPill('error ' + result.status, 'bad');
      $('user-error').textContent = 'Unexpected answer from /bff/user: ' + result.status + ' ' + result.statusText;
      show($('user-error'), true);
    }
  }

  function check(list, ok, text) {
    var item = document.createElement('li');
    item.className = ok ? 'ok' : 'bad';
    item.textContent = (ok ? '\u2713 ' : '\u2717 ') + text;
    list.appendChild(item);
  }

  async function callApi() {
    var button = $('call-api');
    button.disabled = true;
    var checks = $('api-checks');
    checks.textContent = '';
    try {
      var result = await callJson('/api/whoami');
      $('api-status').textContent = 'Response: ' + result.status + ' ' + result.statusText;
      $('api-body').textContent = pretty(result.body);
      var body = result.body && typeof result.body === 'object' ? result.body : {};
      if (result.status === 200 && body.token_claims) {
        var claims = body.token_claims;
        var expiry = toDate(claims.exp);
        check(checks, true, 'The demo API received an access token for ' + (claims.sub || 'you') +
          ' (audience ' + pretty(claims.aud) + (expiry ? ', expires ' + expiry.toLocaleTimeString() : '') + ').');
        check(checks, body.cookie_header_received === false, body.cookie_header_received === false
          ? 'No Cookie header reached the API: sealgate kept its session cookie to itself.'
          : 'A Cookie header reached the API.');
      } else if (result.status === 401) {
        check(checks, false, 'Not signed in (or the session ended): sealgate had no token to attach. Log in first.');
      } else {
        check(checks, false, 'The call failed with ' + result.status + '.');
      }
      renderBrowserView();
      check(checks, document.cookie.indexOf('eyJ') < 0,
        'This page still holds no token: document.cookie is ' + JSON.stringify(document.cookie) + '.');
    } catch (e) {
      $('api-status').textContent = 'Request failed';
      $('api-body').textContent = String(e);
    } finally {
      show($('api-result'), true);
      button.disabled = false;
    }
    // The call may have renewed the session (sliding expiry) or ended it.
    await loadUser();
  }

  // Reads what the address bar carries (a sign-in error, or the IdP's `state` after logout),
  // then takes it out, so that a reload or a bookmark does not bring it back.
  function readAddressBar() {
    var params = new URLSearchParams(window.location.search);
    var error = params.get('error');
    if (error) {
      var description = params.get('error_description');
      $('page-error').textContent = 'Sign-in did not complete: ' + error + (description ? ' \u2014 ' + description : '');
      show($('page-error'), true);
    }
    if (window.location.search !== '' && window.history && window.history.replaceState) {
      window.history.replaceState(null, '', window.location.pathname + window.location.hash);
    }
  }

  $('call-api').addEventListener('click', callApi);
  readAddressBar();
  renderBrowserView();
  loadUser();
  window.setInterval(refreshTimes, 15000);
})();
