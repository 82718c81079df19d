// What the end-to-end suite (tests/e2e) and the interoperability suite (tests/interop) share:
// assertions, the SPA's helpers (what the user sees and clicks) and the runner that launches
// Chromium (playwright-core, Debian's chromium through executablePath), runs the selected
// scenarios each in a fresh browser context, and keeps a screenshot and the HTML of every tab
// of a failing scenario. A scenario may throw `new Skip(reason)`: it is reported as skipped
// with the reason, never dropped.

import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

import { chromium } from 'playwright-core';

export const env = (name) => {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is not set (run the suite's run.sh)`);
  return value;
};

export const SESSION_COOKIE = '__Host-sealgate';
export const JWT_SHAPE = /eyJ[A-Za-z0-9_-]{8,}\.eyJ/;

export class Failure extends Error {}

/** Thrown by a scenario the provider under test cannot support: reported with its reason. */
export class Skip extends Error {}

export function check(condition, message, details) {
  if (!condition) {
    throw new Failure(details === undefined ? message : `${message}: ${JSON.stringify(details)}`);
  }
}

export function equal(actual, expected, message) {
  check(actual === expected, `${message}: expected ${JSON.stringify(expected)}, got ${JSON.stringify(actual)}`);
}

export function readEvents(file) {
  return readFileSync(file, 'utf8').split('\n').filter(Boolean).map((line) => JSON.parse(line));
}

/** The events in `file` since `t` (ms), optionally of one kind. */
export function eventsIn(file, since, event) {
  return readEvents(file).filter((e) => e.t >= since && (event === undefined || e.event === event));
}

export const sleep = (ms) => new Promise((resolve) => { setTimeout(resolve, ms); });

/** Polls `fn` until it returns something truthy, for at most `within` ms. */
export async function eventually(what, fn, within = 5000) {
  const start = Date.now();
  for (;;) {
    const value = await fn();
    if (value) return value;
    check(Date.now() - start < within, `${what} (waited ${within} ms)`);
    await sleep(50);
  }
}

export async function text(page, selector) {
  return (await page.textContent(selector))?.trim();
}

/** Waits until the element's text is `want` (what the user sees). */
export async function seeText(page, selector, want, within = 10000) {
  try {
    await page.waitForFunction(
      ([sel, w]) => document.querySelector(sel)?.textContent.trim() === w,
      [selector, want],
      { timeout: within },
    );
  } catch {
    check(false, `${page.url()}: ${selector} should read ${JSON.stringify(want)}, reads ${JSON.stringify(await text(page, selector))}`);
  }
}

/** The status of a fetch the page itself makes (with the anti-forgery header). */
export function pageFetch(page, path) {
  return page.evaluate(async (p) => (await fetch(p, { headers: { 'X-CSRF': '1' } })).status, path);
}

export async function sessionCookies(context) {
  return (await context.cookies()).filter((c) => c.name.startsWith(SESSION_COOKIE));
}

/** Clicks "Call API" and waits for the answer the user sees; returns the upstream's answer. */
export async function callApi(page) {
  const before = Number(await text(page, '#calls'));
  await page.click('#call');
  await seeText(page, '#calls', String(before + 1));
  equal(await text(page, '#api-status'), '200', 'the API call succeeds');
  return JSON.parse(await text(page, '#api-result'));
}

async function saveFailure(artifacts, name, contexts, err) {
  const pages = contexts.flatMap((c, i) => c.pages().map((page, j) => [`${i ? `-context${i + 1}` : ''}-tab${j + 1}`, page]));
  for (const [suffix, page] of pages) {
    const base = join(artifacts, `${name}${suffix}`);
    try {
      await page.screenshot({ path: `${base}.png`, fullPage: true, timeout: 5000 });
      writeFileSync(`${base}.html`, `<!-- ${page.url()} -->\n${await page.content()}`);
    } catch (e) {
      console.log(`    (could not save ${base}: ${e.message})`);
    }
  }
  writeFileSync(join(artifacts, `${name}.error.txt`), `${err.stack ?? err}\n`);
}

/**
 * Runs `scenarios` ({ name, title, fn }), or those named in `only`, each with a fresh browser
 * context: fn({ browser, context, newContext, since }). Prints one line per scenario and a
 * summary line starting with `label:`; with `resultsFile`, also writes
 * { name: { status: passed|skipped|failed, reason, seconds } } there. Exits the process:
 * 0 when nothing failed. `timeoutSeconds` bounds the whole run.
 */
export async function runScenarios({ scenarios, only = [], label, artifacts, chromiumPath, timeoutSeconds, resultsFile }) {
  const unknown = only.filter((n) => !scenarios.some((s) => s.name === n));
  if (unknown.length) {
    console.error(`unknown scenario(s): ${unknown.join(', ')}; known: ${scenarios.map((s) => s.name).join(', ')}`);
    process.exit(2);
  }
  const selected = only.length ? scenarios.filter((s) => only.includes(s.name)) : scenarios;
  const results = {};
  const save = () => { if (resultsFile) writeFileSync(resultsFile, `${JSON.stringify(results, null, 2)}\n`); };
  const count = (status) => Object.values(results).filter((r) => r.status === status).length;

  const browser = await chromium.launch({
    executablePath: chromiumPath,
    headless: true,
    chromiumSandbox: false,
    handleSIGINT: false, // handled below: close the browser, then exit
    handleSIGTERM: false,
    handleSIGHUP: false,
    args: [
      '--no-sandbox',
      '--disable-gpu',
      '--disable-dev-shm-usage',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-default-apps',
      '--disable-sync',
      '--no-first-run',
      // Loopback only: any other name fails to resolve (the providers' pages import web fonts).
      '--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1',
    ],
  });
  console.log(`chromium ${browser.version()}`);

  let current; // the running scenario: { name, contexts }
  async function abort(why, code) {
    if (current) {
      console.log(`FAIL ${current.name}: ${why}`);
      results[current.name] = { status: 'failed', reason: why };
      await saveFailure(artifacts, current.name, current.contexts, new Error(why)).catch(() => {});
    }
    save();
    console.log(`${label}: ${why}; ${count('passed')} passed, ${count('failed')} failed`);
    await browser.close().catch(() => {});
    process.exit(code);
  }
  for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP']) {
    process.on(signal, () => abort(`interrupted by ${signal}`, 130));
  }
  setTimeout(() => abort(`timed out after ${timeoutSeconds} s`, 124), timeoutSeconds * 1000).unref();

  for (const s of selected) {
    const started = Date.now();
    // A fresh cookie jar and storage per scenario; newContext() gives it another browser (kept
    // in the failure artifacts and closed after it).
    const contexts = [];
    const newContext = async () => {
      const c = await browser.newContext();
      c.setDefaultTimeout(15000);
      contexts.push(c);
      return c;
    };
    const context = await newContext();
    current = { name: s.name, contexts };
    const seconds = () => Number(((Date.now() - started) / 1000).toFixed(1));
    try {
      await s.fn({ browser, context, newContext, since: started });
      results[s.name] = { status: 'passed', seconds: seconds() };
      console.log(`ok   ${s.name}: ${s.title} (${seconds()} s)`);
    } catch (err) {
      if (err instanceof Skip) {
        results[s.name] = { status: 'skipped', reason: err.message };
        console.log(`skip ${s.name}: ${err.message}`);
      } else {
        results[s.name] = { status: 'failed', reason: err.message.split('\n')[0], seconds: seconds() };
        console.log(`FAIL ${s.name}: ${s.title} (${seconds()} s)\n     ${err.message}`);
        if (!(err instanceof Failure)) console.log(err.stack);
        await saveFailure(artifacts, s.name, contexts, err);
      }
    } finally {
      current = undefined;
      for (const c of contexts) await c.close();
    }
    save();
  }
  await browser.close();

  const failed = Object.entries(results).filter(([, r]) => r.status === 'failed').map(([n]) => n);
  const skipped = count('skipped');
  console.log(`${label}: ${count('passed')} passed, ${failed.length} failed${skipped ? `, ${skipped} skipped` : ''}${failed.length ? ` (${failed.join(', ')})` : ''}`);
  process.exit(failed.length ? 1 : 0);
}
