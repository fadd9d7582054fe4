// Browser test of single sign-on: the login page's provider button, the real OpenID
// provider's sign-in form (tests/oidc/op.mjs), back to Conclave signed in, then sign out
// (ending the session at the provider too). Started by tests/e2e/browser.rs with
// CONCLAVE_URL, ISSUER, ARTIFACTS_DIR and CHROMIUM.

import { chromium } from 'playwright-core';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';

const env = (name) => {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is not set`);
  return value;
};
const url = env('CONCLAVE_URL');
const issuer = env('ISSUER');
const artifacts = env('ARTIFACTS_DIR');

function expect(condition, message) {
  if (!condition) throw new Error(message);
}

async function main() {
  mkdirSync(artifacts, { recursive: true });
  const browser = await chromium.launch({
    executablePath: env('CHROMIUM'),
    headless: true,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
  const context = await browser.newContext();
  const page = await context.newPage();
  const errors = [];
  page.on('pageerror', (err) => errors.push(err.message));
  const name = 'a person signs in through the OpenID provider in the browser and out again';
  try {
    await page.goto(url);
    await page.getByRole('button', { name: 'Sign in with Test Agency SSO' }).click();
    await page.waitForURL((u) => u.toString().startsWith(issuer));
    await page.getByLabel('Username').fill('bob');
    await page.getByRole('button', { name: 'Sign in' }).click();
    await page.waitForURL((u) => u.toString().startsWith(url));
    await page.locator('#room-list').waitFor({ timeout: 10000 });
    const who = await page.locator('#whoami').textContent();
    expect(who.includes('Bob Brown'), `signed in as "${who}"`);
    const cookies = await page.evaluate(() => document.cookie);
    expect(!cookies.includes('conclave_session') && cookies.includes('conclave_csrf'), `script sees cookies: ${cookies}`);
    // The CSRF cookie set by the redirect lets the page change state.
    await page.getByRole('button', { name: 'New room' }).click();
    await page.getByLabel('Name', { exact: true }).fill('Signed in by SSO');
    await page.getByRole('button', { name: 'Create room' }).click();
    await page.locator('#room-title', { hasText: 'Signed in by SSO' }).waitFor({ timeout: 10000 });

    await page.getByRole('button', { name: 'Sign out' }).click();
    await page.waitForURL((u) => u.toString().startsWith(issuer), { timeout: 10000 });
    const me = await context.request.get(`${url}/api/v1/me`);
    expect(me.status() === 401, `after sign-out /api/v1/me answers ${me.status()}`);
    expect(!errors.length, errors.join('\n'));
    console.log(`ok - ${name}`);
  } catch (err) {
    console.log(`FAILED - ${name}: ${err.stack || err}`);
    const path = join(artifacts, 'sso-login.png');
    await page.screenshot({ path, fullPage: true }).catch(() => {});
    console.log(`screenshot: ${path}`);
    process.exitCode = 1;
  } finally {
    await browser.close();
  }
}

main().catch((err) => {
  console.log(`FAILED - setup: ${err.stack || err}`);
  process.exit(1);
});
