// The realtime connection: one WebSocket to /api/v1/ws (the session cookie authenticates
// it; the server refuses other origins). It remembers, per room, the last event sequence
// number delivered and reconnects with `?resume=ROOM:SEQ,…`, so the server replays
// whatever was missed during a network drop, in order, before anything newer.

export class Realtime {
  /**
   * @param {(event: object, gap: boolean) => void} onEvent a room event envelope
   * @param {(state: 'connecting'|'online'|'offline', detail?: object) => void} onState
   */
  constructor(onEvent, onState) {
    this.onEvent = onEvent;
    this.onState = onState;
    this.positions = new Map();
    this.socket = null;
    this.retry = 0;
    this.stopped = false;
    this.pinger = null;
    this.reconnectTimer = null;
  }

  /**
   * Sets where a room's stream starts (its `last_event_seq` when its messages were read),
   * for a room not followed yet. A followed room's position only moves with the events
   * delivered, so a room list read during a replay cannot skip what is still arriving.
   */
  position(roomId, seq) {
    if (!this.positions.has(roomId)) this.positions.set(roomId, seq);
  }

  start() {
    this.stopped = false;
    this.connect();
  }

  stop() {
    this.stopped = true;
    clearTimeout(this.reconnectTimer);
    clearInterval(this.pinger);
    if (this.socket) this.socket.close(1000, 'signed out');
    this.socket = null;
  }

  connect() {
    if (this.stopped) return;
    const resume = [...this.positions].map(([room, seq]) => `${room}:${seq}`).join(',');
    const scheme = location.protocol === 'https:' ? 'wss:' : 'ws:';
    const url = `${scheme}//${location.host}/api/v1/ws${resume ? `?resume=${resume}` : ''}`;
    this.onState('connecting');
    const socket = new WebSocket(url);
    this.socket = socket;
    socket.addEventListener('open', () => {
      clearInterval(this.pinger);
      this.pinger = setInterval(() => {
        if (socket.readyState === WebSocket.OPEN) socket.send('{"type":"ping"}');
      }, 25000);
    });
    socket.addEventListener('message', (message) => {
      let frame;
      try { frame = JSON.parse(message.data); } catch { return; }
      if (frame.type === 'pong') return;
      if (frame.type === 'ready') {
        this.retry = 0;
        for (const [room, seq] of Object.entries((frame.data && frame.data.rooms) || {})) {
          if (!this.positions.has(room)) this.positions.set(room, seq);
        }
        this.onState('online', frame.data);
        return;
      }
      if (!frame.room_id || typeof frame.seq !== 'number') return;
      const seen = this.positions.get(frame.room_id);
      if (seen !== undefined && frame.seq <= seen) return;
      // The server delivers each room's events in order; a jump (a room whose start was
      // not named) is reported so the caller re-reads that room by message sequence.
      const gap = seen !== undefined && frame.seq > seen + 1;
      this.positions.set(frame.room_id, frame.seq);
      this.onEvent(frame, gap);
    });
    socket.addEventListener('close', (event) => {
      clearInterval(this.pinger);
      if (this.socket !== socket) return;
      this.socket = null;
      if (this.stopped) return;
      this.onState('offline', { code: event.code, reason: event.reason });
      const delay = Math.min(15000, 500 * 2 ** this.retry);
      this.retry += 1;
      this.reconnectTimer = setTimeout(() => this.connect(), delay);
    });
  }
}
