// Entry point: finds out whether a session exists (the HttpOnly cookie is invisible to
// script, so it asks GET /api/v1/me), then shows sign-in, the forced password change, or
// the conversations. Routes are in the URL fragment (#/room/ID), so the server serves one
// page.

import { api, describe, setUnauthenticatedHandler } from './api.js';
import { h, replace } from './dom.js';
import { Chat } from './chat.js';
import { Admin, sectionsFor } from './admin.js';

const main = document.getElementById('main');
const alertBox = document.getElementById('alert');
const topbar = document.getElementById('topbar');

const app = {
  chat: null,
  admin: null,
  inAdmin: false,
  me: null,

  showError(error) {
    const parts = [h('span', { class: 'message' }, describe(error))];
    if (error && error.requestId) parts.push(' ', h('span', { class: 'request-id' }, `(request ${error.requestId})`));
    parts.push(' ', h('button', { type: 'button', class: 'link', onclick: () => app.clearError() }, 'Dismiss'));
    replace(alertBox, parts);
    alertBox.hidden = false;
  },

  clearError() {
    alertBox.hidden = true;
    replace(alertBox);
  },

  setConnection(text) {
    document.getElementById('connection').textContent = text;
  },

  /** Says something to screen readers without moving focus. */
  announce(text) {
    document.getElementById('announcer').textContent = text;
  },
};

function signedOut(message) {
  if (app.chat) app.chat.stop();
  if (app.admin) app.admin.stop();
  app.chat = null;
  app.admin = null;
  app.inAdmin = false;
  app.me = null;
  topbar.hidden = true;
  showLogin(message);
}

setUnauthenticatedHandler(() => signedOut(app.me ? 'Your session has ended. Please sign in again.' : undefined));

/** A sign-in page being prepared (its providers are being fetched), if any. */
let loginPending = null;

async function showLogin(message) {
  // Several paths can find the session gone at once: render the page once, and never
  // replace a form someone may already be typing in (only its message changes).
  const shown = main.querySelector('#login-error');
  if (shown) {
    if (message) shown.textContent = message;
    return;
  }
  if (loginPending) {
    if (message) loginPending.message = message;
    return;
  }
  const pending = { message };
  loginPending = pending;
  let providers = { oidc: [], ldap: false, local: true };
  try {
    providers = await api('GET', '/api/v1/auth/providers');
  } catch (err) {
    app.showError(err);
  } finally {
    loginPending = null;
  }
  const problem = h('p', { class: 'error-text', role: 'alert', id: 'login-error' }, pending.message || '');
  const buttons = providers.oidc.map((p) => h('a', {
    class: 'button primary', role: 'button', href: `${p.login_url}?return_to=${encodeURIComponent('/')}`,
    id: `sso-${p.id}`,
  }, `Sign in with ${p.display_name}`));
  const form = (endpoint, legend, id) => {
    const user = h('input', { id: `${id}-username`, name: 'username', autocomplete: 'username', required: true });
    const pass = h('input', { id: `${id}-password`, name: 'password', type: 'password', autocomplete: 'current-password', required: true });
    const f = h('form', { id: `${id}-form`, 'aria-label': legend },
      h('label', { for: `${id}-username` }, 'Username'), user,
      h('label', { for: `${id}-password` }, 'Password'), pass,
      h('div', { class: 'actions' }, h('button', { type: 'submit', class: 'primary' }, legend)));
    f.addEventListener('submit', async (e) => {
      e.preventDefault();
      problem.textContent = '';
      try {
        await api('POST', endpoint, { username: user.value, password: pass.value });
        pass.value = '';
        boot();
      } catch (err) {
        problem.textContent = describe(err);
        pass.focus();
      }
    });
    return f;
  };
  const forms = [];
  if (providers.ldap) forms.push(form('/api/v1/auth/ldap/login', 'Sign in with your directory account', 'ldap'));
  const local = form('/api/v1/auth/login', 'Sign in with a local account', 'local');
  if (providers.ldap || providers.oidc.length) {
    forms.push(h('details', { open: !providers.ldap && !providers.oidc.length },
      h('summary', {}, providers.local ? 'Local account' : 'Emergency (break-glass) account'), local));
  } else {
    forms.push(local);
  }
  replace(main, h('section', { class: 'login card', 'aria-labelledby': 'login-title' },
    h('h1', { id: 'login-title' }, 'Sign in to Conclave'),
    buttons.length ? h('div', { class: 'providers' }, buttons) : null,
    forms, problem));
  const first = main.querySelector('a.button, input');
  if (first) first.focus();
}

function showPasswordChange(me) {
  const current = h('input', { id: 'current-password', type: 'password', autocomplete: 'current-password', required: true });
  const next = h('input', { id: 'new-password', type: 'password', autocomplete: 'new-password', required: true, minlength: '12' });
  const again = h('input', { id: 'repeat-password', type: 'password', autocomplete: 'new-password', required: true });
  const problem = h('p', { class: 'error-text', role: 'alert' });
  const form = h('form', { id: 'password-form' },
    h('label', { for: 'current-password' }, 'Current (one-time) password'), current,
    h('label', { for: 'new-password' }, 'New password (at least 12 characters)'), next,
    h('label', { for: 'repeat-password' }, 'New password again'), again,
    h('div', { class: 'actions' }, h('button', { type: 'submit', class: 'primary' }, 'Change password')));
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    if (next.value !== again.value) { problem.textContent = 'The new passwords differ.'; return; }
    try {
      await api('POST', '/api/v1/me/password', { current_password: current.value, new_password: next.value });
      boot();
    } catch (err) { problem.textContent = describe(err); }
  });
  replace(main, h('section', { class: 'login card', 'aria-labelledby': 'password-title' },
    h('h1', { id: 'password-title' }, `Choose your password, ${me.display_name}`),
    h('p', { class: 'hint' }, 'Your account must set its own password before anything else.'),
    form, problem));
  current.focus();
}

function showTopbar(me) {
  document.getElementById('whoami').textContent = `${me.display_name} (@${me.username})`;
  replace(document.getElementById('sections'), h('a', { href: '#/' }, 'Conversations'),
    sectionsFor(me).length ? h('a', { href: '#/admin', id: 'admin-link' }, 'Admin') : null);
  topbar.hidden = false;
}

async function route() {
  if (!app.chat) return;
  // In-page anchors (the skip link's `#main`) are not routes: keep the open view.
  if (location.hash && !location.hash.startsWith('#/')) return;
  const admin = /^#\/admin(?:\/([a-z]+))?$/.exec(location.hash);
  if (admin) {
    app.inAdmin = true;
    await app.admin.show(main, admin[1]);
    return;
  }
  if (app.inAdmin) {
    app.admin.stop();
    app.inAdmin = false;
    replace(main, app.chat.root);
  }
  await app.chat.route(location.hash);
}

async function boot() {
  app.clearError();
  let me;
  try {
    me = await api('GET', '/api/v1/me');
  } catch (err) {
    // The 401 handler has already shown the sign-in page.
    if (err.status === 401) return undefined;
    replace(main, h('p', { class: 'empty error-text' }, describe(err)));
    return undefined;
  }
  app.me = me;
  if (me.password_change_required) return showPasswordChange(me);
  showTopbar(me);
  if (app.chat) app.chat.stop();
  if (app.admin) app.admin.stop();
  app.chat = new Chat(app, me);
  app.admin = new Admin(app, me);
  app.inAdmin = false;
  try {
    await app.chat.start(main);
    await route();
  } catch (err) {
    app.showError(err);
  }
  return undefined;
}

document.getElementById('logout').addEventListener('click', async () => {
  try {
    const answer = await api('POST', '/api/v1/auth/logout');
    if (answer && answer.end_session_url) {
      location.assign(answer.end_session_url);
      return;
    }
  } catch (err) {
    if (err.status !== 401) { app.showError(err); return; }
  }
  history.replaceState(null, '', '/');
  signedOut('You have signed out.');
});

window.addEventListener('hashchange', () => { route().catch((err) => app.showError(err)); });
boot();
