/**
 * fanout.js: a client for the fanout hub's `fanout.v1` WebSocket protocol.
 *
 * One ES module, no dependencies. Runs in browsers and in Node 20+ (pass a WebSocket
 * constructor, e.g. from the `ws` package, where there is no global one).
 *
 * - Reconnects by itself with exponential backoff and jitter; stops for good on a
 *   policy close (1008: token expired, refused) or a refused handshake.
 * - Resumes every room from the last {epoch, offset} it delivered (`since`), drops
 *   duplicates, and says what it could not get: `gap` and `reset` (a new epoch) events.
 * - Publishes carry an `id` and are re-sent with it after a reconnect or a retryable
 *   error until the hub acks them: the hub stores each id once.
 * - Ephemeral publishes (typing, cursors) are not stored and take no offset: sent once,
 *   never re-sent; received as the room's `ephemeral` event, outside offsets.
 * - Binary payloads (Uint8Array, ArrayBuffer, Blob) travel in the binary envelope:
 *   4-byte big-endian header length, JSON header, raw bytes.
 * - The personal room (`@<user>`), which the hub subscribes every connection of a user
 *   to, is tracked like any room and resumed with `user_since` on the handshake.
 * - Presence and history are asked by `id` (`presence`, `presenceStats`, `history`).
 * - A kick (close 4003) stops the client, like a policy close.
 *
 * The wire protocol: docs/protocol.md in the fanout repository.
 */

const SUBPROTOCOL = "fanout.v1";
// Error codes after which sending the same frame again (same id) may succeed.
const RETRYABLE = new Set(["unavailable", "timeout", "rate_limited"]);
const POLICY = 1008;
const KICKED = 4003; // disconnected by the server on purpose: do not reconnect
const TOO_BIG = 1009;
const ABNORMAL = 1006;
const OPEN = 1; // WebSocket.OPEN, the same in browsers and `ws`
const MAX_ID = 128;
const ROOM = /^[A-Za-z0-9_.:@-]{1,128}$/;
// A refused handshake's body (Node `ws` only) is read for its reason up to this size.
const MAX_REFUSAL_BODY = 16 * 1024;

const encoder = new TextEncoder();
const strictDecoder = new TextDecoder("utf-8", { fatal: true });
const EMIT = Symbol("emit");

/** An error the hub answered, or the client's own refusal of a request. */
export class FanoutError extends Error {
  /**
   * @param {string} code e.g. `forbidden`, `bad_room`, `too_big`, `refused`, `closed`
   * @param {string} reason
   * @param {{room?: string, id?: string}} [where]
   */
  constructor(code, reason, { room, id } = {}) {
    super(`${code}: ${reason}${room === undefined ? "" : ` (room ${room})`}`);
    this.name = "FanoutError";
    this.code = code;
    this.reason = reason;
    this.room = room;
    this.id = id;
  }
}

/** `on(type, listener)` returns a function that removes the listener. */
class Emitter {
  /** @type {Map<string, Set<Function>>} */
  #listeners = new Map();

  on(type, listener) {
    let set = this.#listeners.get(type);
    if (!set) this.#listeners.set(type, (set = new Set()));
    set.add(listener);
    return () => this.off(type, listener);
  }

  off(type, listener) {
    this.#listeners.get(type)?.delete(listener);
  }

  [EMIT](type, event) {
    const set = this.#listeners.get(type);
    if (!set) return;
    for (const listener of [...set]) {
      // A throwing listener is the application's bug: report it as uncaught, but
      // never in the middle of the client's bookkeeping.
      try {
        listener(event);
      } catch (err) {
        setTimeout(() => {
          throw err;
        });
      }
    }
  }
}

/** A room's handle: its events, and shortcuts for subscribe, publish, unsubscribe. */
export class Room extends Emitter {
  #client;

  constructor(client, name) {
    super();
    this.#client = client;
    /** @type {string} */
    this.name = name;
  }

  /** Where this room stands: the last {epoch, offset} delivered, or null. */
  get position() {
    return this.#client.position(this.name);
  }

  subscribe(options) {
    return this.#client.subscribe(this.name, options);
  }

  unsubscribe() {
    this.#client.unsubscribe(this.name);
  }

  publish(data, options) {
    return this.#client.publish(this.name, data, options);
  }

  presence(options) {
    return this.#client.presence(this.name, options);
  }

  presenceStats(options) {
    return this.#client.presenceStats(this.name, options);
  }

  history(options) {
    return this.#client.history(this.name, options);
  }
}

export class FanoutClient extends Emitter {
  #url;
  #WebSocket;
  #token;
  #tokenParam;
  #backoff;
  #publishTimeoutMs;
  #requestTimeoutMs;
  #maxMessageBytes;

  #state = "connecting"; // connecting | open | waiting | closed
  #ws = null;
  #connection = 0; // number of the current (or last) open connection
  #streak = 0; // connections in a row that failed or did not last
  #failed = 0; // failed attempts since the last open connection
  #openedAt = 0;
  #reconnectTimer = null;
  #stopInfo = null;
  #stats = { attempts: 0, connections: 0, duplicates: 0, gaps: 0, resets: 0 };

  /** @type {Map<string, Room>} */
  #rooms = new Map();
  /** room name -> subscription state */
  #subs = new Map();
  /** Subscribes sent on the current connection and not answered yet, in order. */
  #unanswered = [];
  /** id -> unacked publish, in publish order */
  #pending = new Map();
  /** id -> unanswered ephemeral publish (never re-sent) */
  #ephemeral = new Map();
  /** id -> unanswered token refresh */
  #refreshes = new Map();
  /** id -> unanswered presence, presence_stats or history request */
  #requests = new Map();
  /** The personal room's name, once the hub announced it. */
  #userRoom = null;
  /** Whether the current connection announced its personal room yet. */
  #personalAnnounced = false;

  /**
   * @param {string | URL} url the hub's WebSocket endpoint (`ws://host/ws`); http(s)
   *   URLs are turned into ws(s); relative URLs resolve against the page.
   * @param {object} [options] see fanout.d.ts
   */
  constructor(url, options = {}) {
    super();
    const base = globalThis.location?.href;
    const parsed = new URL(url, base);
    if (parsed.protocol === "http:") parsed.protocol = "ws:";
    else if (parsed.protocol === "https:") parsed.protocol = "wss:";
    if (parsed.protocol !== "ws:" && parsed.protocol !== "wss:") {
      throw new TypeError(`not a WebSocket URL: ${parsed.protocol}`);
    }
    parsed.hash = "";
    this.#url = parsed;
    this.#WebSocket = options.WebSocket ?? globalThis.WebSocket;
    if (typeof this.#WebSocket !== "function") {
      throw new TypeError("no WebSocket here: pass one, e.g. new FanoutClient(url, { WebSocket }) with `ws`");
    }
    this.#token = options.token ?? null;
    this.#tokenParam = options.tokenParam ?? "token";
    const backoff = options.backoff ?? {};
    this.#backoff = {
      initialMs: backoff.initialMs ?? 100,
      maxMs: backoff.maxMs ?? 5000,
      jitter: backoff.jitter ?? 0.5,
    };
    if (!(this.#backoff.initialMs > 0 && this.#backoff.initialMs <= this.#backoff.maxMs)) {
      throw new RangeError("backoff needs 0 < initialMs <= maxMs");
    }
    this.#publishTimeoutMs = options.publishTimeoutMs ?? 10000;
    this.#requestTimeoutMs = options.requestTimeoutMs ?? 10000;
    this.#maxMessageBytes = options.maxMessageBytes ?? 16 * 1024 * 1024;
    // Start once the caller had a chance to add listeners.
    queueMicrotask(() => this.#connect());
  }

  // -- state ---------------------------------------------------------------------------

  /** `connecting`, `open`, `waiting` (to reconnect) or `closed` (for good). */
  get state() {
    return this.#state;
  }

  /** The current WebSocket, or null: for debugging; send nothing through it. */
  get socket() {
    return this.#ws;
  }

  /** Publishes not answered yet. */
  get pending() {
    return this.#pending.size;
  }

  get stats() {
    return { ...this.#stats, pending: this.#pending.size };
  }

  /** Why the client stopped ({reason, code?, status?}), or null while it runs. */
  get stopped() {
    return this.#stopInfo;
  }

  /** The last {epoch, offset} of `room` delivered to the application, or null. */
  position(room) {
    const sub = this.#subs.get(room);
    return sub && sub.epoch !== null ? { epoch: sub.epoch, offset: sub.offset } : null;
  }

  /**
   * The handle of the personal room (`@<user>`) the hub subscribed this client to, or
   * null until the hub announced it (the `userRoom` event) or for an anonymous identity.
   */
  userRoom() {
    return this.#userRoom === null ? null : this.room(this.#userRoom);
  }

  /** The handle of `room` (always the same object for a name). Subscribes to nothing. */
  room(name) {
    let room = this.#rooms.get(name);
    if (!room) this.#rooms.set(name, (room = new Room(this, name)));
    return room;
  }

  /** Reconnect now instead of waiting for the backoff (e.g. the network is back). */
  reconnect() {
    if (this.#state !== "waiting") return;
    this.#streak = 0;
    this.#connect();
  }

  /** Stop for good: pending publishes and subscribes fail with code `closed`. */
  close() {
    const ws = this.#ws;
    this.#stop({ reason: "closed by the application" }, "closed");
    if (!ws || ws.readyState === 3) return Promise.resolve();
    return new Promise((resolve) => {
      ws.addEventListener("close", () => resolve());
      try {
        ws.close(1000);
      } catch {
        resolve();
      }
    });
  }

  // -- rooms ---------------------------------------------------------------------------

  /**
   * Subscribe to `room`; resolves with the hub's confirmation. The room is resumed after
   * every reconnect. `history`: on the first subscribe, also deliver up to this many
   * earlier messages (1-1000): they are read with one `history` request, then the room
   * is subscribed from that answer's latest offset, so nothing comes twice and nothing
   * published in between is skipped. `since`: start after this {epoch, offset} (e.g.
   * saved earlier; `history` is then ignored).
   */
  subscribe(room, { history = 0, since } = {}) {
    const check = this.#usable(room) ?? serverManaged(room);
    if (check) return handled(Promise.reject(check));
    let sub = this.#subs.get(room);
    if (sub && sub.confirmed) return Promise.resolve(sub.confirmed);
    if (!sub) {
      const start = since && typeof since.epoch === "string" && Number.isSafeInteger(since.offset);
      sub = {
        name: room,
        epoch: start ? since.epoch : null,
        offset: start ? since.offset : 0,
        history: start ? 0 : Math.min(1000, Math.max(0, Math.floor(history) || 0)),
        asking: null, // the history request out before the first subscribe
        sentOn: 0,
        awaiting: false, // a subscribe is out on this connection, unanswered
        confirmed: null, // the `subscribed` event of this connection
        reset: false, // the epoch changed during this subscription's (re)subscribe
        historyGap: false, // a `gap` now is about requested history, not missed messages
        errors: 0,
        timer: null,
        waiters: [],
      };
      this.#subs.set(room, sub);
      if (sub.history > 0) this.#askHistory(sub);
      else if (this.#isOpen()) this.#sendSubscribe(sub, this.position(room), "join");
    }
    const waiting = new Promise((resolve, reject) => sub.waiters.push({ resolve, reject }));
    return handled(waiting);
  }

  /** Stop receiving `room` and forget its position. */
  unsubscribe(room) {
    const refusal = serverManaged(room);
    if (refusal) throw refusal;
    const sub = this.#subs.get(room);
    if (!sub) return;
    this.#subs.delete(room);
    clearTimeout(sub.timer);
    if (sub.asking) this.#settleRequest(sub.asking, null, null);
    settle(sub.waiters, new FanoutError("unsubscribed", "unsubscribed while subscribing", { room }));
    if (this.#isOpen() && sub.sentOn === this.#connection) {
      this.#send(JSON.stringify({ type: "unsubscribe", room }));
    }
  }

  // -- publishing ----------------------------------------------------------------------

  /**
   * Publish `data` to `room`: any JSON value, or bytes (Uint8Array, ArrayBuffer, Blob)
   * sent as a binary frame. Resolves with the ack ({id, room, epoch, offset}); rejects
   * with a FanoutError when the hub refuses it for good. Re-sent with the same `id`
   * (generated if not given) until answered, so it is stored once.
   *
   * `ephemeral: true` (typing indicators, cursors): not stored, no offset, delivered
   * only to the room's subscribers of the moment (their `ephemeral` event). Resolves
   * with {id, room, ephemeral: true} once the hub passed it on. Sent once, on the open
   * connection, and never again: it rejects with code `dropped` when no connection is
   * open, or the connection ends (or stays silent for `publishTimeoutMs`) before the
   * answer, and with the hub's code for any refusal (`rate_limited` included).
   */
  publish(room, data, { id, ephemeral = false } = {}) {
    const check = this.#usable(room) ?? serverManaged(room);
    if (check) return handled(Promise.reject(check));
    const msgId = id ?? newId();
    if (typeof msgId !== "string" || msgId.length < 1 || msgId.length > MAX_ID) {
      return handled(Promise.reject(new RangeError(`a publish id must be 1-${MAX_ID} characters`)));
    }
    const existing = this.#pending.get(msgId);
    if (existing || this.#ephemeral.has(msgId)) {
      if (existing && existing.room === room && !ephemeral) return existing.promise;
      return handled(Promise.reject(new RangeError(`publish id ${msgId} is already in flight`)));
    }
    let frame;
    try {
      frame = encodePublish(room, data, msgId, ephemeral === true);
    } catch (err) {
      return handled(Promise.reject(err));
    }
    const size = typeof frame === "string" ? encoder.encode(frame).length : (frame.size ?? frame.length);
    if (size > this.#maxMessageBytes) {
      const reason = `publish of ${size} bytes exceeds maxMessageBytes (${this.#maxMessageBytes})`;
      return handled(Promise.reject(new FanoutError("too_big", reason, { room, id: msgId })));
    }
    if (ephemeral === true) return this.#publishEphemeral(room, msgId, frame);
    const p = { id: msgId, room, frame, sentOn: 0, errors: 0, timer: null };
    p.promise = handled(
      new Promise((resolve, reject) => {
        p.resolve = resolve;
        p.reject = reject;
      }),
    );
    this.#pending.set(msgId, p);
    if (this.#isOpen()) this.#sendPublish(p);
    return p.promise;
  }

  #publishEphemeral(room, id, frame) {
    const dropped = (reason) => new FanoutError("dropped", reason, { room, id });
    if (!this.#isOpen()) {
      return handled(Promise.reject(dropped("no open connection (not kept for the next one)")));
    }
    const e = { id, room, connection: this.#connection };
    const promise = new Promise((resolve, reject) => {
      e.resolve = resolve;
      e.reject = reject;
    });
    if (!this.#send(frame)) return handled(Promise.reject(dropped("the connection closed before it was sent")));
    e.timer = setTimeout(() => {
      this.#ephemeral.delete(id);
      e.reject(dropped(`no answer within ${this.#publishTimeoutMs} ms`));
    }, this.#publishTimeoutMs);
    this.#ephemeral.set(id, e);
    return handled(promise);
  }

  #settleEphemeral(e, error, value) {
    clearTimeout(e.timer);
    this.#ephemeral.delete(e.id);
    if (error) e.reject(error);
    else e.resolve(value);
  }

  // -- presence and history -----------------------------------------------------------

  /**
   * Who is in `room` now: resolves with {room, members: [{user, conn, node, joinedAt,
   * info}]} (one member per connection). Rejects with a FanoutError: the hub's refusal
   * (`forbidden`, `bad_room`, `unavailable`), `timeout` after `timeoutMs` (default
   * `requestTimeoutMs`; the request waits through reconnects), `malformed_frame`.
   */
  presence(room, { timeoutMs } = {}) {
    return this.#ask("presence", room, {}, timeoutMs);
  }

  /** How many connections and distinct users are in `room`: {room, connections, users}. */
  presenceStats(room, { timeoutMs } = {}) {
    return this.#ask("presence_stats", room, {}, timeoutMs);
  }

  /**
   * Messages of `room` without subscribing: the last `limit` (1-1000, default 100), or
   * with `since` the first `limit` after that offset (to page forward). Resolves with
   * {room, epoch, latest, firstKept, messages: [{room, epoch, offset, data}]}, binary
   * data as Uint8Array. Changes no subscription nor position.
   */
  history(room, { limit = 100, since, timeoutMs } = {}) {
    if (!Number.isSafeInteger(limit) || limit < 1 || limit > 1000) {
      return handled(Promise.reject(new RangeError("limit must be an integer from 1 to 1000")));
    }
    if (since !== undefined && !isCount(since)) {
      return handled(Promise.reject(new RangeError("since must be an offset (an integer >= 0)")));
    }
    return this.#ask("history", room, since === undefined ? { limit } : { limit, since }, timeoutMs);
  }

  #ask(type, room, fields, timeoutMs = this.#requestTimeoutMs) {
    const check = this.#usable(room);
    if (check) return handled(Promise.reject(check));
    return handled(new Promise((resolve, reject) => this.#request(type, room, fields, timeoutMs, resolve, reject)));
  }

  /** Send a request answered by id (now, or on the next connection); returns its record. */
  #request(type, room, fields, timeoutMs, resolve, reject) {
    const id = newId(`${type}-`);
    const r = { id, type, room, frame: JSON.stringify({ type, room, ...fields, id }), sentOn: 0, resolve, reject };
    r.timer = setTimeout(() => {
      this.#requests.delete(id);
      r.reject(new FanoutError("timeout", `no answer to ${type} within ${timeoutMs} ms`, { room, id }));
    }, timeoutMs);
    this.#requests.set(id, r);
    if (this.#isOpen()) this.#sendRequest(r);
    return r;
  }

  /**
   * Join with history: read the last `sub.history` messages with a `history` request,
   * deliver them, then subscribe from that answer's {epoch, latest}. The subscribe waits
   * for the answer (the request itself is re-sent after a reconnect).
   */
  #askHistory(sub) {
    sub.asking = this.#request(
      "history",
      sub.name,
      { limit: sub.history },
      this.#requestTimeoutMs,
      (answer) => this.#historyAnswered(sub, answer),
      () => this.#historyFailed(sub),
    );
  }

  #historyAnswered(sub, h) {
    if (h === null || sub.asking === null || this.#subs.get(sub.name) !== sub) return;
    sub.asking = null;
    const wanted = sub.history;
    sub.history = 0;
    sub.epoch = h.epoch;
    sub.offset = 0;
    const room = this.room(sub.name);
    // Earlier offsets asked for but no longer kept: said like a history `gap`.
    const from = Math.max(1, h.latest - wanted + 1);
    const first = h.messages.length > 0 ? h.messages[0].offset : h.latest + 1;
    if (first > from) {
      sub.offset = first - 1;
      this.#gap(sub, from, first - 1, true);
    }
    for (const m of h.messages) {
      if (this.#subs.get(sub.name) !== sub) return; // a listener unsubscribed
      sub.offset = m.offset;
      room[EMIT]("message", m);
    }
    if (this.#subs.get(sub.name) !== sub) return;
    sub.offset = h.latest;
    if (this.#isOpen()) this.#sendSubscribe(sub, { epoch: h.epoch, offset: h.latest }, "resume");
  }

  #historyFailed(sub) {
    if (sub.asking === null || this.#subs.get(sub.name) !== sub || this.#state === "closed") return;
    sub.asking = null;
    // A hub without history requests (unknown_type), a refusal, no answer in time:
    // subscribe, and read the history by subscribing again from latest - N. A refusal
    // of the room itself is the subscribe's to report.
    if (this.#isOpen()) this.#sendSubscribe(sub, null, "join");
  }

  #settleRequest(r, error, value) {
    clearTimeout(r.timer);
    this.#requests.delete(r.id);
    if (error) r.reject(error);
    else r.resolve(value);
  }

  // -- auth ----------------------------------------------------------------------------

  /**
   * Give the live connection a new token (same subject) before the current one expires;
   * resolves with {sub, exp} once the hub took it. Later handshakes use it.
   */
  refreshToken(token) {
    if (this.#state === "closed") return handled(Promise.reject(this.#closedError()));
    if (typeof token !== "string" || token.length === 0) {
      return handled(Promise.reject(new TypeError("a token must be a non-empty string")));
    }
    const r = { id: newId("auth-"), token, sentOn: 0, errors: 0, timer: null };
    const promise = new Promise((resolve, reject) => {
      r.resolve = resolve;
      r.reject = reject;
    });
    this.#refreshes.set(r.id, r);
    if (this.#isOpen()) this.#sendRefresh(r);
    return handled(promise);
  }

  // -- the connection ------------------------------------------------------------------

  async #connect() {
    clearTimeout(this.#reconnectTimer);
    this.#reconnectTimer = null;
    if (this.#state === "closed" || this.#ws) return;
    this.#state = "connecting";
    this.#stats.attempts++;
    this[EMIT]("connecting", { attempt: this.#failed + 1 });
    let url;
    try {
      url = new URL(this.#url);
      const token = typeof this.#token === "function" ? await this.#token() : this.#token;
      if (this.#state === "closed") return;
      if (token) url.searchParams.set(this.#tokenParam, token);
      // Resume the personal room from what was delivered (the hub subscribes it itself).
      const personal = this.#userRoom === null ? null : this.position(this.#userRoom);
      if (personal) url.searchParams.set("user_since", `${personal.epoch}:${personal.offset}`);
    } catch (err) {
      this.#attemptFailed(`no token (${errorName(err)})`);
      return;
    }
    let ws;
    try {
      ws = new this.#WebSocket(url.href, SUBPROTOCOL);
    } catch (err) {
      // A URL the browser will never open (bad syntax, ws: from an https page).
      // The message would quote the URL, token included: name the error only.
      this.#stop({ reason: `cannot open a WebSocket (${errorName(err)})` }, "refused");
      return;
    }
    ws.binaryType = "arraybuffer";
    this.#ws = ws;
    const link = { opened: false, refusal: null };
    watchRefusal(ws, link);
    ws.addEventListener("open", () => this.#onOpen(ws, link));
    ws.addEventListener("message", (ev) => {
      if (ws === this.#ws) this.#onFrame(ev.data);
    });
    ws.addEventListener("close", (ev) => this.#onClose(ws, link, ev.code, ev.reason ?? ""));
    ws.addEventListener("error", () => {}); // a close event follows
  }

  #onOpen(ws, link) {
    if (ws !== this.#ws) return;
    link.opened = true;
    if (ws.protocol !== SUBPROTOCOL) {
      this.#ws = null;
      ws.close(1000);
      this.#stop({ reason: `the server does not speak ${SUBPROTOCOL}` }, "refused");
      return;
    }
    this.#connection++;
    this.#stats.connections++;
    this.#failed = 0;
    this.#openedAt = Date.now();
    this.#unanswered = [];
    this.#personalAnnounced = false;
    this.#state = "open";
    this[EMIT]("connected", { connection: this.#connection });
    // Refreshes first (rooms may need the new grants), then rooms, then publishes, then
    // requests. The personal room is the hub's to subscribe.
    for (const r of this.#refreshes.values()) this.#sendRefresh(r);
    for (const sub of this.#subs.values()) {
      sub.confirmed = null;
      // The personal room is the hub's to subscribe; a history join waits for its answer.
      if (sub.personal || sub.asking) continue;
      const since = this.position(sub.name);
      this.#sendSubscribe(sub, since, since ? "resume" : "join");
    }
    for (const p of this.#pending.values()) this.#sendPublish(p);
    for (const r of this.#requests.values()) this.#sendRequest(r);
  }

  #onClose(ws, link, code, reason) {
    if (ws !== this.#ws) return;
    this.#ws = null;
    const connection = this.#connection;
    this.#unanswered = [];
    for (const sub of this.#subs.values()) {
      sub.awaiting = false;
      sub.confirmed = null;
    }
    for (const e of [...this.#ephemeral.values()]) {
      if (e.connection === connection) {
        const error = link.opened && code === TOO_BIG
          ? new FanoutError("too_big", reason || "message too big", e)
          : new FanoutError("dropped", "the connection ended before the hub answered (not sent again)", e);
        this.#settleEphemeral(e, error);
      }
    }
    if (link.opened && code === TOO_BIG) {
      // The hub does not say which frame was too big; sending it again would close the
      // next connection the same way: fail what was in flight on this one.
      for (const p of [...this.#pending.values()]) {
        if (p.sentOn === connection) {
          this.#failPublish(p, new FanoutError("too_big", reason || "message too big", p));
        }
      }
    }
    if (this.#state === "closed") return;
    if (link.refusal) {
      this[EMIT]("disconnected", { code, reason: link.refusal.reason, opened: false, retryInMs: null });
      this.#stop(link.refusal, "refused");
      return;
    }
    if (link.opened && (code === POLICY || code === KICKED)) {
      // Token expired, room refused...: the same handshake would be refused again.
      // Kicked: the server wants this client gone; coming back is not ours to decide.
      this[EMIT]("disconnected", { code, reason, opened: true, retryInMs: null });
      if (code === KICKED) this.#stop({ reason: reason || "disconnected by the server", code }, "kicked");
      else this.#stop({ reason: reason || "policy violation", code }, "refused");
      return;
    }
    if (!link.opened) {
      this.#attemptFailed(reason, code);
      return;
    }
    // A connection that lasted starts the backoff over; one dropped at once does not.
    if (Date.now() - this.#openedAt >= this.#backoff.maxMs) this.#streak = 0;
    const delay = this.#delay(this.#streak++);
    this.#wait(delay);
    this[EMIT]("disconnected", { code, reason, opened: true, retryInMs: delay });
  }

  #attemptFailed(reason, code = ABNORMAL) {
    this.#failed++;
    const delay = this.#delay(this.#streak++);
    this.#wait(delay);
    this[EMIT]("disconnected", { code, reason, opened: false, retryInMs: delay });
  }

  #wait(delay) {
    if (this.#state === "closed") return;
    this.#state = "waiting";
    this.#reconnectTimer = setTimeout(() => this.#connect(), delay);
  }

  #delay(attempt) {
    const { initialMs, maxMs, jitter } = this.#backoff;
    const ceiling = Math.min(maxMs, initialMs * 2 ** Math.min(attempt, 40));
    return Math.round(ceiling * (1 - jitter * Math.random()));
  }

  /** Abort a connection presumed dead, and reconnect. */
  #drop(reason) {
    const ws = this.#ws;
    if (!ws) return;
    this.#onClose(ws, { opened: true, refusal: null }, ABNORMAL, reason);
    try {
      if (typeof ws.terminate === "function") ws.terminate();
      else ws.close(4000, "no answer");
    } catch {
      // already closing
    }
  }

  #stop(info, code) {
    if (this.#state === "closed") return;
    this.#state = "closed";
    this.#stopInfo = info;
    clearTimeout(this.#reconnectTimer);
    const ws = this.#ws;
    this.#ws = null;
    if (ws && code !== "closed") {
      try {
        ws.close(1000);
      } catch {
        // already closing
      }
    }
    const error = new FanoutError(code, info.reason);
    for (const p of [...this.#pending.values()]) this.#failPublish(p, error);
    for (const e of [...this.#ephemeral.values()]) this.#settleEphemeral(e, error);
    for (const sub of this.#subs.values()) {
      clearTimeout(sub.timer);
      settle(sub.waiters, error);
    }
    for (const r of this.#refreshes.values()) {
      clearTimeout(r.timer);
      r.reject(error);
    }
    this.#refreshes.clear();
    for (const r of [...this.#requests.values()]) this.#settleRequest(r, error);
    this[EMIT]("stopped", info);
  }

  #isOpen() {
    return this.#state === "open" && this.#ws !== null && this.#ws.readyState === OPEN;
  }

  #send(frame) {
    try {
      this.#ws.send(frame);
      return true;
    } catch {
      return false; // closing: the next connection sends it again
    }
  }

  #usable(room) {
    if (this.#state === "closed") return this.#closedError();
    if (typeof room !== "string" || !ROOM.test(room)) {
      return new FanoutError("bad_room", "room must be 1-128 characters of A-Z a-z 0-9 _ . : @ -", {
        room: String(room),
      });
    }
    return null;
  }

  #closedError() {
    return new FanoutError("closed", this.#stopInfo?.reason ?? "client closed");
  }

  // -- sending -------------------------------------------------------------------------

  #sendSubscribe(sub, since, purpose) {
    clearTimeout(sub.timer);
    sub.timer = null;
    const frame = { type: "subscribe", room: sub.name };
    if (since) {
      frame.since = since;
      // If the connection drops before the answer, resume from here.
      sub.epoch = since.epoch;
      sub.offset = since.offset;
    }
    sub.sentOn = this.#connection;
    sub.awaiting = true;
    sub.historyGap = false;
    this.#unanswered.push({ sub, since, purpose });
    this.#send(JSON.stringify(frame));
  }

  #sendPublish(p) {
    clearTimeout(p.timer);
    p.sentOn = this.#connection;
    if (!this.#send(p.frame)) return;
    const ws = this.#ws;
    const watch = () => {
      p.timer = null;
      if (ws !== this.#ws || this.#pending.get(p.id) !== p || p.sentOn !== this.#connection) return;
      // Still uploading (a large image on a slow link): not a dead connection.
      if (ws.bufferedAmount > 0) p.timer = setTimeout(watch, this.#publishTimeoutMs);
      else this.#drop(`no answer to publish ${p.id} within ${this.#publishTimeoutMs} ms`);
    };
    p.timer = setTimeout(watch, this.#publishTimeoutMs);
  }

  #sendRequest(r) {
    r.sentOn = this.#connection;
    this.#send(r.frame);
  }

  #sendRefresh(r) {
    clearTimeout(r.timer);
    r.sentOn = this.#connection;
    this.#send(JSON.stringify({ type: "auth", token: r.token, id: r.id }));
  }

  /** After a retryable error: send again after a backoff delay (a new connection sends at once). */
  #retryLater(item, resend) {
    clearTimeout(item.timer);
    item.sentOn = 0;
    const delay = this.#delay(item.errors++);
    item.timer = setTimeout(() => {
      item.timer = null;
      if (this.#isOpen() && item.sentOn !== this.#connection) resend();
    }, delay);
    return delay;
  }

  #failPublish(p, error) {
    clearTimeout(p.timer);
    if (this.#pending.get(p.id) === p) this.#pending.delete(p.id);
    p.reject(error);
  }

  // -- receiving -----------------------------------------------------------------------

  #onFrame(raw) {
    let frame;
    try {
      frame = decodeFrame(raw);
    } catch (err) {
      this[EMIT]("error", { code: "malformed_frame", reason: err.message });
      // A broken answer still answers its request: fail it now, not at its timeout.
      const r = err.id === undefined ? undefined : this.#requests.get(err.id);
      if (r) this.#settleRequest(r, new FanoutError("malformed_frame", err.message, r));
      return;
    }
    switch (frame.type) {
      case "message":
        return frame.ephemeral === true ? this.#onEphemeral(frame) : this.#onMessage(frame);
      case "subscribed":
        return this.#onSubscribed(frame);
      case "gap":
        return this.#onGap(frame);
      case "ack":
        return this.#onAck(frame);
      case "error":
        return this.#onError(frame);
      case "authorized":
        return this.#onAuthorized(frame);
      case "unsubscribed":
        return this.#onUnsubscribed(frame);
      case "join":
      case "leave":
        return this.#onMember(frame);
      case "presence":
      case "presence_stats":
      case "history":
        return this.#onAnswer(frame);
      default:
        return undefined; // a newer hub's frame: ignored
    }
  }

  #onSubscribed(f) {
    if (f.room.startsWith("@")) return this.#onPersonal(f);
    const i = this.#unanswered.findIndex((r) => r.sub.name === f.room);
    const request = i >= 0 ? this.#unanswered.splice(i, 1)[0] : null;
    const sub = this.#subs.get(f.room);
    if (!sub || (request && request.sub !== sub)) return; // unsubscribed meanwhile
    if (!request) {
      // Unasked: the room's history was reset under a live subscription.
      if (f.epoch !== sub.epoch) this.#reset(sub, f, sub.epoch);
      return;
    }
    sub.awaiting = false;
    const since = request.since;
    if (since && since.epoch === f.epoch && (f.recovered || since.offset <= f.offset)) {
      // Everything after `since` follows; if not recovered, a `gap` comes first.
      sub.historyGap = request.purpose === "history" && !f.recovered;
      const recovered = f.recovered && !sub.reset;
      return this.#confirmed(sub, { ...f, recovered });
    }
    if (!since) {
      sub.epoch = f.epoch;
      sub.offset = f.offset;
      if (sub.history > 0 && f.offset > 0) {
        const from = Math.max(0, f.offset - sub.history);
        return this.#sendSubscribe(sub, { epoch: f.epoch, offset: from }, "history");
      }
      return this.#confirmed(sub, f);
    }
    // Another epoch, or history behind what we had: what we knew is no longer valid.
    this.#reset(sub, f, since.epoch);
  }

  /** The hub's announcement of the personal room (it subscribed this connection). */
  #onPersonal(f) {
    if (f.room !== this.#userRoom) {
      // Only the connection's first announcement names the personal room.
      if (this.#personalAnnounced) return;
      if (this.#userRoom !== null) this.#subs.delete(this.#userRoom);
      this.#userRoom = f.room;
      this.#subs.set(f.room, {
        name: f.room,
        personal: true,
        epoch: null,
        offset: 0,
        history: 0,
        sentOn: 0,
        awaiting: false,
        confirmed: null,
        reset: false,
        historyGap: false,
        errors: 0,
        timer: null,
        waiters: [],
      });
      this[EMIT]("userRoom", { room: f.room });
    }
    this.#personalAnnounced = true;
    const sub = this.#subs.get(f.room);
    if (sub.epoch === null || (sub.epoch === f.epoch && sub.offset <= f.offset)) {
      // First, or resumed from `user_since`: replay (after a `gap` if not recovered).
      if (sub.epoch === null) [sub.epoch, sub.offset] = [f.epoch, f.offset];
      return this.#confirmed(sub, f);
    }
    // A new epoch (or history behind what we had): the hub replays nothing of it, and
    // the client cannot subscribe here to read it from its start (`history` can).
    this.#stats.resets++;
    const previousEpoch = sub.epoch;
    [sub.epoch, sub.offset] = [f.epoch, f.offset];
    this.room(sub.name)[EMIT]("reset", { room: sub.name, epoch: f.epoch, offset: f.offset, previousEpoch });
    this.#confirmed(sub, { ...f, recovered: false });
  }

  #onUnsubscribed(f) {
    const sub = this.#subs.get(f.room);
    // Unknown; or about the subscription before a subscribe still out, which the hub
    // handled after this: that subscribe's answer decides.
    if (!sub || sub.awaiting) return;
    this.#subs.delete(f.room);
    clearTimeout(sub.timer);
    if (f.room === this.#userRoom) this.#userRoom = null;
    const reason = f.reason || "unsubscribed by the hub";
    settle(sub.waiters, new FanoutError("unsubscribed", reason, { room: f.room }));
    this.room(f.room)[EMIT]("unsubscribed", { room: f.room, reason });
  }

  #onMember(f) {
    if (!this.#subs.has(f.room)) return;
    this.room(f.room)[EMIT](f.type, { room: f.room, member: member(f.member) });
  }

  #onAnswer(f) {
    const r = f.id === undefined ? undefined : this.#requests.get(f.id);
    if (!r) return; // a late answer to a request already settled
    if (r.type !== f.type || r.room !== f.room) {
      const reason = `${f.type} of ${f.room} answers ${r.type} of ${r.room}`;
      return this.#settleRequest(r, new FanoutError("malformed_frame", reason, r));
    }
    const { room } = f;
    if (f.type === "presence") return this.#settleRequest(r, null, { room, members: f.members.map(member) });
    if (f.type === "presence_stats") {
      return this.#settleRequest(r, null, { room, connections: f.connections, users: f.users });
    }
    const messages = f.messages.map((m) => ({ room, epoch: f.epoch, offset: m.offset, data: m.data }));
    this.#settleRequest(r, null, { room, epoch: f.epoch, latest: f.latest, firstKept: f.first_kept, messages });
  }

  #reset(sub, f, previousEpoch) {
    this.#stats.resets++;
    sub.reset = true;
    sub.epoch = f.epoch;
    sub.offset = f.offset;
    this.room(sub.name)[EMIT]("reset", {
      room: sub.name,
      epoch: f.epoch,
      offset: f.offset,
      previousEpoch,
    });
    if (f.offset > 0) {
      // Everything in the new epoch is new to us: read it from the start.
      this.#sendSubscribe(sub, { epoch: f.epoch, offset: 0 }, "replay");
    } else if (!sub.awaiting) {
      this.#confirmed(sub, { ...f, recovered: false });
    }
  }

  #confirmed(sub, f) {
    sub.errors = 0;
    sub.reset = false;
    const event = { room: sub.name, epoch: f.epoch, offset: f.offset, recovered: f.recovered };
    sub.confirmed = event;
    const waiters = sub.waiters;
    sub.waiters = [];
    for (const w of waiters) w.resolve(event);
    this.room(sub.name)[EMIT]("subscribed", event);
  }

  #onMessage(f) {
    const sub = this.#subs.get(f.room);
    // While a subscribe is out, messages of the previous subscription are replayed after it.
    if (!sub || sub.awaiting || f.epoch !== sub.epoch) return;
    if (f.offset <= sub.offset) {
      this.#stats.duplicates++;
      return;
    }
    sub.historyGap = false;
    if (f.offset > sub.offset + 1) {
      // Offsets skipped without a `gap`: say it, never a silent hole.
      this.#gap(sub, sub.offset + 1, f.offset - 1, false);
    }
    sub.offset = f.offset;
    this.room(sub.name)[EMIT]("message", {
      room: f.room,
      epoch: f.epoch,
      offset: f.offset,
      data: f.data,
    });
  }

  /** Not stored, no epoch nor offset: outside positions, gaps and duplicates. */
  #onEphemeral(f) {
    if (!this.#subs.has(f.room)) return;
    this.room(f.room)[EMIT]("ephemeral", { room: f.room, data: f.data });
  }

  #onGap(f) {
    const sub = this.#subs.get(f.room);
    if (!sub || sub.awaiting || f.epoch !== sub.epoch || f.to <= sub.offset) return;
    const history = sub.historyGap;
    sub.historyGap = false;
    // Everything after what was delivered up to `to` is missing, whatever `from` says.
    const from = sub.offset + 1;
    sub.offset = f.to;
    this.#gap(sub, from, f.to, history);
  }

  #gap(sub, from, to, history) {
    if (!history) this.#stats.gaps++;
    this.room(sub.name)[EMIT]("gap", { room: sub.name, epoch: sub.epoch, from, to, history });
  }

  #onAck(f) {
    if (f.ephemeral === true) {
      const e = this.#ephemeral.get(f.id);
      if (e && e.room === f.room) this.#settleEphemeral(e, null, { id: f.id, room: f.room, ephemeral: true });
      return;
    }
    const p = this.#pending.get(f.id);
    if (!p || p.room !== f.room) return; // a late answer to a publish already settled
    clearTimeout(p.timer);
    this.#pending.delete(p.id);
    p.resolve({ id: f.id, room: f.room, epoch: f.epoch, offset: f.offset });
  }

  #onAuthorized(f) {
    const r = f.id === undefined ? undefined : this.#refreshes.get(f.id);
    if (!r) return;
    this.#refreshes.delete(r.id);
    this.#token = r.token;
    r.resolve({ sub: f.sub ?? null, exp: f.exp });
  }

  #onError(f) {
    const error = { code: f.code, reason: f.reason };
    if (f.id !== undefined) {
      const p = this.#pending.get(f.id);
      if (p) {
        if (!RETRYABLE.has(f.code)) {
          return this.#failPublish(p, new FanoutError(f.code, f.reason, p));
        }
        const inMs = this.#retryLater(p, () => this.#sendPublish(p));
        return this[EMIT]("retry", { ...error, id: p.id, room: p.room, inMs });
      }
      const r = this.#refreshes.get(f.id);
      if (r) {
        if (RETRYABLE.has(f.code)) return void this.#retryLater(r, () => this.#sendRefresh(r));
        this.#refreshes.delete(r.id);
        return r.reject(new FanoutError(f.code, f.reason, { id: r.id }));
      }
      const q = this.#requests.get(f.id);
      if (q) return this.#settleRequest(q, new FanoutError(f.code, f.reason, q));
      const e = this.#ephemeral.get(f.id);
      if (e) return this.#settleEphemeral(e, new FanoutError(f.code, f.reason, e));
      return this[EMIT]("error", { ...error, id: f.id });
    }
    // An unsubscribe that crossed a subscribe the hub had refused.
    if (f.code === "not_subscribed") return undefined;
    // Answers come in order, and only subscribes go out without an id.
    const request = this.#unanswered.shift();
    const sub = request && this.#subs.get(request.sub.name);
    if (!request || sub !== request.sub) {
      if (!request) this[EMIT]("error", error);
      return undefined;
    }
    sub.awaiting = false;
    if (RETRYABLE.has(f.code)) {
      this.#retryLater(sub, () => this.#sendSubscribe(sub, request.since, request.purpose));
      return this.room(sub.name)[EMIT]("retry", { ...error, room: sub.name });
    }
    this.#subs.delete(sub.name);
    settle(sub.waiters, new FanoutError(f.code, f.reason, { room: sub.name }));
    this.room(sub.name)[EMIT]("error", { ...error, room: sub.name });
  }
}

// -- frames ------------------------------------------------------------------------------

/** The frame of a publish: a JSON string, or a binary envelope for bytes. */
function encodePublish(room, data, id, ephemeral) {
  const head = ephemeral ? { type: "publish", room, id, ephemeral: true } : { type: "publish", room, id };
  const bytes = asBytes(data);
  if (bytes === null) {
    if (data === undefined) throw new TypeError("publish needs data (null is a value)");
    return JSON.stringify({ ...head, data });
  }
  const header = encoder.encode(JSON.stringify(head));
  const length = new Uint8Array(4);
  new DataView(length.buffer).setUint32(0, header.length);
  if (typeof Blob === "function" && bytes instanceof Blob) {
    // The browser reads the Blob when it sends: a large file is never copied into JS memory.
    return new Blob([length, header, bytes]);
  }
  const frame = new Uint8Array(4 + header.length + bytes.length);
  frame.set(length, 0);
  frame.set(header, 4);
  frame.set(bytes, 4 + header.length);
  return frame;
}

function asBytes(data) {
  if (data instanceof Uint8Array) return data;
  if (data instanceof ArrayBuffer) return new Uint8Array(data);
  if (ArrayBuffer.isView(data)) return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
  if (typeof Blob === "function" && data instanceof Blob) return data;
  return null;
}

class Malformed extends Error {
  constructor(message, id) {
    super(message);
    this.id = id; // the request a broken answer answers, if it named one
  }
}

/** A frame from the hub, checked: anything else throws Malformed. */
function decodeFrame(raw) {
  let frame;
  if (typeof raw === "string") {
    frame = parseObject(raw);
  } else {
    const bytes = raw instanceof ArrayBuffer ? new Uint8Array(raw) : ArrayBuffer.isView(raw) ? new Uint8Array(raw.buffer, raw.byteOffset, raw.byteLength) : null;
    if (bytes === null) throw new Malformed("a frame of an unknown kind (set binaryType to arraybuffer)");
    if (bytes.length < 4) throw new Malformed("binary frame shorter than its 4-byte header length");
    const n = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength).getUint32(0);
    if (n > bytes.length - 4) throw new Malformed(`binary header length ${n} exceeds the frame`);
    let text;
    try {
      text = strictDecoder.decode(bytes.subarray(4, 4 + n));
    } catch {
      throw new Malformed("binary header is not UTF-8");
    }
    frame = parseObject(text);
    frame.data = bytes.subarray(4 + n);
  }
  const type = frame.type;
  if (typeof type !== "string") throw new Malformed("no string 'type'");
  // Ephemeral messages and their acks carry no epoch nor offset.
  const need = frame.ephemeral === true && EPHEMERAL[type] ? EPHEMERAL[type] : FIELDS[type];
  if (need) {
    const id = typeof frame.id === "string" ? frame.id : undefined;
    for (const [field, ok] of Object.entries(need)) {
      if (!ok(frame[field])) throw new Malformed(`${type}: bad or missing '${field}'`, id);
    }
    if (type === "message" && !Object.hasOwn(frame, "data")) throw new Malformed("message without 'data'");
    if (type === "gap" && frame.to < frame.from) throw new Malformed("gap: 'to' before 'from'");
    if (type === "history") frame.messages = historyMessages(frame.messages, id);
  }
  return frame;
}

/** A history answer's messages, checked, in offset order, base64 data as bytes. */
function historyMessages(items, id) {
  let last = 0;
  return items.map((item) => {
    if (item === null || typeof item !== "object" || !isOffset(item.offset) || item.offset <= last || !Object.hasOwn(item, "data")) {
      throw new Malformed("history: a message without an increasing 'offset' or 'data'", id);
    }
    last = item.offset;
    if (item.encoding === undefined) return { offset: item.offset, data: item.data };
    if (item.encoding !== "base64" || !isBase64(item.data)) {
      throw new Malformed(`history: data in encoding ${String(item.encoding)} that does not decode`, id);
    }
    return { offset: item.offset, data: Uint8Array.from(atob(item.data), (c) => c.charCodeAt(0)) };
  });
}

/** A member of a presence answer or a join/leave event, as the application sees it. */
function member(m) {
  return { user: m.user, conn: m.conn, node: m.node, joinedAt: m.joined_at, info: m.info ?? null };
}

function parseObject(text) {
  let value;
  try {
    value = JSON.parse(text);
  } catch {
    throw new Malformed("not JSON");
  }
  if (value === null || typeof value !== "object" || Array.isArray(value)) {
    throw new Malformed("a frame must be a JSON object");
  }
  return value;
}

const isString = (v) => typeof v === "string";
const isCount = (v) => Number.isSafeInteger(v) && v >= 0;
const isOffset = (v) => Number.isSafeInteger(v) && v >= 1;
const optional = (check) => (v) => v === undefined || check(v);
const isBase64 = (v) => typeof v === "string" && v.length % 4 === 0 && /^[A-Za-z0-9+/]*={0,2}$/.test(v);
const isMember = (m) =>
  m !== null &&
  typeof m === "object" &&
  (m.user === null || isString(m.user)) &&
  isString(m.conn) &&
  isString(m.node) &&
  Number.isFinite(m.joined_at);
const FIELDS = {
  message: { room: isString, epoch: isString, offset: isOffset },
  subscribed: { room: isString, epoch: isString, offset: isCount, recovered: (v) => typeof v === "boolean" },
  gap: { room: isString, epoch: isString, from: isOffset, to: isOffset },
  ack: { id: isString, room: isString, epoch: isString, offset: isOffset },
  error: { code: isString, reason: isString, id: optional(isString) },
  authorized: { id: optional(isString), exp: (v) => typeof v === "number", sub: optional((v) => v === null || isString(v)) },
  unsubscribed: { room: isString, reason: optional(isString) },
  join: { room: isString, member: isMember },
  leave: { room: isString, member: isMember },
  presence: { room: isString, id: optional(isString), members: (v) => Array.isArray(v) && v.every(isMember) },
  presence_stats: { room: isString, id: optional(isString), connections: isCount, users: isCount },
  history: {
    room: isString,
    id: optional(isString),
    epoch: isString,
    latest: isCount,
    first_kept: isCount,
    messages: Array.isArray,
  },
};

const EPHEMERAL = {
  message: { room: isString },
  ack: { id: isString, room: isString },
};

// -- helpers -----------------------------------------------------------------------------

/** Node `ws` only: read a refused handshake's status and reason (browsers hide both). */
function watchRefusal(ws, link) {
  if (typeof ws.on !== "function") return;
  ws.on("unexpected-response", (req, res) => {
    const status = res.statusCode;
    const chunks = [];
    let size = 0;
    const done = () => {
      // 4xx but "come back later": retried like a network failure.
      if (status >= 400 && status < 500 && ![408, 425, 429].includes(status)) {
        link.refusal = { reason: refusalReason(chunks, size) ?? `HTTP ${status}`, status };
      }
      ws.terminate();
    };
    res.on("data", (chunk) => {
      size += chunk.length;
      if (size <= MAX_REFUSAL_BODY) chunks.push(chunk);
    });
    res.on("end", done);
    res.on("error", done);
  });
}

function refusalReason(chunks, size) {
  if (size === 0 || size > MAX_REFUSAL_BODY) return null;
  try {
    const body = JSON.parse(new TextDecoder().decode(concat(chunks)));
    const reason = body?.error ?? body?.detail;
    return typeof reason === "string" && reason.trim() ? reason.trim().slice(0, 300) : null;
  } catch {
    return null;
  }
}

function concat(chunks) {
  const out = new Uint8Array(chunks.reduce((n, c) => n + c.length, 0));
  let at = 0;
  for (const c of chunks) {
    out.set(c, at);
    at += c.length;
  }
  return out;
}

function newId(prefix = "") {
  const bytes = new Uint8Array(12);
  globalThis.crypto.getRandomValues(bytes);
  return prefix + Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

/** A refusal of a room the server manages (`@...`: the personal rooms), or null. */
function serverManaged(room) {
  if (typeof room !== "string" || !room.startsWith("@")) return null;
  return new FanoutError("forbidden", "rooms starting with @ are managed by the server", { room });
}

function settle(waiters, error) {
  for (const w of waiters.splice(0)) w.reject(error);
}

/** The promise, marked as handled: ignoring a failed publish must not crash Node. */
function handled(promise) {
  promise.catch(() => {});
  return promise;
}

function errorName(err) {
  return err && typeof err.name === "string" ? err.name : "Error";
}
