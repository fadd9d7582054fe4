// The employee client: conversations with unread counts, a conversation's messages in
// real time (send, reply, react, edit, delete, read receipts, attachments), new direct
// conversations and rooms, members, and a timer control limited to the effective policy.
//
// Message content lives only in this module's memory and the page's DOM: nothing is
// written to localStorage, sessionStorage, IndexedDB or the Cache API, and there is no
// service worker. An ephemeral message is removed from both at its deadline (or when the
// server announces `message.expired`, whichever comes first), without a reload.

import { api, upload, describe } from './api.js';
import { h, replace, formatDuration, formatTime, modal } from './dom.js';
import { Realtime } from './realtime.js';
import { timerChoices, timerFields } from './timers.js';

const QUICK_REACTIONS = ['👍', '❤️', '😂', '🎉', '👀'];
const PAGE = 50;

/** When a message stops being visible to this viewer (ms since the epoch), or null. */
export function deadlineOf(message) {
  const times = [message.visible_until, message.visible_to_me_until]
    .filter(Boolean)
    .map((t) => Date.parse(t));
  return times.length ? Math.min(...times) : null;
}

export class Chat {
  constructor(app, me) {
    this.app = app;
    this.me = me;
    this.rooms = new Map();
    this.order = [];
    this.current = null;
    this.realtime = new Realtime((event, gap) => this.onEvent(event, gap), (state, detail) => this.onConnection(state, detail));
    this.ticker = null;
    this.readTimer = null;
    this.build();
  }

  // ---- layout -------------------------------------------------------------------------

  build() {
    this.roomList = h('ul', { class: 'rooms', id: 'room-list' });
    this.sidebar = h('nav', { class: 'sidebar', 'aria-label': 'Conversations' },
      h('div', { class: 'new' },
        h('button', { type: 'button', id: 'new-direct', onclick: () => this.newDirect() }, 'New message'),
        h('button', { type: 'button', id: 'new-room', onclick: () => this.newRoom() }, 'New room')),
      h('h2', { class: 'visually-hidden', id: 'rooms-heading' }, 'Conversations'),
      this.roomList);
    this.pane = h('section', { class: 'conversation', 'aria-label': 'Conversation', id: 'conversation' },
      h('p', { class: 'empty' }, 'Choose a conversation, or start one.'));
    this.root = h('div', { class: 'chat' }, this.sidebar, this.pane);
  }

  async start(main) {
    replace(main, this.root);
    await this.loadRooms();
    for (const room of this.rooms.values()) this.realtime.position(room.id, room.last_event_seq);
    this.realtime.start();
    this.ticker = setInterval(() => this.tick(), 250);
    this.visibility = () => { if (!document.hidden) this.scheduleRead(); };
    document.addEventListener('visibilitychange', this.visibility);
  }

  stop() {
    this.realtime.stop();
    clearInterval(this.ticker);
    clearTimeout(this.readTimer);
    document.removeEventListener('visibilitychange', this.visibility);
    this.current = null;
    this.rooms.clear();
  }

  onConnection(state, detail) {
    const text = { connecting: 'Connecting…', online: 'Connected', offline: 'Offline: reconnecting…' }[state];
    this.app.setConnection(text);
    if (state === 'online') {
      // After a drop: counts may have moved, and rooms may have appeared.
      this.loadRooms().catch((err) => this.app.showError(err));
    }
    if (state === 'offline') {
      // The server closes the socket when the session ends (logout, revocation,
      // suspension), and a refused handshake looks like a drop: ask whether the session
      // is still there (a 401 returns to sign-in).
      api('GET', '/api/v1/me').catch(() => {});
    }
  }

  async loadRooms() {
    const { rooms } = await api('GET', '/api/v1/rooms');
    this.rooms = new Map(rooms.map((r) => [r.id, r]));
    this.order = rooms.map((r) => r.id);
    for (const room of rooms) this.realtime.position(room.id, room.last_event_seq);
    if (this.current && this.rooms.has(this.current.id)) {
      this.rooms.get(this.current.id).unread_count = 0;
    }
    this.renderRooms();
  }

  roomName(room) {
    if (room.name) return room.name;
    return room.kind === 'direct' ? 'Direct conversation' : 'Untitled room';
  }

  renderRooms() {
    const items = this.order.map((id) => this.rooms.get(id)).filter(Boolean).map((room) => {
      const unread = room.unread_count > 0
        ? h('span', { class: 'unread', 'aria-label': `${room.unread_count} unread` }, String(room.unread_count))
        : null;
      return h('li', {},
        h('a', {
          href: `#/room/${room.id}`,
          'aria-current': this.current && this.current.id === room.id ? 'page' : null,
          dataset: { roomId: room.id },
        },
        h('span', {}, h('span', { class: 'room-name' }, this.roomName(room)), ' ',
          h('span', { class: 'kind' }, room.kind === 'direct' ? '(direct)' : `(${room.member_count} members)`)),
        unread));
    });
    if (!items.length) items.push(h('li', { class: 'hint' }, h('p', {}, 'No conversations yet.')));
    replace(this.roomList, items);
  }

  // ---- routing ------------------------------------------------------------------------

  async route(hash) {
    const match = /^#\/room\/([0-9a-f-]{36})$/.exec(hash);
    if (!match) {
      this.closeRoom();
      return;
    }
    if (this.current && this.current.id === match[1]) return;
    await this.openRoom(match[1]);
  }

  closeRoom() {
    this.current = null;
    this.root.classList.remove('room-open');
    replace(this.pane, h('p', { class: 'empty' }, 'Choose a conversation, or start one.'));
    this.renderRooms();
  }

  async openRoom(id) {
    const current = {
      id, loading: true, pending: [], messages: new Map(), elements: new Map(),
      members: new Map(), detail: null, policy: null, replyTo: null, editing: null,
      attachment: null, sendKey: null, oldest: null,
    };
    this.current = current;
    this.root.classList.add('room-open');
    replace(this.pane, h('p', { class: 'loading' }, 'Loading conversation…'));
    try {
      const [detail, list, policy] = await Promise.all([
        api('GET', `/api/v1/rooms/${id}`),
        api('GET', `/api/v1/rooms/${id}/messages?limit=${PAGE}`),
        api('GET', `/api/v1/rooms/${id}/policy`),
      ]);
      if (this.current !== current) return;
      current.detail = detail;
      current.members = new Map(detail.members.map((m) => [m.user_id, m]));
      current.policy = policy.effective;
      this.rooms.set(id, { ...(this.rooms.get(id) || {}), ...detail.room });
      if (!this.order.includes(id)) this.order.unshift(id);
      for (const m of list.messages) current.messages.set(m.id, m);
      current.oldest = list.messages.length ? list.messages[0].seq : null;
      current.hasMore = list.messages.length === PAGE;
      current.loading = false;
      this.renderRoom();
      for (const event of current.pending) this.applyToCurrent(event);
      current.pending = [];
      this.scheduleRead();
    } catch (err) {
      if (this.current !== current) return;
      this.current = null;
      replace(this.pane, h('p', { class: 'empty error-text' }, describe(err)));
      this.app.showError(err);
    }
    this.renderRooms();
  }

  renderRoom() {
    const c = this.current;
    const room = this.rooms.get(c.id);
    const title = this.roomName(room);
    this.membersPanel = h('div', { class: 'members', id: 'members-panel', hidden: true });
    // Not a live region: items are redrawn for reactions and receipts, which would be read
    // out again; new messages from others are announced instead (applyToCurrent).
    this.messageList = h('ol', { class: 'messages', id: 'messages', 'aria-label': `Messages in ${title}` });
    c.elements = new Map();
    const header = h('header', {},
      h('button', { type: 'button', class: 'back', onclick: () => { location.hash = '#/'; } }, '← Conversations'),
      h('h2', { id: 'room-title' }, title),
      room.topic ? h('span', { class: 'hint' }, room.topic) : null,
      h('button', {
        type: 'button', id: 'members-toggle', 'aria-expanded': 'false', 'aria-controls': 'members-panel',
        onclick: (e) => this.toggleMembers(e.currentTarget),
      }, `Members (${c.members.size})`),
      room.kind !== 'direct' && ['owner', 'moderator'].includes(room.my_role)
        ? h('button', { type: 'button', id: 'room-settings', onclick: () => this.settings() }, 'Settings') : null,
      room.kind !== 'direct' ? h('button', { type: 'button', class: 'danger', onclick: () => this.leave() }, 'Leave') : null);
    const older = c.hasMore
      ? h('button', { type: 'button', class: 'link', id: 'load-older', onclick: () => this.loadOlder() }, 'Load older messages')
      : null;
    this.composer = this.buildComposer(room);
    replace(this.pane, header, this.membersPanel, older, this.messageList, this.composer);
    const sorted = [...c.messages.values()].sort((a, b) => a.seq - b.seq);
    for (const m of sorted) this.placeMessage(m);
    this.renderMembers();
    this.messageList.scrollTop = this.messageList.scrollHeight;
    const input = this.pane.querySelector('#compose-text');
    if (input) input.focus();
  }

  toggleMembers(button) {
    const open = this.membersPanel.hidden;
    this.membersPanel.hidden = !open;
    button.setAttribute('aria-expanded', String(open));
  }

  renderMembers() {
    const c = this.current;
    if (!c || !this.membersPanel) return;
    const room = this.rooms.get(c.id);
    const canAdd = room.kind !== 'direct' && ['owner', 'moderator'].includes(room.my_role);
    const owner = room.kind !== 'direct' && room.my_role === 'owner';
    const memberLine = (m) => {
      const parts = [`${m.display_name} (@${m.username})`];
      if (owner && m.user_id !== this.me.id) {
        const select = h('select', { 'aria-label': `Role of ${m.display_name}` },
          ['member', 'moderator', 'owner'].map((r) => h('option', { value: r, selected: m.role === r }, r)));
        select.addEventListener('change', () => this.setRole(m.user_id, select.value));
        parts.push(' ', select);
      } else if (m.role !== 'member') {
        parts.push(`, ${m.role}`);
      }
      if (canAdd && m.user_id !== this.me.id && (owner || m.role === 'member')) {
        parts.push(' ', h('button', {
          type: 'button', class: 'link danger', 'aria-label': `Remove ${m.display_name} from the room`,
          onclick: () => this.removeMember(m),
        }, 'Remove'));
      }
      return h('li', {}, parts);
    };
    replace(this.membersPanel,
      h('ul', { 'aria-label': 'Members' }, [...c.members.values()].map(memberLine)),
      canAdd ? h('button', { type: 'button', onclick: () => this.addMember() }, 'Add member') : null);
    const toggle = this.pane.querySelector('#members-toggle');
    if (toggle) toggle.textContent = `Members (${c.members.size})`;
  }

  async loadOlder() {
    const c = this.current;
    if (!c || c.oldest === null) return;
    try {
      const list = await api('GET', `/api/v1/rooms/${c.id}/messages?before=${c.oldest}&limit=${PAGE}`);
      if (this.current !== c) return;
      for (const m of list.messages) { c.messages.set(m.id, m); this.placeMessage(m); }
      if (list.messages.length) c.oldest = list.messages[0].seq;
      if (list.messages.length < PAGE) {
        const button = this.pane.querySelector('#load-older');
        if (button) button.remove();
      }
    } catch (err) { this.app.showError(err); }
  }

  /** After a gap: read the room's messages after the newest one held, page by page. */
  async fillGap() {
    const c = this.current;
    if (!c || c.loading) return;
    let after = Math.max(0, ...[...c.messages.values()].map((m) => m.seq));
    try {
      for (;;) {
        const list = await api('GET', `/api/v1/rooms/${c.id}/messages?after=${after}&limit=200`);
        if (this.current !== c) return;
        for (const m of list.messages) this.upsert(m);
        if (list.messages.length < 200) break;
        after = list.messages[list.messages.length - 1].seq;
      }
    } catch (err) { this.app.showError(err); }
  }

  // ---- messages -----------------------------------------------------------------------

  sender(id) {
    if (id === this.me.id) return 'You';
    const m = this.current && this.current.members.get(id);
    return m ? m.display_name : 'Former member';
  }

  upsert(view) {
    const c = this.current;
    const old = c.messages.get(view.id);
    // Realtime events leave out a burn-on-read message's text and attachment; keep what a
    // read showed (until its deadline removes the whole message).
    if (old && view.text == null && old.text != null) {
      view = {
        ...view,
        text: old.text,
        attachment: view.attachment || old.attachment,
        visible_to_me_until: view.visible_to_me_until || old.visible_to_me_until,
      };
    }
    c.messages.set(view.id, view);
    this.placeMessage(view);
  }

  remove(id) {
    const c = this.current;
    c.messages.delete(id);
    const el = c.elements.get(id);
    if (el) {
      const hadFocus = el.contains(document.activeElement);
      el.remove();
      if (hadFocus) this.pane.querySelector('#compose-text').focus();
    }
    c.elements.delete(id);
    if (c.replyTo === id) this.setContext(null);
    if (c.editing === id) this.setContext(null);
    // Replies quote the message: redraw them so its text goes with it.
    for (const other of c.messages.values()) if (other.reply_to_id === id) this.placeMessage(other);
    this.app.announce('A message disappeared.');
  }

  placeMessage(view) {
    const c = this.current;
    const deadline = deadlineOf(view);
    if (deadline !== null && deadline <= Date.now()) {
      if (c.messages.has(view.id)) this.remove(view.id);
      return;
    }
    const el = this.renderMessage(view);
    const existing = c.elements.get(view.id);
    const focusedAction = existing && existing.contains(document.activeElement)
      ? document.activeElement.dataset.action : null;
    if (existing) {
      existing.replaceWith(el);
    } else {
      const after = [...c.elements.entries()]
        .map(([id, node]) => [c.messages.get(id), node])
        .filter(([m]) => m && m.seq > view.seq)
        .sort(([a], [b]) => a.seq - b.seq)[0];
      const stick = this.messageList.scrollHeight - this.messageList.scrollTop - this.messageList.clientHeight < 40;
      if (after) this.messageList.insertBefore(el, after[1]);
      else this.messageList.append(el);
      if (stick) this.messageList.scrollTop = this.messageList.scrollHeight;
    }
    c.elements.set(view.id, el);
    if (focusedAction) {
      const again = el.querySelector(`[data-action="${CSS.escape(focusedAction)}"]`);
      if (again) again.focus();
    }
  }

  renderMessage(m) {
    const c = this.current;
    const mine = m.sender_id === this.me.id;
    const room = this.rooms.get(c.id);
    const moderator = ['owner', 'moderator'].includes(room.my_role);
    const hiddenBurn = m.text == null && m.burn_after_read_seconds;
    const parts = [];
    parts.push(h('div', { class: 'meta' },
      h('span', { class: 'sender' }, this.sender(m.sender_id)),
      h('time', { datetime: m.created_at }, formatTime(m.created_at)),
      m.edited_at ? h('span', {}, '(edited)') : null,
      m.burn_after_read_seconds ? h('span', {}, `Burns ${formatDuration(m.burn_after_read_seconds)} after reading`) : null,
      deadlineOf(m) !== null ? h('span', { class: 'countdown', dataset: { deadline: String(deadlineOf(m)) } }, this.countdownText(deadlineOf(m))) : null));
    if (m.reply_to_id) {
      const target = c.messages.get(m.reply_to_id);
      parts.push(h('div', { class: 'quote' }, target
        ? `Reply to ${this.sender(target.sender_id)}: ${(target.text || '').slice(0, 120)}`
        : 'Reply to a message that is no longer available'));
    }
    if (hiddenBurn) {
      parts.push(h('button', {
        type: 'button', class: 'reveal', dataset: { action: 'reveal' },
        onclick: () => this.reveal(m.id),
      }, `Read message (it burns ${formatDuration(m.burn_after_read_seconds)} after you open it)`));
    } else {
      parts.push(h('div', { class: 'text' }, m.text || ''));
    }
    if (m.attachment) {
      const a = m.attachment;
      // A policy that forbids downloads would only answer 403 to the link: say so instead.
      const downloadable = !(c.policy && c.policy.file_download_enabled === false);
      parts.push(h('div', { class: 'attachment' },
        downloadable
          ? h('a', {
            href: `/api/v1/rooms/${c.id}/attachments/${a.id}`, download: a.name,
            'aria-label': `Download ${a.name}, ${formatBytes(a.size_bytes)}`,
          }, `📎 ${a.name}`)
          : h('span', {}, `📎 ${a.name} (downloads are not allowed by your organisation's policy)`),
        ` (${formatBytes(a.size_bytes)})`));
    }
    if (m.reactions.length) {
      parts.push(h('div', { class: 'reactions', role: 'group', 'aria-label': 'Reactions' },
        m.reactions.map((r) => {
          const reacted = r.user_ids.includes(this.me.id);
          return h('button', {
            type: 'button', 'aria-pressed': String(reacted), dataset: { action: `reaction-${r.emoji}` },
            'aria-label': `${r.emoji} ${r.user_ids.length}, ${reacted ? 'remove your reaction' : 'react'}`,
            onclick: () => this.react(m.id, r.emoji, !reacted),
          }, `${r.emoji} ${r.user_ids.length}`);
        })));
    }
    if (mine) {
      const readers = [...c.members.values()]
        .filter((p) => p.user_id !== this.me.id && p.last_read_seq >= m.seq)
        .map((p) => p.display_name);
      if (readers.length) parts.push(h('div', { class: 'receipt' }, `Read by ${readers.join(', ')}`));
    }
    const actions = [];
    if (!hiddenBurn) {
      actions.push(h('button', { type: 'button', class: 'link', dataset: { action: 'reply' }, onclick: () => this.setContext({ reply: m.id }) }, 'Reply'));
      for (const emoji of QUICK_REACTIONS.slice(0, 3)) {
        const reacted = m.reactions.some((r) => r.emoji === emoji && r.user_ids.includes(this.me.id));
        if (!reacted) {
          actions.push(h('button', {
            type: 'button', class: 'link', dataset: { action: `react-${emoji}` }, 'aria-label': `React with ${emoji}`,
            onclick: () => this.react(m.id, emoji, true),
          }, emoji));
        }
      }
    }
    if (mine && !hiddenBurn) actions.push(h('button', { type: 'button', class: 'link', dataset: { action: 'edit' }, onclick: () => this.setContext({ edit: m.id }) }, 'Edit'));
    if (mine || moderator) actions.push(h('button', { type: 'button', class: 'link danger', dataset: { action: 'delete' }, onclick: () => this.deleteMessage(m.id) }, 'Delete'));
    parts.push(h('div', { class: 'actions' }, actions));
    return h('li', {
      class: `message${mine ? ' mine' : ''}`, dataset: { messageId: m.id, seq: String(m.seq) },
      'aria-label': `${this.sender(m.sender_id)}, ${formatTime(m.created_at)}`,
    }, parts);
  }

  countdownText(deadline) {
    return `Disappears in ${formatDuration((deadline - Date.now()) / 1000)}`;
  }

  /** Every quarter second: countdowns move, and messages past their deadline vanish. */
  tick() {
    const c = this.current;
    if (!c || c.loading) return;
    const now = Date.now();
    for (const [id, message] of [...c.messages]) {
      const deadline = deadlineOf(message);
      if (deadline === null) continue;
      if (deadline <= now) { this.remove(id); continue; }
      const el = c.elements.get(id);
      const counter = el && el.querySelector('.countdown');
      if (counter) {
        const text = this.countdownText(deadline);
        if (counter.textContent !== text) counter.textContent = text;
      }
    }
  }

  async reveal(id) {
    const c = this.current;
    try {
      const view = await api('GET', `/api/v1/rooms/${c.id}/messages/${id}`);
      if (this.current === c) this.upsert(view);
    } catch (err) {
      if (err.status === 404 && this.current === c) this.remove(id);
      else this.app.showError(err);
    }
  }

  async react(id, emoji, present) {
    const c = this.current;
    try {
      await api(present ? 'PUT' : 'DELETE', `/api/v1/rooms/${c.id}/messages/${id}/reactions/${encodeURIComponent(emoji)}`);
    } catch (err) { this.app.showError(err); }
  }

  async deleteMessage(id) {
    const c = this.current;
    if (!window.confirm('Delete this message for everyone?')) return;
    try {
      await api('DELETE', `/api/v1/rooms/${c.id}/messages/${id}`);
      if (this.current === c && c.messages.has(id)) this.remove(id);
    } catch (err) { this.app.showError(err); }
  }

  // ---- composing ----------------------------------------------------------------------

  buildComposer(room) {
    const c = this.current;
    this.context = h('div', { class: 'replying', id: 'compose-context', hidden: true });
    this.progress = h('progress', { max: '1', value: '0', 'aria-label': 'Upload progress' });
    this.uploadLine = h('div', { class: 'upload', id: 'upload-status', hidden: true });
    this.timerSelect = h('select', { id: 'compose-timer', 'aria-label': 'Message timer' });
    this.timerSelect.addEventListener('focus', () => this.refreshPolicy());
    this.timerSelect.addEventListener('mousedown', () => this.refreshPolicy());
    this.fillTimers();
    const text = h('textarea', { id: 'compose-text', rows: '2', placeholder: 'Write a message', 'aria-label': 'Message' });
    text.addEventListener('keydown', (e) => {
      if (e.key === 'Enter' && !e.shiftKey) { e.preventDefault(); form.requestSubmit(); }
      if (e.key === 'Escape') this.setContext(null);
    });
    const file = h('input', { type: 'file', id: 'compose-file', class: 'visually-hidden', tabindex: '-1', 'aria-hidden': 'true' });
    file.addEventListener('change', () => { if (file.files[0]) this.attach(file.files[0]); file.value = ''; });
    const attachButton = h('button', {
      type: 'button', id: 'attach', onclick: () => file.click(),
      disabled: c.policy && !c.policy.files_enabled,
      title: c.policy && !c.policy.files_enabled ? 'Your organisation\'s policy does not allow files' : null,
    }, 'Attach file');
    const readOnly = room.read_only_reason;
    const form = h('form', { 'aria-label': 'Send a message' },
      text, this.timerSelect, attachButton, file,
      h('button', { type: 'submit', class: 'primary', id: 'send' }, 'Send'));
    form.addEventListener('submit', (e) => { e.preventDefault(); this.submit(text); });
    if (readOnly) {
      return h('div', { class: 'composer' }, h('p', { class: 'hint' }, `This conversation is read-only: ${readOnly}`));
    }
    return h('div', { class: 'composer' }, this.context, this.uploadLine, form);
  }

  fillTimers() {
    const c = this.current;
    if (!c || !c.policy || !this.timerSelect) return;
    const previous = this.timerSelect.value;
    const choices = timerChoices(c.policy);
    replace(this.timerSelect, choices.map((choice) => h('option', { value: choice.value }, choice.label)));
    this.timerSelect.value = choices.some((ch) => ch.value === previous) ? previous : '';
  }

  async refreshPolicy() {
    const c = this.current;
    if (!c) return;
    try {
      const policy = await api('GET', `/api/v1/rooms/${c.id}/policy`);
      if (this.current !== c) return;
      c.policy = policy.effective;
      this.fillTimers();
      const attach = this.pane.querySelector('#attach');
      if (attach) attach.disabled = !c.policy.files_enabled;
    } catch (err) { this.app.showError(err); }
  }

  setContext(context) {
    const c = this.current;
    const wasEditing = c.editing;
    c.replyTo = context && context.reply ? context.reply : null;
    c.editing = context && context.edit ? context.edit : null;
    const text = this.pane.querySelector('#compose-text');
    // The edit put the message's text in the box: never leave it there to be sent again
    // as a new (perhaps lasting) message once the edit is cancelled or the message is gone.
    if (wasEditing && !c.editing && text) text.value = '';
    if (!context) {
      this.context.hidden = true;
      replace(this.context);
      if (text) text.focus();
      return;
    }
    const target = c.messages.get(c.replyTo || c.editing);
    const what = c.editing ? 'Editing your message' : `Replying to ${this.sender(target.sender_id)}: ${(target.text || '').slice(0, 80)}`;
    replace(this.context, h('span', {}, what),
      h('button', { type: 'button', class: 'link', onclick: () => this.setContext(null) }, c.editing ? 'Cancel edit' : 'Cancel reply'));
    this.context.hidden = false;
    if (c.editing) text.value = target.text || '';
    text.focus();
  }

  async attach(file) {
    const c = this.current;
    c.attachment = null;
    this.uploadLine.hidden = false;
    this.progress.value = 0;
    const status = h('span', {}, `Uploading ${file.name}…`);
    replace(this.uploadLine, this.progress, status);
    try {
      const view = await upload(`/api/v1/rooms/${c.id}/attachments?name=${encodeURIComponent(file.name)}`, file,
        (fraction) => { this.progress.value = fraction; });
      if (this.current !== c) return;
      c.attachment = view;
      this.progress.value = 1;
      replace(this.uploadLine, this.progress, h('span', {}, `${file.name} is ready to send`),
        h('button', { type: 'button', class: 'link', onclick: () => { c.attachment = null; this.uploadLine.hidden = true; } }, 'Remove'));
    } catch (err) {
      replace(this.uploadLine, h('span', { class: 'error-text' }, `${file.name}: ${describe(err)}`));
      this.app.showError(err);
    }
  }

  async submit(textarea) {
    const c = this.current;
    const text = textarea.value;
    const send = this.pane.querySelector('#send');
    try {
      send.disabled = true;
      if (c.editing) {
        const view = await api('PATCH', `/api/v1/rooms/${c.id}/messages/${c.editing}`, { text });
        if (this.current === c) this.upsert(view);
      } else {
        const body = text.trim() || !c.attachment ? text : c.attachment.name;
        // The same key on a retry after a network failure: the server never duplicates.
        c.sendKey = c.sendKey || crypto.randomUUID();
        const request = {
          text: body, idempotency_key: c.sendKey, ...timerFields(this.timerSelect.value),
        };
        if (c.replyTo) request.reply_to_id = c.replyTo;
        if (c.attachment) request.attachment_id = c.attachment.id;
        const view = await api('POST', `/api/v1/rooms/${c.id}/messages`, request);
        c.sendKey = null;
        if (this.current === c) {
          this.upsert(view);
          c.attachment = null;
          this.uploadLine.hidden = true;
        }
      }
      textarea.value = '';
      this.setContext(null);
      this.app.clearError();
    } catch (err) {
      if (err.code === 'policy_violation') this.refreshPolicy();
      if (err.status && err.status !== 0) this.current.sendKey = null;
      this.app.showError(err);
    } finally {
      send.disabled = false;
    }
  }

  scheduleRead() {
    clearTimeout(this.readTimer);
    this.readTimer = setTimeout(() => this.markRead(), 300);
  }

  async markRead() {
    const c = this.current;
    if (!c || c.loading || document.hidden) return;
    const room = this.rooms.get(c.id);
    const newest = Math.max(0, ...[...c.messages.values()].map((m) => m.seq));
    if (!room || newest <= (room.last_read_seq || 0)) return;
    try {
      const marker = await api('POST', `/api/v1/rooms/${c.id}/read`, { seq: newest });
      room.last_read_seq = marker.last_read_seq;
      room.unread_count = 0;
      this.renderRooms();
    } catch (err) {
      if (err.status !== 404) this.app.showError(err);
    }
  }

  // ---- realtime -----------------------------------------------------------------------

  onEvent(event, gap) {
    const room = this.rooms.get(event.room_id);
    if (!room) {
      // A conversation we were just added to.
      this.loadRooms().catch((err) => this.app.showError(err));
      return;
    }
    const data = event.data || {};
    if (event.type === 'message.created' && data.message && !data.message.expired) {
      room.last_message_seq = Math.max(room.last_message_seq || 0, data.message.seq);
      const open = this.current && this.current.id === event.room_id && !document.hidden;
      if (data.message.sender_id !== this.me.id && !open) room.unread_count = (room.unread_count || 0) + 1;
      this.order = [event.room_id, ...this.order.filter((id) => id !== event.room_id)];
      this.renderRooms();
    }
    if (event.type === 'room.updated') {
      room.name = data.name;
      room.topic = data.topic;
      this.renderRooms();
      const title = this.current && this.current.id === event.room_id && this.pane.querySelector('#room-title');
      if (title) title.textContent = this.roomName(room);
    }
    if (event.type === 'member.left' && data.user_id === this.me.id) {
      this.rooms.delete(event.room_id);
      this.order = this.order.filter((id) => id !== event.room_id);
      if (this.current && this.current.id === event.room_id) location.hash = '#/';
      this.renderRooms();
      return;
    }
    if (!this.current || this.current.id !== event.room_id) return;
    if (this.current.loading) {
      this.current.pending.push(event);
      return;
    }
    this.applyToCurrent(event);
    if (gap) this.fillGap();
  }

  applyToCurrent(event) {
    const c = this.current;
    const data = event.data || {};
    if (event.type === 'message.expired') {
      // For everyone (`user_id` null) or for one member: a burn for someone else leaves
      // this copy as it is (the sender's goes with a last event naming the sender).
      const id = data.message && data.message.id;
      const forMe = data.user_id == null || data.user_id === this.me.id;
      if (id && forMe && c.messages.has(id)) this.remove(id);
    } else if (data.message) {
      if (data.message.expired) {
        if (c.messages.has(data.message.id)) this.remove(data.message.id);
      } else {
        this.upsert(data.message);
        if (event.type === 'message.created') {
          this.scheduleRead();
          if (data.message.sender_id !== this.me.id) this.app.announce(`New message from ${this.sender(data.message.sender_id)}.`);
        }
      }
    }
    if (event.type === 'read.updated') {
      const member = c.members.get(data.user_id);
      if (member) {
        member.last_read_seq = data.last_read_seq;
        for (const m of c.messages.values()) if (m.sender_id === this.me.id) this.placeMessage(m);
      }
    }
    if (event.type.startsWith('member.')) this.reloadMembers();
  }

  async reloadMembers() {
    const c = this.current;
    try {
      const detail = await api('GET', `/api/v1/rooms/${c.id}`);
      if (this.current !== c) return;
      c.members = new Map(detail.members.map((m) => [m.user_id, m]));
      const before = this.rooms.get(c.id);
      this.rooms.set(c.id, { ...before, ...detail.room, unread_count: 0 });
      if (before && before.my_role !== detail.room.my_role) {
        // Our own role changed: what we may do (settings, removing members) changed too.
        const input = this.pane.querySelector('#compose-text');
        const draft = input ? input.value : '';
        const open = this.membersPanel && !this.membersPanel.hidden;
        this.renderRoom();
        const again = this.pane.querySelector('#compose-text');
        if (again) again.value = draft;
        if (open) this.toggleMembers(this.pane.querySelector('#members-toggle'));
      }
      this.renderMembers();
    } catch (err) { this.app.showError(err); }
  }

  // ---- new conversations --------------------------------------------------------------

  /** A search box over the people directory; `pick(person)` is called on a choice. */
  peoplePicker(pick, verb) {
    const results = h('ul', { 'aria-label': 'People found', 'aria-live': 'polite' });
    const input = h('input', { type: 'search', id: 'people-search', autocomplete: 'off', 'aria-describedby': 'people-hint' });
    let timer = null;
    input.addEventListener('input', () => {
      clearTimeout(timer);
      timer = setTimeout(async () => {
        const q = input.value.trim();
        if (!q) { replace(results); return; }
        try {
          const { people } = await api('GET', `/api/v1/users?q=${encodeURIComponent(q)}&limit=10`);
          const others = people.filter((p) => p.id !== this.me.id);
          replace(results, others.length ? others.map((p) => h('li', {},
            h('span', {}, `${p.display_name} (@${p.username})`),
            h('button', { type: 'button', 'aria-label': `${verb} ${p.display_name}`, onclick: () => pick(p) }, verb)))
            : [h('li', {}, 'Nobody found.')]);
        } catch (err) {
          replace(results, h('li', { class: 'error-text' }, describe(err)));
        }
      }, 200);
    });
    return [h('label', { for: 'people-search' }, 'Find a person'), input,
      h('p', { class: 'hint', id: 'people-hint' }, 'Type part of a name or username.'), results];
  }

  newDirect() {
    const close = modal('New direct message', () => [
      ...this.peoplePicker(async (person) => {
        try {
          const detail = await api('POST', '/api/v1/direct', { user_id: person.id });
          close();
          await this.loadRooms();
          location.hash = `#/room/${detail.room.id}`;
        } catch (err) { this.app.showError(err); }
      }, 'Message'),
      h('div', { class: 'buttons' }, h('button', { type: 'button', onclick: () => close() }, 'Cancel')),
    ]);
  }

  newRoom() {
    const chosen = new Map();
    const chips = h('ul', { 'aria-label': 'Members to add' });
    const renderChips = () => replace(chips, [...chosen.values()].map((p) => h('li', {}, p.display_name,
      h('button', { type: 'button', class: 'link', 'aria-label': `Remove ${p.display_name}`, onclick: () => { chosen.delete(p.id); renderChips(); } }, 'Remove'))));
    const name = h('input', { id: 'room-name', required: true, maxlength: '100' });
    const topic = h('input', { id: 'room-topic', maxlength: '500' });
    const problem = h('p', { class: 'error-text', role: 'alert' });
    const close = modal('New room', () => {
      const form = h('form', {},
        h('label', { for: 'room-name' }, 'Name'), name,
        h('label', { for: 'room-topic' }, 'Topic (optional)'), topic,
        ...this.peoplePicker((p) => { chosen.set(p.id, p); renderChips(); }, 'Add'),
        chips, problem,
        h('div', { class: 'buttons' },
          h('button', { type: 'button', onclick: () => close() }, 'Cancel'),
          h('button', { type: 'submit', class: 'primary' }, 'Create room')));
      form.addEventListener('submit', async (e) => {
        e.preventDefault();
        try {
          const detail = await api('POST', '/api/v1/rooms', {
            name: name.value, topic: topic.value || null, member_ids: [...chosen.keys()],
          });
          close();
          await this.loadRooms();
          location.hash = `#/room/${detail.room.id}`;
        } catch (err) { problem.textContent = describe(err); }
      });
      return form;
    });
  }

  addMember() {
    const c = this.current;
    const close = modal('Add a member', () => [
      ...this.peoplePicker(async (person) => {
        try {
          await api('POST', `/api/v1/rooms/${c.id}/members`, { user_id: person.id });
          close();
          this.reloadMembers();
        } catch (err) { this.app.showError(err); }
      }, 'Add'),
      h('div', { class: 'buttons' }, h('button', { type: 'button', onclick: () => close() }, 'Cancel')),
    ]);
  }

  async setRole(userId, role) {
    const c = this.current;
    try {
      await api('PUT', `/api/v1/rooms/${c.id}/members/${userId}`, { role });
    } catch (err) { this.app.showError(err); }
    this.reloadMembers();
  }

  async removeMember(member) {
    const c = this.current;
    if (!window.confirm(`Remove ${member.display_name} from this room?`)) return;
    try {
      await api('DELETE', `/api/v1/rooms/${c.id}/members/${member.user_id}`);
    } catch (err) { this.app.showError(err); }
    this.reloadMembers();
  }

  /** Rename, topic (moderators and owners), and the room's own timer limit (owners). */
  settings() {
    const c = this.current;
    const room = this.rooms.get(c.id);
    const name = h('input', { id: 'settings-name', value: room.name || '', maxlength: '100' });
    const topic = h('input', { id: 'settings-topic', value: room.topic || '', maxlength: '500' });
    const owner = room.my_role === 'owner';
    const limit = h('input', { id: 'settings-timer', type: 'number', min: '60' });
    const problem = h('p', { class: 'error-text', role: 'alert' });
    const close = modal('Room settings', () => {
      const form = h('form', {},
        h('label', { for: 'settings-name' }, 'Name'), name,
        h('label', { for: 'settings-topic' }, 'Topic'), topic,
        owner ? [h('label', { for: 'settings-timer' }, 'Longest message timer in this room (seconds; empty: as the policy above)'), limit,
          h('p', { class: 'hint' }, 'A room can only tighten the policy that applies to its members.')] : null,
        problem,
        h('div', { class: 'buttons' },
          h('button', { type: 'button', onclick: () => close() }, 'Cancel'),
          h('button', { type: 'submit', class: 'primary' }, 'Save')));
      form.addEventListener('submit', async (e) => {
        e.preventDefault();
        try {
          const detail = await api('PATCH', `/api/v1/rooms/${c.id}`, { name: name.value, topic: topic.value });
          if (owner) {
            const current = await api('GET', `/api/v1/rooms/${c.id}/policy`);
            await api('PUT', `/api/v1/rooms/${c.id}/policy`, {
              ...current.overrides, expiration_max: limit.value === '' ? null : Number(limit.value),
            });
          }
          close();
          this.rooms.set(c.id, { ...room, ...detail.room, unread_count: 0 });
          this.renderRooms();
          const title = this.pane.querySelector('#room-title');
          if (title) title.textContent = this.roomName(this.rooms.get(c.id));
          await this.refreshPolicy();
        } catch (err) { problem.textContent = describe(err); }
      });
      return form;
    });
    if (owner) {
      api('GET', `/api/v1/rooms/${c.id}/policy`).then((p) => { limit.value = p.overrides.expiration_max ?? ''; }).catch(() => {});
    }
  }

  async leave() {
    const c = this.current;
    if (!window.confirm('Leave this room?')) return;
    try {
      await api('POST', `/api/v1/rooms/${c.id}/leave`);
      this.rooms.delete(c.id);
      this.order = this.order.filter((id) => id !== c.id);
      location.hash = '#/';
    } catch (err) { this.app.showError(err); }
  }
}

function formatBytes(n) {
  if (n < 1024) return `${n} B`;
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(1)} KiB`;
  return `${(n / 1024 / 1024).toFixed(1)} MiB`;
}
