// The admin console, shown by role: users (admins), the audit log with its verification
// status (auditors), retention previews, legal holds and exports (compliance officers).
// Every action goes through the same API as the command line; the server checks roles,
// this page only hides what the account cannot use.

import { api, describe, errorFrom } from './api.js';
import { h, replace, formatTime } from './dom.js';

const ROLES = ['admin', 'compliance_officer', 'auditor'];

/** The console's sections the account may open, in order. */
export function sectionsFor(me) {
  const has = (role) => me.roles.includes(role);
  return [
    has('admin') && { id: 'users', label: 'Users' },
    has('admin') && { id: 'policy', label: 'Messaging policy' },
    has('admin') && { id: 'groups', label: 'Security groups' },
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
      flag('forwarding_allowed', 'Messages may be forwarded'),
      flag('read_receipts_forced', 'Read receipts are always sent'),
      flag('presence_enabled', 'Presence is shown'),
      flag('link_previews_allowed', 'Link previews are shown'),
      count('session_lifetime_minutes', 'Longest session (minutes)'),
      count('session_idle_minutes', 'Session idle timeout (minutes)'),
      count('lockout_threshold', 'Failed logins before an account is locked'),
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

  // ---- security groups ----------------------------------------------------------------

  async groups(openId) {
    const { groups } = await api('GET', '/api/v1/admin/security-groups');
    const summary = (o) => {
      const parts = [];
      if (o.expiration_max) parts.push(`timer ≤ ${o.expiration_max} s`);
      if (o.burn_on_read_allowed === false) parts.push('no burn-on-read');
      if (o.files_enabled === false) parts.push('no files');
      if (o.file_download_enabled === false) parts.push('no downloads');
      if (o.max_room_size) parts.push(`rooms ≤ ${o.max_room_size} members`);
      if (o.may_create_rooms === false) parts.push('no new rooms');
      if (o.forwarding_allowed === false) parts.push('no forwarding');
      if (o.barriers.length) {
        parts.push(`barrier with ${o.barriers.map((id) => (groups.find((g) => g.id === id) || { name: id }).name).join(', ')}`);
      }
      return parts.join('; ') || 'inherits the org policy';
    };
    const name = h('input', { required: true, maxlength: '100' });
    const precedence = h('input', { type: 'number', min: '0', max: '1000000', value: '100', required: true });
    const create = h('form', { 'aria-label': 'New security group', class: 'filters' },
      ...field('group-name', 'Name', name), ...field('group-precedence', 'Precedence (lower wins)', precedence),
      h('button', { type: 'submit', class: 'primary' }, 'Create group'));
    create.addEventListener('submit', (e) => {
      e.preventDefault();
      this.act(api('POST', '/api/v1/admin/security-groups', { name: name.value, precedence: Number(precedence.value) }),
        (g) => this.groups(g.group ? g.group.id : g.id));
    });
    const detail = h('section', { id: 'group-detail', 'aria-live': 'polite' });
    replace(this.body,
      table('Security groups (precedence order)', ['Group', 'Precedence', 'Members', 'Policy', ''], groups.map((g) => h('tr', { dataset: { group: g.name } },
        h('td', {}, g.name, g.is_default ? ' (default)' : ''), h('td', {}, String(g.precedence)),
        h('td', {}, String(g.member_count)), h('td', {}, summary(g.overrides)),
        h('td', {}, h('button', { type: 'button', 'aria-label': `Manage ${g.name}`, onclick: () => this.act(this.group(detail, g.id, groups)) }, 'Manage'))))),
      h('h2', {}, 'New group'), create, detail);
    if (openId) await this.group(detail, openId, groups);
  }

  async group(detail, id, groups) {
    const { group, member_ids: memberIds } = await api('GET', `/api/v1/admin/security-groups/${id}`);
    const members = await Promise.all(memberIds.map((m) => api('GET', `/api/v1/admin/users/${m}`).catch(() => ({ id: m, username: m, display_name: m }))));
    const o = group.overrides;
    const who = h('input', { placeholder: 'username' });
    const addForm = h('form', { 'aria-label': `Add a member to ${group.name}`, class: 'filters' },
      ...field('group-add-member', 'Add member (username)', who), h('button', { type: 'submit' }, 'Add member'));
    addForm.addEventListener('submit', async (e) => {
      e.preventDefault();
      try {
        const { users } = await api('GET', `/api/v1/admin/users?q=${encodeURIComponent(who.value.trim())}&limit=100`);
        const user = users.find((u) => u.username === who.value.trim().toLowerCase());
        if (!user) throw new Error(`No account is named ${who.value.trim()}.`);
        await api('PUT', `/api/v1/admin/security-groups/${id}/members/${user.id}`);
        this.app.clearError();
        await this.groups(id);
      } catch (err) { this.app.showError(err); }
    });
    const tri = (value) => (value === true ? 'yes' : value === false ? 'no' : '');
    const triSelect = (value) => h('select', {}, [['', 'Inherit'], ['yes', 'Allowed'], ['no', 'Not allowed']]
      .map(([v, label]) => h('option', { value: v, selected: tri(value) === v }, label)));
    // Every override a group may set; empty or "Inherit" leaves the level above in force.
    const overrides = [
      ['expiration_max', 'Longest message timer', 'seconds'],
      ['expiration_default', 'Default message timer', 'seconds'],
      ['burn_on_read_allowed', 'Burn-on-read'],
      ['burn_on_read_max', 'Longest burn-on-read timer', 'seconds'],
      ['burn_on_read_default', 'Default burn-on-read timer', 'seconds'],
      ['files_enabled', 'Files'],
      ['file_download_enabled', 'File downloads'],
      ['file_max_bytes', 'Largest file', 'bytes'],
      ['may_create_rooms', 'Creating rooms'],
      ['max_room_size', 'Most members in a room', 'members'],
      ['forwarding_allowed', 'Forwarding'],
      ['read_receipts_forced', 'Read receipts always sent'],
      ['presence_enabled', 'Presence'],
      ['link_previews_allowed', 'Link previews'],
      ['session_lifetime_minutes', 'Longest session', 'minutes'],
      ['session_idle_minutes', 'Session idle timeout', 'minutes'],
      ['lockout_threshold', 'Failed logins before lockout', 'attempts'],
    ].map(([key, label, unit]) => {
      const kind = unit ? 'number' : 'flag';
      const input = unit
        ? h('input', { type: 'number', min: '1', value: o[key] ?? '' })
        : triSelect(o[key]);
      const id = `group-${key.replaceAll('_', '-')}`;
      const text = unit ? `${label} (${unit}; empty: inherit)` : label;
      return { key, kind, input, parts: field(id, text, input) };
    });
    const barriers = groups.filter((g) => g.id !== id).map((g) => {
      const box = h('input', { type: 'checkbox', id: `barrier-${g.id}`, checked: o.barriers.includes(g.id), value: g.id });
      return h('span', { class: 'check' }, box, h('label', { for: box.id, class: 'inline' }, `No contact with ${g.name}`));
    });
    const policyForm = h('form', { 'aria-label': `Policy of ${group.name}` },
      ...overrides.flatMap((f) => f.parts),
      h('fieldset', {}, h('legend', {}, 'Information barriers'), barriers),
      h('button', { type: 'submit', class: 'primary' }, 'Save group policy'));
    const fromTri = (v) => (v === 'yes' ? true : v === 'no' ? false : null);
    policyForm.addEventListener('submit', (e) => {
      e.preventDefault();
      const next = {
        ...o,
        barriers: barriers.map((b) => b.querySelector('input')).filter((b) => b.checked).map((b) => b.value),
      };
      for (const f of overrides) {
        if (f.kind === 'flag') next[f.key] = fromTri(f.input.value);
        else next[f.key] = f.input.value === '' ? null : Number(f.input.value);
      }
      this.act(api('PUT', `/api/v1/admin/security-groups/${id}/policy`, next), () => this.groups(id));
    });
    const rename = h('input', { value: group.name, maxlength: '100' });
    const order = h('input', { type: 'number', min: '0', max: '1000000', value: String(group.precedence) });
    const editForm = h('form', { 'aria-label': `Rename ${group.name}`, class: 'filters' },
      ...field('group-rename', 'Name', rename), ...field('group-order', 'Precedence', order),
      h('button', { type: 'submit' }, 'Save name and precedence'),
      h('button', {
        type: 'button', class: 'danger', 'aria-label': `Delete ${group.name}`,
        onclick: () => {
          if (window.confirm(`Delete the group "${group.name}"? Its members fall back to the next group.`)) {
            this.act(api('DELETE', `/api/v1/admin/security-groups/${id}`), () => this.groups());
          }
        },
      }, 'Delete group'));
    editForm.addEventListener('submit', (e) => {
      e.preventDefault();
      this.act(api('PATCH', `/api/v1/admin/security-groups/${id}`, { name: rename.value, precedence: Number(order.value) }), () => this.groups(id));
    });
    replace(detail, h('h2', { id: 'group-title' }, `Group: ${group.name}`),
      group.is_default ? null : editForm,
      h('ul', { 'aria-label': `Members of ${group.name}` }, members.map((m) => h('li', {}, `${m.display_name} (@${m.username}) `,
        group.is_default ? null : h('button', {
          type: 'button', class: 'link danger', 'aria-label': `Remove ${m.username} from ${group.name}`,
          onclick: () => this.act(api('DELETE', `/api/v1/admin/security-groups/${id}/members/${m.id}`), () => this.groups(id)),
        }, 'Remove')))),
      group.is_default ? h('p', { class: 'hint' }, 'Everyone in no other group is in this one.') : addForm,
      h('h3', {}, 'Policy (only tightens the org policy)'), policyForm);
  }

  // ---- directory ----------------------------------------------------------------------

  async directory() {
    const status = await api('GET', '/api/v1/admin/directory/sync');
    if (!status.configured) {
      replace(this.body, h('p', { class: 'empty' }, 'No directory is configured ([identity.ldap] in the server\'s configuration).'));
      return;
    }
    const runsOf = (st) => [
      h('h2', {}, 'Latest runs'),
      h('p', { class: 'hint' }, st.interval_minutes
        ? `Scheduled every ${st.interval_minutes} minutes, on one node at a time.`
        : 'Not scheduled: runs only when started here or with `conclave ldap sync`.'),
      st.runs.length
        ? table('Latest directory sync runs', ['When', 'Started by', 'Kind', 'Result', 'Created', 'Updated', 'Deprovisioned', 'Skipped'],
          st.runs.map((r) => h('tr', {}, h('td', {}, h('time', { datetime: r.at }, formatTime(r.at))),
            [r.started_by, r.report.dry_run ? 'dry run' : 'sync', r.outcome === 'success' ? 'succeeded' : `failed: ${r.error || 'unknown error'}`,
              r.report.created, r.report.updated, r.report.deprovisioned, r.report.skipped].map((v) => h('td', {}, String(v))))))
        : h('p', { class: 'empty' }, 'No run yet.')];
    const history = h('div', { id: 'sync-history' }, runsOf(status));
    const refresh = () => api('GET', '/api/v1/admin/directory/sync')
      .then((st) => replace(history, runsOf(st))).catch((err) => this.app.showError(err));
    const out = h('div', { id: 'sync-report', 'aria-live': 'polite' });
    const run = (dryRun) => this.act(api('POST', '/api/v1/admin/directory/sync', { dry_run: dryRun }), (r) => replace(out,
      h('p', { class: 'ok-text' }, dryRun ? 'Dry run: nothing was changed.' : 'Synchronised.'),
      table('Directory sync report', ['Entries', 'Created', 'Updated', 'Reactivated', 'Deprovisioned', 'Skipped', 'Took'], [h('tr', {},
        [r.entries, r.created, r.updated, r.reactivated, r.deprovisioned, r.skipped, `${r.duration_ms} ms`].map((v) => h('td', {}, String(v))))]),
      r.deprovisioning_skipped ? h('p', {}, `Deprovisioning skipped: ${r.deprovisioning_skipped}`) : null,
      r.problems.length ? h('ul', { 'aria-label': 'Problems' }, r.problems.map((p) => h('li', {}, p))) : null)).then(refresh);
    replace(this.body,
      h('p', { class: 'hint' }, 'Reads the LDAP directory and brings accounts, roles and directory security groups in step. A dry run reports what would change.'),
      h('button', { type: 'button', onclick: () => run(true) }, 'Dry run'), ' ',
      h('button', { type: 'button', class: 'primary', onclick: () => run(false) }, 'Synchronise now'),
      out, history);
  }

  // ---- audit log ----------------------------------------------------------------------

  async audit() {
    const status = h('p', { id: 'chain-status', role: 'status' }, 'Verifying the chain…');
    const action = h('input', { placeholder: 'e.g. user.suspend' });
    const actor = h('input', { placeholder: 'user id' });
    const from = h('input', { type: 'datetime-local' });
    const until = h('input', { type: 'datetime-local' });
    const results = h('div', { id: 'audit-results' });
    const downloads = h('p', { class: 'downloads' },
      h('a', { dataset: { format: 'csv' }, download: 'audit.csv' }), ' ',
      h('a', { dataset: { format: 'jsonl' }, download: 'audit.jsonl' }),
      h('span', { class: 'hint' }, ' (the filtered events, every page)'));
    let after = null;
    const load = async (more) => {
      const params = new URLSearchParams({ limit: '50' });
      if (action.value.trim()) params.set('action', action.value.trim());
      if (actor.value.trim()) params.set('actor_id', actor.value.trim());
      if (from.value) params.set('from', instant(from.value));
      if (until.value) params.set('until', instant(until.value));
      if (more && after) params.set('after', String(after));
      const page = await api('GET', `/api/v1/audit/events?${params}`);
      const exportParams = new URLSearchParams([...params].filter(([k]) => !['limit', 'after'].includes(k)));
      for (const [format, label] of [['csv', 'Download CSV'], ['jsonl', 'Download JSONL']]) {
        exportParams.set('format', format);
        const link = downloads.querySelector(`[data-format="${format}"]`);
        link.href = `/api/v1/audit/export?${exportParams}`;
        link.textContent = label;
      }
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
    replace(this.body, status, form, downloads, results);
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

  /**
   * An export's files, and its verification in the browser: the manifest's Ed25519
   * signature (WebCrypto) and every file's SHA-256 against the manifest. The key is the
   * one the manifest names: compare its id with the server's (`conclave export verify`
   * checks against a key you trust).
   */
  async bundle(panel, id) {
    const base = `/api/v1/compliance/exports/${id}/files`;
    const fetchBytes = async (path) => {
      const response = await fetch(`${base}/${path}`, { credentials: 'same-origin', cache: 'no-store' });
      if (!response.ok) throw await errorFrom(response);
      return new Uint8Array(await response.arrayBuffer());
    };
    const manifestBytes = await fetchBytes('manifest.json');
    const manifest = JSON.parse(new TextDecoder().decode(manifestBytes));
    const status = h('p', { id: 'export-verification', role: 'status' });
    const verify = async () => {
      status.textContent = 'Verifying…';
      try {
        const signature = Uint8Array.from(atob(new TextDecoder().decode(await fetchBytes('manifest.sig')).trim()), (c) => c.charCodeAt(0));
        const key = await crypto.subtle.importKey('raw', Uint8Array.from(atob(manifest.signing_key), (c) => c.charCodeAt(0)), { name: 'Ed25519' }, false, ['verify']);
        const label = new TextEncoder().encode('conclave-export-manifest-v1');
        const message = new Uint8Array(label.length + manifestBytes.length);
        message.set(label); message.set(manifestBytes, label.length);
        const signed = await crypto.subtle.verify({ name: 'Ed25519' }, key, signature, message);
        const bad = [];
        for (const [path, expected] of Object.entries(manifest.files)) {
          const digest = new Uint8Array(await crypto.subtle.digest('SHA-256', await fetchBytes(path)));
          const hex = [...digest].map((b) => b.toString(16).padStart(2, '0')).join('');
          if (hex !== expected.sha256) bad.push(path);
        }
        const count = Object.keys(manifest.files).length;
        status.className = signed && !bad.length ? 'ok-text' : 'error-text';
        status.textContent = signed && !bad.length
          ? `Intact: all ${count} files match their SHA-256 and the manifest's signature is valid for key ${manifest.signing_key_id}, the key the manifest names. Compare that id with your server's signing key (or run \`conclave export verify\` with a key you trust) to know who signed it.`
          : `NOT verified: ${signed ? '' : 'the signature is invalid. '}${bad.length ? `Files differing: ${bad.join(', ')}.` : ''}`;
      } catch (err) {
        status.className = 'error-text';
        status.textContent = `Verification failed: ${describe(err)}`;
      }
    };
    replace(panel, h('h2', {}, `Export ${id}`),
      h('p', {}, `${manifest.events} events from ${manifest.rooms_exported} rooms, format ${manifest.format}, signed by key ${manifest.signing_key_id}.`),
      h('ul', { 'aria-label': 'Files in the export' }, Object.entries(manifest.files).map(([path, f]) => h('li', {},
        h('a', { href: `${base}/${path.split('/').map(encodeURIComponent).join('/')}`, download: path.split('/').pop() }, path),
        ` (${f.bytes} bytes, SHA-256 ${f.sha256.slice(0, 16)}…)`))),
      h('button', { type: 'button', class: 'primary', onclick: verify }, 'Verify signature and files'), status);
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
          h('a', { href: `/api/v1/compliance/exports/${x.id}/files/manifest.sig`, download: 'manifest.sig' }, 'manifest.sig'), ' ',
          h('button', { type: 'button', 'aria-label': `Files and verification of export ${x.id}`, onclick: () => this.act(this.bundle(files, x.id)) }, 'Files and verify'),
        ] : '')))));
      return exports.some((x) => x.status === 'pending' || x.status === 'running');
    };
    const { holds } = await api('GET', '/api/v1/compliance/legal-holds?active=true');
    const format = h('select', {}, ['jsonl', 'csv', 'eml', 'xml'].map((f) => h('option', { value: f }, f)));
    const from = h('input', { type: 'datetime-local', required: true });
    const until = h('input', { type: 'datetime-local', required: true });
    const hold = h('select', {}, h('option', { value: '' }, 'Everything in the window'),
      holds.map((x) => h('option', { value: x.id }, `Hold: ${x.name}`)));
    const withFiles = h('input', { type: 'checkbox' });
    const form = h('form', { 'aria-label': 'Start an export', class: 'filters' },
      ...field('export-format', 'Format', format), ...field('export-from', 'From', from),
      ...field('export-until', 'Until', until), ...field('export-hold', 'Scope', hold),
      h('span', {}, withFiles, h('label', { for: 'export-files', class: 'inline' }, 'Include attachment files')),
      h('button', { type: 'submit', class: 'primary' }, 'Start export'));
    withFiles.id = 'export-files';
    form.addEventListener('submit', (e) => {
      e.preventDefault();
      const body = { format: format.value, from: instant(from.value), until: instant(until.value), include_files: withFiles.checked };
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
    const files = h('section', { id: 'export-files-panel', 'aria-live': 'polite' });
    replace(this.body, h('h2', {}, 'Start an export'), form, list, files);
    await watch();
  }
}
