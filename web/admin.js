// The admin console, shown by role: users (admins), the audit log with its verification
// status (auditors), retention previews, legal holds and exports (compliance officers).
// Every action goes through the same API as the command line; the server checks roles,
// this page only hides what the account cannot use.

import { api, describe } from './api.js';
import { h, replace, formatTime } from './dom.js';

const ROLES = ['admin', 'compliance_officer', 'auditor'];

/** The console's sections the account may open, in order. */
export function sectionsFor(me) {
  const has = (role) => me.roles.includes(role);
  return [
    has('admin') && { id: 'users', label: 'Users' },
    has('admin') && { id: 'policy', label: 'Messaging policy' },
    has('admin') && { id: 'directory', label: 'Directory' },
    has('auditor') && { id: 'audit', label: 'Audit log' },
    has('compliance_officer') && { id: 'retention', label: 'Retention' },
    has('compliance_officer') && { id: 'holds', label: 'Legal holds' },
    has('compliance_officer') && { id: 'exports', label: 'Exports' },
  ].filter(Boolean);
}

function table(caption, headings, rows) {
  return h('table', { class: 'data' },
    h('caption', {}, caption),
    h('thead', {}, h('tr', {}, headings.map((t) => h('th', { scope: 'col' }, t)))),
    h('tbody', {}, rows.length ? rows : [h('tr', {}, h('td', { colspan: String(headings.length) }, 'Nothing to show.'))]));
}

function field(id, label, input) {
  input.id = id;
  return [h('label', { for: id }, label), input];
}

/** RFC 3339 from a datetime-local input ('' → null). */
function instant(value) {
  return value ? new Date(value).toISOString() : null;
}

export class Admin {
  constructor(app, me) {
    this.app = app;
    this.me = me;
    this.poll = null;
  }

  stop() { clearInterval(this.poll); }

  async show(main, section) {
    this.stop();
    const sections = sectionsFor(this.me);
    if (!sections.length) {
      replace(main, h('p', { class: 'empty' }, 'Your account has no administrative role.'));
      return;
    }
    const current = sections.find((s) => s.id === section) || sections[0];
    this.body = h('div', { class: 'admin-body', id: 'admin-body' });
    replace(main, h('div', { class: 'admin' },
      h('nav', { class: 'admin-tabs', 'aria-label': 'Admin sections' },
        sections.map((s) => h('a', { href: `#/admin/${s.id}`, 'aria-current': s.id === current.id ? 'page' : null }, s.label))),
      h('h1', { id: 'admin-title' }, current.label),
      this.body));
    try {
      await this[current.id]();
    } catch (err) {
      replace(this.body, h('p', { class: 'error-text' }, describe(err)));
    }
  }

  act(promise, done) {
    return promise.then((value) => { this.app.clearError(); if (done) done(value); return value; })
      .catch((err) => { this.app.showError(err); });
  }

  // ---- users --------------------------------------------------------------------------

  async users() {
    const q = h('input', { type: 'search', autocomplete: 'off' });
    const results = h('div', { id: 'user-results' });
    const load = async () => {
      const query = q.value.trim();
      const page = await api('GET', query ? `/api/v1/admin/users?q=${encodeURIComponent(query)}&limit=50` : '/api/v1/admin/users?limit=50');
      replace(results, table('Accounts', ['User', 'Status', 'Roles', 'Actions'], page.users.map((u) => this.userRow(u, load))));
    };
    const form = h('form', { role: 'search', 'aria-label': 'Find accounts' }, ...field('user-search', 'Find by name or username', q),
      h('button', { type: 'submit' }, 'Search'));
    form.addEventListener('submit', (e) => { e.preventDefault(); this.act(load()); });
    replace(this.body, form, results);
    await load();
  }

  userRow(user, reload) {
    const boxes = ROLES.map((role) => {
      const box = h('input', { type: 'checkbox', id: `role-${user.id}-${role}`, checked: user.roles.includes(role) });
      return h('span', { class: 'role' }, box, h('label', { for: `role-${user.id}-${role}`, class: 'inline' }, role.replace('_', ' ')));
    });
    const saveRoles = h('button', {
      type: 'button', 'aria-label': `Save roles of ${user.username}`,
      onclick: () => {
        const roles = ['user', ...ROLES.filter((role) => document.getElementById(`role-${user.id}-${role}`).checked)];
        this.act(api('PUT', `/api/v1/admin/users/${user.id}/roles`, { roles }), reload);
      },
    }, 'Save roles');
    const suspended = user.status !== 'active';
    const toggle = h('button', {
      type: 'button', class: suspended ? '' : 'danger', 'aria-label': `${suspended ? 'Reactivate' : 'Suspend'} ${user.username}`,
      onclick: () => this.act(api('POST', `/api/v1/admin/users/${user.id}/${suspended ? 'reactivate' : 'suspend'}`), reload),
    }, suspended ? 'Reactivate' : 'Suspend');
    const endSessions = h('button', {
      type: 'button', 'aria-label': `End the sessions of ${user.username}`,
      onclick: () => this.act(api('DELETE', `/api/v1/admin/users/${user.id}/sessions`),
        (r) => this.app.announce(`Ended ${r ? r.sessions_ended : 0} sessions of ${user.username}.`)),
    }, 'End sessions');
    return h('tr', { dataset: { username: user.username } },
      h('td', {}, h('strong', {}, user.display_name), h('br'), `@${user.username}`, user.email ? ` · ${user.email}` : ''),
      h('td', { class: 'status' }, user.status),
      h('td', {}, boxes, saveRoles),
      h('td', {}, toggle, ' ', endSessions));
  }

  // ---- messaging policy ---------------------------------------------------------------

  async policy() {
    const policy = await api('GET', '/api/v1/admin/policy');
    const seconds = (key, label) => {
      const input = h('input', { type: 'number', min: '60', max: String(365 * 86400), value: policy[key] ?? '' });
      return { key, kind: 'seconds', input, parts: field(`policy-${key}`, label, input) };
    };
    const flag = (key, label) => {
      const input = h('input', { type: 'checkbox', checked: policy[key] });
      input.id = `policy-${key}`;
      return { key, kind: 'flag', input, parts: [h('span', { class: 'check' }, input, h('label', { for: input.id, class: 'inline' }, label))] };
    };
    const count = (key, label) => {
      const input = h('input', { type: 'number', min: '1', value: policy[key] });
      return { key, kind: 'count', input, parts: field(`policy-${key}`, label, input) };
    };
    const fields = [
      seconds('expiration_max', 'Longest message timer (seconds; empty: messages may be kept)'),
      seconds('expiration_default', 'Default message timer (seconds; empty: none)'),
      flag('burn_on_read_allowed', 'Burn-on-read allowed'),
      seconds('burn_on_read_max', 'Longest burn-on-read timer (seconds; empty: no limit)'),
      seconds('burn_on_read_default', 'Default burn-on-read timer (seconds; empty: none)'),
      flag('files_enabled', 'Files may be shared'),
      flag('file_download_enabled', 'Shared files may be downloaded'),
      count('file_max_bytes', 'Largest file (bytes)'),
      flag('may_create_rooms', 'Members may create rooms'),
      count('max_room_size', 'Most members in a room'),
      count('session_lifetime_minutes', 'Longest session (minutes)'),
      count('session_idle_minutes', 'Session idle timeout (minutes)'),
    ];
    const problem = h('p', { class: 'error-text', role: 'alert' });
    const form = h('form', { 'aria-label': 'Organisation messaging policy', id: 'policy-form' },
      fields.map((f) => f.parts), problem,
      h('button', { type: 'submit', class: 'primary' }, 'Save policy'));
    form.addEventListener('submit', async (e) => {
      e.preventDefault();
      const next = { ...policy };
      for (const f of fields) {
        if (f.kind === 'flag') next[f.key] = f.input.checked;
        else if (f.kind === 'seconds') next[f.key] = f.input.value === '' ? null : Number(f.input.value);
        else next[f.key] = Number(f.input.value);
      }
      try {
        await api('PUT', '/api/v1/admin/policy', next);
        problem.textContent = '';
        this.app.announce('The policy is saved.');
        await this.policy();
        this.body.querySelector('#policy-saved').hidden = false;
      } catch (err) { problem.textContent = describe(err); }
    });
    replace(this.body, h('p', { class: 'hint' }, 'The organisation default. Security groups and rooms may only tighten it. Changes apply to what happens from now on.'),
      h('p', { class: 'ok-text', id: 'policy-saved', role: 'status', hidden: true }, 'Saved.'), form);
  }

  // ---- directory ----------------------------------------------------------------------

  async directory() {
    const out = h('div', { id: 'sync-report', 'aria-live': 'polite' });
    const run = (dryRun) => this.act(api('POST', '/api/v1/admin/directory/sync', { dry_run: dryRun }), (r) => replace(out,
      h('p', { class: 'ok-text' }, dryRun ? 'Dry run: nothing was changed.' : 'Synchronised.'),
      table('Directory sync report', ['Entries', 'Created', 'Updated', 'Reactivated', 'Deprovisioned', 'Skipped', 'Took'], [h('tr', {},
        [r.entries, r.created, r.updated, r.reactivated, r.deprovisioned, r.skipped, `${r.duration_ms} ms`].map((v) => h('td', {}, String(v))))]),
      r.deprovisioning_skipped ? h('p', {}, `Deprovisioning skipped: ${r.deprovisioning_skipped}`) : null,
      r.problems.length ? h('ul', { 'aria-label': 'Problems' }, r.problems.map((p) => h('li', {}, p))) : null));
    replace(this.body,
      h('p', { class: 'hint' }, 'Reads the LDAP directory and brings accounts, roles and directory security groups in step. A dry run reports what would change.'),
      h('button', { type: 'button', onclick: () => run(true) }, 'Dry run'), ' ',
      h('button', { type: 'button', class: 'primary', onclick: () => run(false) }, 'Synchronise now'),
      out);
  }

  // ---- audit log ----------------------------------------------------------------------

  async audit() {
    const status = h('p', { id: 'chain-status', role: 'status' }, 'Verifying the chain…');
    const action = h('input', { placeholder: 'e.g. user.suspend' });
    const actor = h('input', { placeholder: 'user id' });
    const from = h('input', { type: 'datetime-local' });
    const until = h('input', { type: 'datetime-local' });
    const results = h('div', { id: 'audit-results' });
    let after = null;
    const load = async (more) => {
      const params = new URLSearchParams({ limit: '50' });
      if (action.value.trim()) params.set('action', action.value.trim());
      if (actor.value.trim()) params.set('actor_id', actor.value.trim());
      if (from.value) params.set('from', instant(from.value));
      if (until.value) params.set('until', instant(until.value));
      if (more && after) params.set('after', String(after));
      const page = await api('GET', `/api/v1/audit/events?${params}`);
      after = page.next_after;
      const rows = page.events.map((e) => h('tr', {},
        h('td', {}, String(e.seq)), h('td', {}, h('time', { datetime: e.occurred_at }, formatTime(e.occurred_at))),
        h('td', {}, e.actor_name), h('td', {}, e.action), h('td', {}, e.outcome),
        h('td', {}, e.target_kind ? `${e.target_kind} ${e.target_id || ''}` : ''),
        h('td', {}, e.client_addr || '')));
      const body = more && results.querySelector('tbody');
      if (body) body.append(...rows);
      else replace(results, table('Audit events (oldest first)', ['#', 'When', 'Actor', 'Action', 'Outcome', 'Target', 'Address'], rows));
      const next = h('button', { type: 'button', id: 'audit-more', onclick: () => this.act(load(true)) }, 'More');
      const old = results.querySelector('#audit-more');
      if (old) old.remove();
      if (after) results.append(next);
    };
    const form = h('form', { 'aria-label': 'Filter audit events', class: 'filters' },
      ...field('audit-action', 'Action', action), ...field('audit-actor', 'Actor id', actor),
      ...field('audit-from', 'From', from), ...field('audit-until', 'Until', until),
      h('button', { type: 'submit' }, 'Apply filters'));
    form.addEventListener('submit', (e) => { e.preventDefault(); after = null; this.act(load(false)); });
    replace(this.body, status, form, results);
    await load(false);
    try {
      const v = await api('GET', '/api/v1/audit/verification');
      status.textContent = v.intact
        ? `Chain intact: ${v.events} events and ${v.checkpoints} signed checkpoints verified.`
        : `Chain BROKEN at sequence number ${v.first_bad_seq}: ${v.reason || 'tampering detected'}.`;
      status.className = v.intact ? 'ok-text' : 'error-text';
    } catch (err) { status.textContent = `Verification failed: ${describe(err)}`; }
  }

  // ---- retention ----------------------------------------------------------------------

  async retention() {
    const { policies } = await api('GET', '/api/v1/compliance/retention-policies');
    const scope = h('input', { value: 'org', required: true });
    const min = h('input', { type: 'number', min: '1', max: '36500' });
    const max = h('input', { type: 'number', min: '1', max: '36500' });
    const out = h('div', { id: 'preview-results', 'aria-live': 'polite' });
    const form = h('form', { 'aria-label': 'Preview a retention policy', class: 'filters' },
      ...field('retention-scope', 'Scope (org, group:ID or room:ID)', scope),
      ...field('retention-min', 'Keep at least (days)', min), ...field('retention-max', 'Destroy after (days)', max),
      h('button', { type: 'submit' }, 'Preview'),
      h('button', {
        type: 'button', class: 'primary', id: 'retention-apply',
        onclick: () => {
          if (!window.confirm(`Set the retention policy of ${scope.value.trim()}? Messages past it will be destroyed.`)) return;
          this.act(api('PUT', `/api/v1/compliance/retention-policies/${encodeURIComponent(scope.value.trim())}`,
            { min_days: min.value ? Number(min.value) : null, max_days: max.value ? Number(max.value) : null }), () => this.retention());
        },
      }, 'Apply'));
    form.addEventListener('submit', (e) => {
      e.preventDefault();
      const body = { scope: scope.value.trim(), min_days: min.value ? Number(min.value) : null, max_days: max.value ? Number(max.value) : null };
      this.act(api('POST', '/api/v1/compliance/retention-policies/preview', body), (p) => replace(out,
        h('p', {}, `Would destroy ${p.destroy_now} messages now and ${p.destroy_within_30_days} within 30 days; legal holds keep ${p.held}.`),
        table('Rooms affected', ['Room', 'Now', 'Within 30 days', 'Held'], p.rooms.map((r) => h('tr', {},
          h('td', {}, r.room_name || `${r.room_kind} ${r.room_id}`), h('td', {}, String(r.destroy_now)),
          h('td', {}, String(r.destroy_within_30_days)), h('td', {}, String(r.held)))))));
    });
    replace(this.body,
      table('Retention policies', ['Scope', 'Keep at least', 'Destroy after', 'Updated', 'Actions'], policies.map((p) => h('tr', {},
        h('td', {}, p.scope), h('td', {}, p.min_days ? `${p.min_days} days` : '—'),
        h('td', {}, p.max_days ? `${p.max_days} days` : '—'), h('td', {}, formatTime(p.updated_at)),
        h('td', {}, h('button', {
          type: 'button', class: 'danger', 'aria-label': `Remove the policy of ${p.scope}`,
          onclick: () => {
            if (window.confirm(`Remove the retention policy of ${p.scope}?`)) {
              this.act(api('DELETE', `/api/v1/compliance/retention-policies/${encodeURIComponent(p.scope)}`), () => this.retention());
            }
          },
        }, 'Remove'))))),
      h('h2', {}, 'Preview a change'), h('p', { class: 'hint' }, 'A preview changes nothing.'), form, out);
  }

  // ---- legal holds --------------------------------------------------------------------

  async holds() {
    const { holds } = await api('GET', '/api/v1/compliance/legal-holds');
    const name = h('input', { required: true, maxlength: '200' });
    const reason = h('textarea', { required: true, maxlength: '2000', rows: '2' });
    const custodians = h('input', { placeholder: 'usernames, separated by commas' });
    const rooms = h('input', { placeholder: 'room ids, separated by commas' });
    const form = h('form', { 'aria-label': 'Place a legal hold' },
      ...field('hold-name', 'Matter', name), ...field('hold-reason', 'Reason', reason),
      ...field('hold-custodians', 'Custodians', custodians), ...field('hold-rooms', 'Rooms', rooms),
      h('button', { type: 'submit', class: 'primary' }, 'Place hold'));
    form.addEventListener('submit', async (e) => {
      e.preventDefault();
      try {
        const ids = [];
        for (const username of custodians.value.split(',').map((s) => s.trim()).filter(Boolean)) {
          const { people } = await api('GET', `/api/v1/users?q=${encodeURIComponent(username)}&limit=50`);
          const person = people.find((p) => p.username === username.toLowerCase());
          if (!person) throw new Error(`No active account is named ${username}.`);
          ids.push(person.id);
        }
        await api('POST', '/api/v1/compliance/legal-holds', {
          name: name.value, reason: reason.value, custodians: ids,
          rooms: rooms.value.split(',').map((s) => s.trim()).filter(Boolean),
        });
        this.app.clearError();
        await this.holds();
      } catch (err) { this.app.showError(err); }
    });
    replace(this.body,
      table('Legal holds', ['Matter', 'Covers', 'Placed', 'State', 'Actions'], holds.map((hold) => h('tr', { dataset: { holdId: hold.id } },
        h('td', {}, h('strong', {}, hold.name), h('br'), hold.reason),
        h('td', {}, `${hold.custodians.length} custodians, ${hold.rooms.length} rooms`),
        h('td', {}, formatTime(hold.created_at)),
        h('td', {}, hold.released_at ? `Released ${formatTime(hold.released_at)}` : 'Active'),
        h('td', {}, hold.released_at ? '' : h('button', {
          type: 'button', class: 'danger', 'aria-label': `Release ${hold.name}`,
          onclick: () => { if (window.confirm(`Release the hold "${hold.name}"?`)) this.act(api('POST', `/api/v1/compliance/legal-holds/${hold.id}/release`), () => this.holds()); },
        }, 'Release'))))),
      h('h2', {}, 'Place a hold'), form);
  }

  // ---- exports ------------------------------------------------------------------------

  async exports() {
    const list = h('div', { id: 'export-list' });
    const load = async () => {
      const { exports } = await api('GET', '/api/v1/compliance/exports');
      replace(list, table('Exports (newest first)', ['Started', 'Format', 'Window', 'Progress', 'State', 'Files'], exports.map((x) => h('tr', { dataset: { exportId: x.id } },
        h('td', {}, formatTime(x.created_at)), h('td', {}, x.format),
        h('td', {}, `${formatTime(x.from)} – ${formatTime(x.until)}`),
        h('td', {}, h('progress', { max: String(Math.max(1, x.progress.rooms_total)), value: String(x.progress.rooms_done), 'aria-label': 'Rooms exported' }),
          ` ${x.progress.rooms_done}/${x.progress.rooms_total} rooms, ${x.progress.events_written} events`),
        h('td', { class: 'state' }, x.status + (x.error ? `: ${x.error}` : '')),
        h('td', {}, x.status === 'done' ? [
          h('a', { href: `/api/v1/compliance/exports/${x.id}/files/manifest.json`, download: 'manifest.json' }, 'manifest.json'), ' ',
          h('a', { href: `/api/v1/compliance/exports/${x.id}/files/manifest.sig`, download: 'manifest.sig' }, 'manifest.sig'),
        ] : '')))));
      return exports.some((x) => x.status === 'pending' || x.status === 'running');
    };
    const { holds } = await api('GET', '/api/v1/compliance/legal-holds?active=true');
    const format = h('select', {}, ['jsonl', 'csv', 'eml', 'xml'].map((f) => h('option', { value: f }, f)));
    const from = h('input', { type: 'datetime-local', required: true });
    const until = h('input', { type: 'datetime-local', required: true });
    const hold = h('select', {}, h('option', { value: '' }, 'Everything in the window'),
      holds.map((x) => h('option', { value: x.id }, `Hold: ${x.name}`)));
    const files = h('input', { type: 'checkbox' });
    const form = h('form', { 'aria-label': 'Start an export', class: 'filters' },
      ...field('export-format', 'Format', format), ...field('export-from', 'From', from),
      ...field('export-until', 'Until', until), ...field('export-hold', 'Scope', hold),
      h('span', {}, files, h('label', { for: 'export-files', class: 'inline' }, 'Include attachment files')),
      h('button', { type: 'submit', class: 'primary' }, 'Start export'));
    files.id = 'export-files';
    form.addEventListener('submit', (e) => {
      e.preventDefault();
      const body = { format: format.value, from: instant(from.value), until: instant(until.value), include_files: files.checked };
      if (hold.value) body.hold_id = hold.value;
      this.act(api('POST', '/api/v1/compliance/exports', body), () => watch());
    });
    const watch = async () => {
      clearInterval(this.poll);
      if (await load()) {
        this.poll = setInterval(async () => {
          try { if (!(await load())) clearInterval(this.poll); } catch (err) { clearInterval(this.poll); this.app.showError(err); }
        }, 1500);
      }
    };
    replace(this.body, h('h2', {}, 'Start an export'), form, list);
    await watch();
  }
}
