// Browser tests of the web client, driven by playwright-core through Debian's Chromium.
// Started by tests/e2e/browser.rs with the URL of a running `conclave` and two accounts:
//
//   CONCLAVE_URL, ADMIN_TOKEN, ADMIN_PASSWORD, ALICE_PASSWORD, BOB_PASSWORD,
//   CAROL_PASSWORD (a compliance officer and auditor), ARTIFACTS_DIR, CHROMIUM
//
// Scenarios: two people chatting in real time in two browser contexts; an ephemeral
// message vanishing in both without a reload (and nothing of it kept in browser storage);
// an admin tightening the policy and the other person's timer choices changing; a
// compliance officer's console (hold, retention preview, export, audit log); an admin
// suspending a user from the console, whose open page returns to sign-in. On a
// failure each page's screenshot is saved under ARTIFACTS_DIR and its path printed.

import { chromium } from 'playwright-core';
import { mkdirSync } from 'node:fs';
import net from 'node:net';
import { join } from 'node:path';

const env = (name) => {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is not set`);
  return value;
};
const url = env('CONCLAVE_URL');
const adminToken = env('ADMIN_TOKEN');
const artifacts = env('ARTIFACTS_DIR');
const executablePath = env('CHROMIUM');

/**
 * A TCP relay in front of the server for one browser, so a test can cut that browser's
 * network: `cut()` drops every open connection and refuses new ones until `restore()`.
 */
async function relay(target) {
  const { hostname, port } = new URL(target);
  const open = new Set();
  let down = false;
  const server = net.createServer((client) => {
    if (down) { client.destroy(); return; }
    const upstream = net.connect(Number(port), hostname);
    open.add(client); open.add(upstream);
    client.pipe(upstream); upstream.pipe(client);
    for (const s of [client, upstream]) {
      s.on('error', () => { client.destroy(); upstream.destroy(); });
      s.on('close', () => { open.delete(s); client.destroy(); upstream.destroy(); });
    }
  });
  await new Promise((ready) => server.listen(0, '127.0.0.1', ready));
  return {
    url: `http://127.0.0.1:${server.address().port}`,
    cut() { down = true; for (const s of open) s.destroy(); },
    restore() { down = false; },
    close() { server.close(); for (const s of open) s.destroy(); },
  };
}

const problems = [];
let networkCut = false;
const pages = {};

function expect(condition, message) {
  if (!condition) throw new Error(message);
}

async function adminApi(method, path, body) {
  const response = await fetch(`${url}${path}`, {
    method,
    headers: { authorization: `Bearer ${adminToken}`, 'content-type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await response.text();
  expect(response.ok, `${method} ${path}: ${response.status} ${text}`);
  return text ? JSON.parse(text) : null;
}

async function newPerson(browser, name) {
  const context = await browser.newContext({ viewport: { width: 1100, height: 800 } });
  const page = await context.newPage();
  page.on('console', (msg) => {
    // API error statuses are the client's to handle (a 401 before sign-in, say); script
    // errors and Content-Security-Policy refusals are failures.
    // While a test has cut the network, failed reconnects and requests are expected too
    // (Chromium reports a reset connection as `net::ERR_…`, for WebSockets and fetches).
    const text = msg.text();
    const cut = networkCut && (text.startsWith('WebSocket connection to') || text.includes('net::ERR_'));
    if (msg.type() === 'error' && !text.startsWith('Failed to load resource') && !cut) {
      problems.push(`${name} console: ${text}`);
    }
  });
  page.on('pageerror', (err) => problems.push(`${name} page error: ${err.message}`));
  pages[name] = page;
  return page;
}

let adminPromise = null;
/** The admin's browser, signed in once. */
function adminPage(browser) {
  adminPromise = adminPromise || (async () => {
    const admin = await newPerson(browser, 'admin');
    await signIn(admin, 'admin', env('ADMIN_PASSWORD'));
    return admin;
  })();
  return adminPromise;
}

async function signIn(page, username, password, through = url) {
  await page.goto(through);
  await page.getByLabel('Username').fill(username);
  await page.getByLabel('Password').fill(password);
  await page.getByRole('button', { name: 'Sign in with a local account' }).click();
  await page.locator('#room-list').waitFor();
  // The session lives in an HttpOnly cookie: script cannot read it.
  const visible = await page.evaluate(() => document.cookie);
  expect(!visible.includes('conclave_session'), `the session cookie is readable by script: ${visible}`);
}

/** The message whose own text (not a quote of it) contains `text`. */
function messageWith(page, text) {
  return page.locator('#messages li.message').filter({ has: page.locator('.text', { hasText: text }) });
}

/** What the page keeps in browser storage: must never hold message content. */
async function storedContent(page) {
  return page.evaluate(async () => {
    const found = [];
    for (const store of [localStorage, sessionStorage]) {
      for (let i = 0; i < store.length; i += 1) found.push(`${store.key(i)}=${store.getItem(store.key(i))}`);
    }
    if (indexedDB.databases) for (const db of await indexedDB.databases()) found.push(`indexedDB ${db.name}`);
    for (const key of await caches.keys()) found.push(`cache ${key}`);
    const workers = await navigator.serviceWorker.getRegistrations();
    if (workers.length) found.push(`${workers.length} service workers`);
    return found;
  });
}

/** The timer choices offered once the control is focused (which re-reads the policy). */
async function timerOptions(page, settled = () => true) {
  // The client re-reads the effective policy when the timer control gets focus. A change
  // made by several requests (a room's rename, then its policy) may land after a read:
  // focus again until the choices settle, for up to 15 s on a loaded machine.
  const select = page.locator('#compose-timer');
  const until = Date.now() + 15000;
  do {
    await select.blur();
    await select.focus();
    const done = await page.waitForFunction(settled, null, { timeout: 1000 }).then(() => true, () => false);
    if (done) break;
  } while (Date.now() < until);
  return select.locator('option').allTextContents();
}

const scenarios = {
  async 'two people chat in real time'({ alice, bob }) {
    await alice.getByRole('button', { name: 'New message' }).click();
    await alice.getByLabel('Find a person').fill('bob');
    await alice.getByRole('button', { name: 'Message bob' }).click();
    await alice.locator('#room-title').waitFor();
    await alice.getByLabel('Message', { exact: true }).fill('Hello Bob, are you there?');
    await alice.getByLabel('Message', { exact: true }).press('Enter');
    await messageWith(alice, 'Hello Bob, are you there?').waitFor();

    // Bob's list shows the new conversation with one unread message, without a reload.
    const unread = bob.locator('#room-list .unread');
    await unread.waitFor({ timeout: 10000 });
    expect((await unread.textContent()) === '1', `bob's unread count is ${await unread.textContent()}`);
    await bob.locator('#room-list a').first().click();
    await messageWith(bob, 'Hello Bob, are you there?').waitFor();
    await bob.locator('#room-list .unread').waitFor({ state: 'detached' });

    // Alice sees Bob's read receipt, then his reply and reaction arrive live.
    await messageWith(alice, 'Hello Bob, are you there?').getByText('Read by bob').waitFor({ timeout: 10000 });
    await messageWith(bob, 'Hello Bob').getByRole('button', { name: 'Reply' }).click();
    await bob.getByLabel('Message', { exact: true }).fill('Yes, here.');
    await bob.getByRole('button', { name: 'Send' }).click();
    const reply = messageWith(alice, 'Yes, here.');
    await reply.waitFor({ timeout: 10000 });
    expect((await reply.locator('.quote').textContent()).includes('Hello Bob'), 'the reply quotes the message');
    await messageWith(bob, 'Hello Bob').getByRole('button', { name: 'React with 👍' }).click();
    await messageWith(alice, 'Hello Bob').getByRole('button', { name: /👍 1/ }).waitFor({ timeout: 10000 });

    // Alice edits her message; Bob sees the new text; then she deletes it for everyone.
    await messageWith(alice, 'Hello Bob').getByRole('button', { name: 'Edit' }).click();
    await alice.getByLabel('Message', { exact: true }).fill('Hello Bob (edited text)');
    await alice.getByLabel('Message', { exact: true }).press('Enter');
    await messageWith(bob, 'Hello Bob (edited text)').waitFor({ timeout: 10000 });
    alice.once('dialog', (dialog) => dialog.accept());
    await messageWith(alice, 'Hello Bob (edited text)').getByRole('button', { name: 'Delete' }).click();
    await messageWith(bob, 'Hello Bob (edited text)').waitFor({ state: 'detached', timeout: 10000 });
  },

  async 'attachments upload with progress and download; burn-on-read opens on demand'({ alice, bob }) {
    const content = `report body ${Date.now()}\n`.repeat(2000);
    await bob.locator('#compose-file').setInputFiles({ name: 'report.txt', mimeType: 'text/plain', buffer: Buffer.from(content) });
    await bob.getByText('report.txt is ready to send').waitFor({ timeout: 10000 });
    expect(await bob.locator('#upload-status progress').evaluate((p) => p.value) === 1, 'the progress bar is full');
    await bob.getByLabel('Message', { exact: true }).fill('The report');
    await bob.getByLabel('Message', { exact: true }).press('Enter');
    const link = messageWith(alice, 'The report').getByRole('link', { name: /Download report\.txt/ });
    await link.waitFor({ timeout: 10000 });
    const [download] = await Promise.all([alice.waitForEvent('download'), link.click()]);
    const { readFile } = await import('node:fs/promises');
    const got = await readFile(await download.path(), 'utf8');
    expect(got === content, `the download differs (${got.length} vs ${content.length} bytes)`);

    // A burn-on-read message arrives without its text; opening it starts the countdown.
    await alice.locator('#compose-timer').selectOption({ label: 'Burn 1 minute after reading' });
    await alice.locator('#compose-file').setInputFiles({ name: 'secret.txt', mimeType: 'text/plain', buffer: Buffer.from('for your eyes only\n') });
    await alice.getByText('secret.txt is ready to send').waitFor({ timeout: 10000 });
    await alice.getByLabel('Message', { exact: true }).fill('read me once');
    await alice.getByLabel('Message', { exact: true }).press('Enter');
    const reveal = bob.getByRole('button', { name: /Read message/ });
    await reveal.waitFor({ timeout: 10000 });
    expect(!(await bob.content()).includes('read me once'), 'the text arrived before it was opened');
    await reveal.click();
    const opened = messageWith(bob, 'read me once');
    await opened.waitFor();
    const countdown = await opened.locator('.countdown').textContent();
    expect(/Disappears in (\d+ s|1 min)/.test(countdown), `countdown reads "${countdown}"`);
    const secretFile = opened.getByRole('link', { name: /Download secret\.txt/ });
    await secretFile.waitFor();
    // A reaction arrives as an event without the text or the file: what the read showed stays.
    await messageWith(alice, 'read me once').getByRole('button', { name: 'React with 👍' }).click();
    await opened.getByRole('button', { name: /^👍 1/ }).waitFor({ timeout: 10000 });
    expect(await secretFile.count() === 1, 'the reaction event dropped the opened attachment');
    await alice.locator('#compose-timer').selectOption({ value: '' });
  },

  async 'an ephemeral message vanishes in both browsers without a reload'({ alice, bob }) {
    await alice.locator('#compose-timer').selectOption({ label: 'Disappears after 10 seconds' });
    const secret = `ephemeral ${Date.now()}`;
    await alice.getByLabel('Message', { exact: true }).fill(secret);
    await alice.getByRole('button', { name: 'Send' }).click();
    for (const page of [alice, bob]) {
      const message = messageWith(page, secret);
      await message.waitFor({ timeout: 10000 });
      const countdown = await message.locator('.countdown').textContent();
      expect(/Disappears in \d+ s/.test(countdown), `countdown reads "${countdown}"`);
    }
    // A lasting reply quotes it: the quote must go with it.
    await messageWith(bob, secret).getByRole('button', { name: 'Reply' }).click();
    const reply = `a lasting reply ${Date.now()}`;
    await bob.getByLabel('Message', { exact: true }).fill(reply);
    await bob.getByLabel('Message', { exact: true }).press('Enter');
    for (const page of [alice, bob]) {
      await messageWith(page, reply).locator('.quote', { hasText: secret.slice(0, 20) }).waitFor({ timeout: 10000 });
    }
    const sentAt = Date.now();
    for (const page of [alice, bob]) {
      await messageWith(page, secret).waitFor({ state: 'detached', timeout: 15000 });
    }
    const took = (Date.now() - sentAt) / 1000;
    expect(took <= 12, `the message took ${took} s to vanish`);
    for (const [name, page] of [['alice', alice], ['bob', bob]]) {
      expect(!(await page.content()).includes(secret), `${name}'s page still holds the text`);
      const quote = await messageWith(page, reply).locator('.quote').textContent();
      expect(quote.includes('no longer available'), `${name}'s reply quotes "${quote}"`);
      const stored = await storedContent(page);
      expect(stored.length === 0, `${name}'s browser stored: ${stored.join('; ')}`);
    }
  },

  async 'after a network drop the missed messages arrive in order without a reload'({ alice, bob, bobsNetwork }) {
    networkCut = true;
    bobsNetwork.cut();
    await bob.locator('#connection', { hasText: 'Offline' }).waitFor({ timeout: 10000 });
    for (const text of ['missed one', 'missed two', 'missed three']) {
      await alice.getByLabel('Message', { exact: true }).fill(text);
      await alice.getByLabel('Message', { exact: true }).press('Enter');
      await messageWith(alice, text).waitFor();
    }
    await messageWith(alice, 'missed two').getByRole('button', { name: 'Edit' }).click();
    await alice.getByLabel('Message', { exact: true }).fill('missed two, edited');
    await alice.getByLabel('Message', { exact: true }).press('Enter');
    await messageWith(alice, 'missed two, edited').waitFor();
    bobsNetwork.restore();
    await bob.locator('#connection', { hasText: 'Connected' }).waitFor({ timeout: 20000 });
    await messageWith(bob, 'missed three').waitFor({ timeout: 10000 });
    networkCut = false;
    const texts = await bob.locator('#messages li.message .text').allTextContents();
    const tail = texts.slice(-3);
    expect(tail.join('|') === 'missed one|missed two, edited|missed three', `bob's last messages: ${tail}`);
  },

  async 'at phone width the list and the conversation take turns'({ bob }) {
    await bob.setViewportSize({ width: 375, height: 700 });
    expect(!(await bob.locator('#room-list').isVisible()), 'the list hides while a conversation is open');
    await bob.getByRole('button', { name: '← Conversations' }).click();
    await bob.locator('#room-list').waitFor({ state: 'visible' });
    expect(!(await bob.locator('#conversation').isVisible()), 'the conversation hides behind the list');
    const width = await bob.evaluate(() => document.documentElement.scrollWidth);
    expect(width <= 375, `the page scrolls sideways (${width} px)`);
    await bob.locator('#room-list a').first().click();
    await bob.locator('#compose-timer').waitFor({ state: 'visible' });
    await bob.setViewportSize({ width: 1100, height: 800 });
  },

  async 'a new room: created with a member, renamed live, its own timer limit, a member role'({ alice, bob }) {
    await alice.getByRole('button', { name: 'New room' }).click();
    await alice.getByLabel('Name', { exact: true }).fill('Project X');
    await alice.getByLabel('Topic (optional)').fill('Planning');
    await alice.getByLabel('Find a person').fill('bob');
    await alice.getByRole('button', { name: 'Add bob' }).click();
    await alice.getByRole('list', { name: 'Members to add' }).getByText('bob').waitFor();
    await alice.getByRole('button', { name: 'Create room' }).click();
    await alice.locator('#room-title', { hasText: 'Project X' }).waitFor({ timeout: 10000 });
    await alice.getByLabel('Message', { exact: true }).fill('kickoff');
    await alice.getByLabel('Message', { exact: true }).press('Enter');

    const entry = bob.locator('#room-list a', { hasText: 'Project X' });
    await entry.locator('.unread', { hasText: '1' }).waitFor({ timeout: 10000 });
    await entry.click();
    await messageWith(bob, 'kickoff').waitFor({ timeout: 10000 });

    await alice.getByRole('button', { name: 'Settings' }).click();
    await alice.getByLabel('Name', { exact: true }).fill('Project Y');
    await alice.getByLabel('Longest message timer in this room (seconds; empty: as the policy above)').fill('60');
    await alice.getByRole('button', { name: 'Save' }).click();
    await bob.locator('#room-title', { hasText: 'Project Y' }).waitFor({ timeout: 10000 });
    const options = await timerOptions(bob, () => ![...document.querySelectorAll('#compose-timer option')]
      .some((o) => o.textContent === 'No timer'));
    expect(!options.includes('No timer') && !options.includes('Disappears after 5 minutes')
      && options.includes('Disappears after 1 minute'), `in the room: ${options}`);

    await alice.getByRole('button', { name: /Members/ }).click();
    await alice.getByLabel('Role of bob').selectOption('moderator');
    // Bob's new role reaches his open page live: moderators get the settings.
    await bob.getByRole('button', { name: 'Settings' }).waitFor({ timeout: 10000 });
    await bob.locator('#room-list a', { hasText: 'alice' }).click();
    await bob.locator('#room-title', { hasText: 'alice' }).waitFor();
  },

  async 'an admin tightens the policy and the timer choices follow'({ bob, browser }) {
    const before = await timerOptions(bob);
    expect(before.includes('No timer'), `before: ${before}`);
    expect(before.some((o) => o.startsWith('Burn')), `before, burn-on-read is offered: ${before}`);
    expect(before.includes('Disappears after 1 day'), `before: ${before}`);

    // The admin tightens the org policy in the console.
    const admin = await adminPage(browser);
    await admin.getByRole('link', { name: 'Admin' }).click();
    await admin.getByRole('link', { name: 'Messaging policy' }).click();
    await admin.getByLabel('Longest message timer (seconds; empty: messages may be kept)').fill('300');
    await admin.getByLabel('Burn-on-read allowed').uncheck();
    await admin.getByRole('button', { name: 'Save policy' }).click();
    await admin.locator('#policy-saved').waitFor({ state: 'visible', timeout: 10000 });
    const saved = await adminApi('GET', '/api/v1/admin/policy');
    expect(saved.expiration_max === 300 && saved.burn_on_read_allowed === false, `saved: ${JSON.stringify(saved)}`);

    const after = await timerOptions(bob, () => ![...document.querySelectorAll('#compose-timer option')]
      .some((o) => o.textContent === 'No timer'));
    expect(!after.includes('No timer'), `after: ${after}`);
    expect(/^Policy (default|maximum) \(disappears after 5 minutes\)$/.test(after[0]), `after: ${after}`);
    expect(!after.some((o) => o.startsWith('Burn')), `after, burn-on-read is still offered: ${after}`);
    expect(!after.includes('Disappears after 1 hour'), `after: ${after}`);
    expect(after.includes('Disappears after 5 minutes'), `after: ${after}`);
  },

  async 'an admin puts a user in a security group with a tighter timer'({ bob, browser }) {
    const admin = await adminPage(browser);
    await admin.getByRole('link', { name: 'Security groups' }).click();
    await admin.getByLabel('Name', { exact: true }).fill('Contractors');
    await admin.getByLabel('Precedence (lower wins)').fill('10');
    await admin.getByRole('button', { name: 'Create group' }).click();
    await admin.locator('#group-title', { hasText: 'Contractors' }).waitFor({ timeout: 10000 });
    await admin.getByLabel('Add member (username)').fill('bob');
    await admin.getByRole('button', { name: 'Add member' }).click();
    await admin.getByRole('button', { name: 'Remove bob from Contractors' }).waitFor({ timeout: 10000 });
    await admin.getByLabel('Longest message timer (seconds; empty: inherit)').fill('60');
    await admin.getByLabel('Most members in a room (members; empty: inherit)').fill('50');
    await admin.getByLabel('Forwarding').selectOption('no');
    await admin.getByRole('button', { name: 'Save group policy' }).click();
    await admin.locator('tr[data-group="Contractors"]', { hasText: 'timer ≤ 60 s' }).waitFor({ timeout: 10000 });
    await admin.locator('tr[data-group="Contractors"]', { hasText: 'rooms ≤ 50 members; no forwarding' }).waitFor({ timeout: 10000 });
    await admin.locator('#group-rename').fill('Contractors (external)');
    await admin.getByRole('button', { name: 'Save name and precedence' }).click();
    await admin.locator('tr[data-group="Contractors (external)"]').waitFor({ timeout: 10000 });

    const after = await timerOptions(bob, () => ![...document.querySelectorAll('#compose-timer option')]
      .some((o) => o.textContent === 'Disappears after 5 minutes'));
    expect(/^Policy (default|maximum) \(disappears after 1 minute\)$/.test(after[0]), `in the group: ${after}`);
    expect(after.includes('Disappears after 1 minute') && !after.includes('Disappears after 5 minutes'), `in the group: ${after}`);
  },

  async 'a compliance officer places a hold, previews retention, runs an export; the audit chain verifies'({ browser }) {
    const carol = await newPerson(browser, 'carol');
    await signIn(carol, 'carol', env('CAROL_PASSWORD'));
    await carol.getByRole('link', { name: 'Admin' }).click();
    const tabs = await carol.locator('.admin-tabs a').allTextContents();
    expect(tabs.join(',') === 'Audit log,Retention,Legal holds,Exports', `carol's sections: ${tabs}`);

    await carol.locator('#chain-status.ok-text').waitFor({ timeout: 10000 });
    expect((await carol.locator('#chain-status').textContent()).startsWith('Chain intact'), 'the chain verifies');
    await carol.getByLabel('Action').fill('auth.login');
    await carol.getByRole('button', { name: 'Apply filters' }).click();
    await carol.waitForFunction(() => {
      const cells = [...document.querySelectorAll('#audit-results tbody tr td:nth-child(4)')];
      return cells.length > 0 && cells.every((td) => td.textContent === 'auth.login');
    }, null, { timeout: 10000 });

    const [csv] = await Promise.all([carol.waitForEvent('download'), carol.getByRole('link', { name: 'Download CSV' }).click()]);
    const { readFile } = await import('node:fs/promises');
    const rows = (await readFile(await csv.path(), 'utf8')).trim().split('\n');
    expect(rows.length > 1 && rows.slice(1).every((r) => r.includes('auth.login')), `the CSV export: ${rows.slice(0, 3).join(' / ')}`);

    await carol.getByRole('link', { name: 'Legal holds' }).click();
    await carol.getByLabel('Matter').fill('Matter 42');
    await carol.getByLabel('Reason').fill('Litigation about the report');
    await carol.getByLabel('Custodians').fill('alice');
    await carol.getByRole('button', { name: 'Place hold' }).click();
    await carol.locator('tr', { hasText: 'Matter 42' }).getByText('Active').waitFor({ timeout: 10000 });

    await carol.getByRole('link', { name: 'Retention' }).click();
    await carol.getByLabel('Destroy after (days)').fill('1');
    await carol.getByRole('button', { name: 'Preview' }).click();
    await carol.locator('#preview-results', { hasText: 'Would destroy' }).waitFor({ timeout: 10000 });
    carol.once('dialog', (dialog) => dialog.accept());
    await carol.getByRole('button', { name: 'Apply' }).click();
    await carol.getByRole('button', { name: 'Remove the policy of org' }).waitFor({ timeout: 10000 });
    carol.once('dialog', (dialog) => dialog.accept());
    await carol.getByRole('button', { name: 'Remove the policy of org' }).click();
    await carol.getByRole('button', { name: 'Remove the policy of org' }).waitFor({ state: 'detached', timeout: 10000 });

    await carol.getByRole('link', { name: 'Exports' }).click();
    const local = (d) => new Date(d.getTime() - d.getTimezoneOffset() * 60000).toISOString().slice(0, 16);
    await carol.getByLabel('Format').selectOption('jsonl');
    await carol.getByLabel('From').fill(local(new Date(Date.now() - 86400000)));
    await carol.getByLabel('Until').fill(local(new Date()));
    await carol.getByLabel('Scope').selectOption({ label: 'Hold: Matter 42' });
    await carol.getByRole('button', { name: 'Start export' }).click();
    await carol.locator('#export-list tbody tr').first().getByRole('link', { name: 'manifest.json' }).waitFor({ timeout: 30000 });
    const state = await carol.locator('#export-list tbody tr .state').first().textContent();
    expect(state === 'done', `the export is ${state}`);
    await carol.getByRole('button', { name: /Files and verification of export/ }).first().click();
    await carol.getByRole('button', { name: 'Verify signature and files' }).click();
    await carol.locator('#export-verification.ok-text', { hasText: 'Intact: all' }).waitFor({ timeout: 10000 });
    expect((await carol.getByRole('list', { name: 'Files in the export' }).locator('li').count()) > 0, 'the export lists files');
  },

  async 'an admin suspends a user, who is signed out at once'({ browser, bob }) {
    const admin = await adminPage(browser);
    await admin.getByRole('link', { name: 'Admin' }).click();
    const tabs = await admin.locator('.admin-tabs a').allTextContents();
    expect(tabs.join(',') === 'Users,Messaging policy,Security groups,Directory', `the admin's sections: ${tabs} (separation of duties)`);
    await admin.getByRole('link', { name: 'Users' }).click();
    await admin.getByLabel('Find by name or username').fill('bob');
    await admin.getByRole('button', { name: 'Search' }).click();
    const row = admin.locator('tr[data-username="bob"]');
    await row.waitFor();
    await row.getByRole('button', { name: 'Suspend bob' }).click();
    await admin.locator('tr[data-username="bob"] .status', { hasText: 'suspended' }).waitFor({ timeout: 10000 });
    await bob.getByText('Your session has ended. Please sign in again.').waitFor({ timeout: 20000 });
    await admin.getByRole('button', { name: 'Reactivate bob' }).click();
    await admin.locator('tr[data-username="bob"] .status', { hasText: 'active' }).waitFor({ timeout: 10000 });
  },
};

async function main() {
  mkdirSync(artifacts, { recursive: true });
  const browser = await chromium.launch({
    executablePath,
    headless: true,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
  let failed = 0;
  try {
    const alice = await newPerson(browser, 'alice');
    const bob = await newPerson(browser, 'bob');
    await signIn(alice, 'alice', env('ALICE_PASSWORD'));
    // Bob reaches the server through a relay the drop scenario cuts.
    const bobsNetwork = await relay(url);
    await signIn(bob, 'bob', env('BOB_PASSWORD'), bobsNetwork.url);
    for (const [name, run] of Object.entries(scenarios)) {
      const started = Date.now();
      try {
        await run({ alice, bob, browser, bobsNetwork });
        if (problems.length) throw new Error(problems.splice(0).join('\n'));
        console.log(`ok - ${name} (${Date.now() - started} ms)`);
      } catch (err) {
        failed += 1;
        console.log(`FAILED - ${name}: ${err.stack || err}`);
        for (const [who, page] of Object.entries(pages)) {
          const path = join(artifacts, `${name.replace(/[^a-z0-9]+/gi, '-')}-${who}.png`);
          await page.screenshot({ path, fullPage: true }).catch(() => {});
          console.log(`screenshot: ${path}`);
        }
        problems.length = 0;
        break;
      }
    }
  } finally {
    await browser.close();
  }
  process.exit(failed ? 1 : 0);
}

main().catch((err) => {
  console.log(`FAILED - setup: ${err.stack || err}`);
  process.exit(1);
});
