// Pushfleet browser client: one WebSocket to a Pushfleet gateway, channels with handlers,
// automatic reconnect with full-jitter exponential backoff, resubscribe, and an
// application ping when the line is quiet. Dependency-free ES module.
//
//   import { Pushfleet } from "/client.js";
//   const pf = new Pushfleet("ws://host:8080/ws", { token, channels: ["news"] });
//   pf.subscribe("news", (message, meta) => console.log(meta.channel, message));
//   pf.on("state", (s) => console.log(s)); // connecting | open | reconnecting | closed
//   pf.on("error", (e) => console.warn(e));
//   pf.close();

/** Close codes with a meaning for the client (see the protocol docs). */
export const CloseCode = Object.freeze({
  NORMAL: 1000,
  DRAINING: 1001,
  POLICY: 1008,
  TOO_BIG: 1009,
  TRY_AGAIN: 1013,
});

/** Error codes that refuse a subscribe for a channel itself: retrying cannot help. */
const CHANNEL_REFUSALS = new Set(["forbidden", "invalid_channel", "too_many_subscriptions"]);

const DEFAULTS = Object.freeze({
  minDelay: 500, // first reconnect delay ceiling, ms
  maxDelay: 20000, // largest reconnect delay ceiling, ms
  drainDelay: 250, // ceiling after 1001 (server draining): come back quickly
  pingInterval: 20000, // send a ping after this long without any frame, ms
  pongTimeout: 10000, // reconnect if nothing arrives this long after a ping, ms
});

/**
 * Full-jitter exponential backoff: a uniform delay in [0, min(max, min·2^attempt)].
 * @param {number} attempt 0 for the first retry
 * @param {{minDelay:number,maxDelay:number}} o
 * @param {() => number} random in [0, 1)
 */
export function backoffDelay(attempt, o = DEFAULTS, random = Math.random) {
  const ceiling = Math.min(o.maxDelay, o.minDelay * 2 ** Math.min(attempt, 30));
  return Math.floor(random() * ceiling);
}

export class Pushfleet {
  /**
   * @param {string} url ws:// or wss:// URL of a gateway's /ws
   * @param {object} [options]
   */
  constructor(url, options = {}) {
    this.url = url;
    this.options = { ...DEFAULTS, ...options };
    this._WebSocket = options.WebSocket || globalThis.WebSocket;
    this._random = options.random || Math.random;
    this._handlers = new Map(); // channel → Set of handlers
    this._listeners = { state: new Set(), error: new Set(), batch: new Set() };
    this._state = "closed";
    this._attempt = 0;
    this._ws = null;
    this._retryTimer = null;
    this._pingTimer = null;
    this._pongTimer = null;
    this._closedByUser = false;
    this._nextId = 1;
    // Subscribe commands awaiting their answer on the current socket: id → channels.
    this._pending = new Map();
    for (const ch of options.channels || []) this._handlers.set(ch, new Set());
    this._connect("connecting");
  }

  /** Current state: "connecting" | "open" | "reconnecting" | "closed". */
  get state() {
    return this._state;
  }

  /** Channels currently wanted (sent again after every reconnect). */
  get channels() {
    return [...this._handlers.keys()].filter((c) => c !== "*");
  }

  /**
   * Calls `handler(message, meta)` for each message of each batch on `channel`, in order.
   * Use "*" for broadcasts. Returns a function that removes this handler.
   */
  subscribe(channel, handler) {
    let set = this._handlers.get(channel);
    const isNew = !set;
    if (!set) {
      set = new Set();
      this._handlers.set(channel, set);
    }
    if (handler) set.add(handler);
    if (isNew && channel !== "*") this._subscribe([channel]);
    return () => this.unsubscribe(channel, handler);
  }

  /** Removes `handler` (or every handler) from `channel`; unsubscribes when none is left. */
  unsubscribe(channel, handler) {
    const set = this._handlers.get(channel);
    if (!set) return;
    if (handler) set.delete(handler);
    else set.clear();
    if (set.size === 0) {
      this._handlers.delete(channel);
      if (channel !== "*") this._send({ op: "unsubscribe", channels: [channel], id: this._nextId++ });
    }
  }

  /** Listens to "state", "error" or "batch" events. Returns a function that stops it. */
  on(event, fn) {
    const set = this._listeners[event];
    if (!set) throw new Error(`unknown event ${event}`);
    set.add(fn);
    return () => set.delete(fn);
  }

  /** Closes for good: no reconnect. */
  close() {
    this._closedByUser = true;
    this._clearTimers();
    if (this._ws) {
      try {
        this._ws.close(CloseCode.NORMAL);
      } catch (_) {
        /* already closed */
      }
      this._ws = null;
    }
    this._setState("closed");
  }

  // ---- internals ----

  _emit(event, ...args) {
    for (const fn of this._listeners[event]) {
      try {
        fn(...args);
      } catch (e) {
        setTimeout(() => {
          throw e;
        });
      }
    }
  }

  _setState(s) {
    if (this._state === s) return;
    this._state = s;
    this._emit("state", s);
  }

  _buildUrl() {
    const token = this.options.token;
    if (!token) return this.url;
    const sep = this.url.includes("?") ? "&" : "?";
    return `${this.url}${sep}token=${encodeURIComponent(token)}`;
  }

  _connect(state) {
    this._setState(state);
    let ws;
    try {
      ws = new this._WebSocket(this._buildUrl(), "pushfleet.v1.json");
    } catch (e) {
      this._emit("error", { code: "connect_failed", message: String(e) });
      this._scheduleReconnect(null);
      return;
    }
    this._ws = ws;
    ws.onopen = () => {
      if (this._ws !== ws) return;
      this._attempt = 0;
      const chans = this.channels;
      if (chans.length) this._subscribe(chans);
      this._setState("open");
      this._armPing();
    };
    ws.onmessage = (ev) => {
      if (this._ws !== ws) return;
      this._armPing();
      this._onFrame(ev.data);
    };
    ws.onclose = (ev) => {
      if (this._ws !== ws) return;
      this._ws = null;
      this._pending.clear();
      this._clearTimers();
      if (this._closedByUser) return;
      this._scheduleReconnect(ev.code);
    };
    ws.onerror = () => {
      /* onclose follows and decides */
    };
  }

  _onFrame(data) {
    let frame;
    try {
      frame = JSON.parse(data);
    } catch (_) {
      frame = null;
    }
    if (frame === null || typeof frame !== "object") {
      this._emit("error", { code: "bad_frame", message: "the gateway sent a frame that is not a JSON object" });
      return;
    }
    switch (frame.op) {
      case "batch":
        this._dispatch(frame);
        break;
      case "error":
        this._refused(frame);
        break;
      case "subscribed":
        this._pending.delete(frame.id);
        break;
      default:
        // unsubscribed, pong, and ops from later versions: nothing to do.
        break;
    }
  }

  _dispatch(frame) {
    const messages = Array.isArray(frame.messages) ? frame.messages : [];
    this._emit("batch", frame.channel, messages);
    const set = this._handlers.get(frame.channel);
    if (!set || set.size === 0) return;
    const handlers = [...set];
    messages.forEach((m, index) => {
      const meta = { channel: frame.channel, index, batchSize: messages.length };
      for (const h of handlers) {
        try {
          h(m, meta);
        } catch (e) {
          setTimeout(() => {
            throw e;
          });
        }
      }
    });
  }

  /** Subscribes `channels` in one command, remembering them until the gateway answers. */
  _subscribe(channels) {
    const id = this._nextId++;
    if (this._send({ op: "subscribe", channels, id })) this._pending.set(id, channels);
  }

  /**
   * An error frame. The gateway refuses a whole subscribe command for one channel it will
   * not take (forbidden, invalid, over the limit), so a command of several channels (the
   * resubscribe after a reconnect) is sent again one channel each; a refused single channel
   * is dropped, so that no later resubscribe carries it, and reported with its name.
   */
  _refused(frame) {
    const error = { code: frame.code, message: frame.message, id: frame.id };
    const channels = this._pending.get(frame.id);
    this._pending.delete(frame.id);
    if (!channels || !CHANNEL_REFUSALS.has(frame.code)) {
      this._emit("error", channels ? { ...error, channels } : error);
      return;
    }
    if (channels.length > 1) {
      // Which one was refused is not said: ask for each still wanted on its own.
      for (const c of channels) if (this._handlers.has(c)) this._subscribe([c]);
      return;
    }
    // Unless a later subscribe of the same channel (unsubscribed and subscribed again
    // meanwhile) still awaits its own answer.
    const again = [...this._pending.values()].some((cs) => cs.includes(channels[0]));
    if (!again) this._handlers.delete(channels[0]);
    this._emit("error", { ...error, channels });
  }

  _send(obj) {
    const ws = this._ws;
    if (!ws || ws.readyState !== 1) return false; // sent again on (re)open
    ws.send(JSON.stringify(obj));
    return true;
  }

  _scheduleReconnect(code) {
    if (code === CloseCode.POLICY) {
      this._emit("error", { code: "unauthorized", message: "the gateway refused this connection (1008); not retrying" });
      this._setState("closed");
      return;
    }
    const delay =
      code === CloseCode.DRAINING
        ? Math.floor(this._random() * this.options.drainDelay)
        : backoffDelay(this._attempt, this.options, this._random);
    this._attempt += 1;
    this._setState("reconnecting");
    this._retryTimer = setTimeout(() => {
      this._retryTimer = null;
      if (!this._closedByUser) this._connect("reconnecting");
    }, delay);
  }

  /** After any inbound frame: ping when the line stays quiet, reconnect if no answer. */
  _armPing() {
    clearTimeout(this._pingTimer);
    clearTimeout(this._pongTimer);
    this._pongTimer = null;
    this._pingTimer = setTimeout(() => {
      if (!this._send({ op: "ping", id: this._nextId++ })) return;
      this._pongTimer = setTimeout(() => {
        const ws = this._ws;
        if (!ws) return;
        this._ws = null;
        try {
          ws.close(CloseCode.NORMAL);
        } catch (_) {
          /* ignore */
        }
        this._clearTimers();
        this._scheduleReconnect(null);
      }, this.options.pongTimeout);
    }, this.options.pingInterval);
  }

  _clearTimers() {
    clearTimeout(this._pingTimer);
    clearTimeout(this._pongTimer);
    clearTimeout(this._retryTimer);
    this._pingTimer = this._pongTimer = this._retryTimer = null;
  }
}

export default Pushfleet;
