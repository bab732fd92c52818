/** Type declarations for fanout.js, the `fanout.v1` client. */

/** Any JSON value (what a text publish carries). */
export type Json = null | boolean | number | string | Json[] | { [key: string]: Json };

/** What `publish` accepts: a JSON value, or bytes sent as a binary frame. */
export type PublishData = Json | Uint8Array | ArrayBuffer | ArrayBufferView | Blob;

/** What a `message` carries: the JSON value, or the bytes of a binary publish. */
export type MessageData = Json | Uint8Array;

/** A place in a room's history: everything up to `offset` of `epoch`. */
export interface Position {
  epoch: string;
  offset: number;
}

export interface Ack {
  id: string;
  room: string;
  epoch: string;
  offset: number;
}

/** The hub passed an ephemeral publish on to the room's current subscribers: nothing
 * stored, so no epoch nor offset. */
export interface EphemeralAck {
  id: string;
  room: string;
  ephemeral: true;
}

/** The hub confirmed a subscription (once per connection). */
export interface SubscribedEvent {
  room: string;
  epoch: string;
  /** The room's latest offset at subscribe time; live messages follow it. */
  offset: number;
  /** True when everything after the position resumed from follows, without holes. */
  recovered: boolean;
}

export interface MessageEvent {
  room: string;
  epoch: string;
  offset: number;
  data: MessageData;
}

/** An ephemeral message (typing indicators, cursors): not stored, no epoch nor offset.
 * Only the room's subscribers of that moment get it; never replayed, and not counted in
 * positions, gaps or duplicates. */
export interface EphemeralEvent {
  room: string;
  data: MessageData;
}

/** Offsets `from`..`to` (inclusive) of `epoch` will never be delivered. */
export interface GapEvent {
  room: string;
  epoch: string;
  from: number;
  to: number;
  /** True when the hole is in the earlier messages asked for with `history` on joining
   * (the hub no longer keeps them), not in messages published while this client
   * followed the room. */
  history: boolean;
}

/** The room's history started over (hub restarted, data lost): a new epoch. Messages
 * of the new epoch are then read from its start; those published before it in the
 * old epoch while this client was away may be lost. */
export interface ResetEvent {
  room: string;
  epoch: string;
  offset: number;
  previousEpoch: string | null;
}

/** An `error` from the hub, or a frame the client could not read (`malformed_frame`). */
export interface ErrorEvent {
  code: string;
  reason: string;
  id?: string;
  room?: string;
}

/** A publish (client) or subscribe (room) will be sent again after `inMs`. */
export interface RetryEvent {
  code: string;
  reason: string;
  room: string;
  id?: string;
  inMs?: number;
}

export interface ConnectingEvent {
  /** Attempts since the last open connection, this one included. */
  attempt: number;
}

export interface ConnectedEvent {
  /** 1 for the client's first open connection, then 2, 3... */
  connection: number;
}

export interface DisconnectedEvent {
  /** The close code (1006: no close frame, or a handshake that failed). */
  code: number;
  reason: string;
  /** False when the connection never opened: the hub is unreachable, or (browsers
   * cannot tell) refused the handshake. */
  opened: boolean;
  /** When the client tries again, or null when it stops. */
  retryInMs: number | null;
}

/** The client stopped for good. */
export interface StoppedEvent {
  reason: string;
  /** The close code, for a policy close (1008: token expired...) or a kick (4003). */
  code?: number;
  /** The HTTP status of a refused handshake (Node `ws` only; browsers hide it). */
  status?: number;
}

/** The server ended this subscription; the room and its position are forgotten and it
 * is not resubscribed after a reconnect. */
export interface UnsubscribedEvent {
  room: string;
  reason: string;
}

/** One connection present in a room. */
export interface Member {
  /** The user id, or null for an anonymous connection. */
  user: string | null;
  /** The connection's id, unique across the hub's nodes. */
  conn: string;
  node: string;
  /** When it joined the room, in Unix milliseconds (`new Date(joinedAt)`). */
  joinedAt: number;
  /** What the application shows about it. */
  info: Json;
}

/** A member joined or left (rooms whose presence events are on). Not a message: no
 * offset, not replayed after a reconnect. */
export interface MemberEvent {
  room: string;
  member: Member;
}

export interface RoomEvents {
  subscribed: SubscribedEvent;
  message: MessageEvent;
  ephemeral: EphemeralEvent;
  gap: GapEvent;
  reset: ResetEvent;
  /** The hub refused the subscribe for good; the room is forgotten. */
  error: ErrorEvent;
  retry: RetryEvent;
  unsubscribed: UnsubscribedEvent;
  join: MemberEvent;
  leave: MemberEvent;
}

/** The hub announced the personal room it subscribed this client to; add listeners to
 * `client.userRoom()` here and they see its first `subscribed` and every message. */
export interface UserRoomEvent {
  /** `@<user>` (or `@` and a digest, for a user id that is no valid room name). */
  room: string;
}

export interface ClientEvents {
  connecting: ConnectingEvent;
  connected: ConnectedEvent;
  disconnected: DisconnectedEvent;
  stopped: StoppedEvent;
  userRoom: UserRoomEvent;
  /** Errors that answer nothing the client waits for, and unreadable frames. */
  error: ErrorEvent;
  retry: RetryEvent;
}

export type Unsubscribe = () => void;

declare class Emitter<Events> {
  /** Add a listener; returns a function that removes it. */
  on<K extends keyof Events>(type: K, listener: (event: Events[K]) => void): Unsubscribe;
  off<K extends keyof Events>(type: K, listener: (event: Events[K]) => void): void;
}

export interface SubscribeOptions {
  /** On the first subscribe, also deliver up to this many (1-1000) earlier messages:
   * read with one `history` request, then the room is subscribed from that answer's
   * latest offset, so none comes twice and none published in between is skipped.
   * Ignored with `since`. */
  history?: number;
  /** Start after this position (e.g. saved from an earlier session). */
  since?: Position;
}

export interface PublishOptions {
  /** 1-128 characters; generated when absent. Reuse it to retry the same publish. */
  id?: string;
  /** Not stored, no offset, for the room's current subscribers only (their `ephemeral`
   * event). Sent once and never re-sent: rejects with `dropped` when no connection is
   * open, or it ends (or stays silent for `publishTimeoutMs`) before the hub answers,
   * and with the hub's code for any refusal (`rate_limited` included). */
  ephemeral?: boolean;
}

export interface EphemeralPublishOptions extends PublishOptions {
  ephemeral: true;
}

export interface RequestOptions {
  /** Reject with `timeout` after this long (default: the client's `requestTimeoutMs`).
   * The request waits through reconnects, and is sent again on a new connection. */
  timeoutMs?: number;
}

export interface HistoryOptions extends RequestOptions {
  /** How many messages, 1-1000 (default 100). */
  limit?: number;
  /** Without it, the last `limit` messages; with it, the first `limit` after this offset. */
  since?: number;
}

export interface Presence {
  room: string;
  /** One per connection: a user with two tabs is two members. */
  members: Member[];
}

export interface PresenceStats {
  room: string;
  connections: number;
  /** Distinct users (anonymous connections count as connections only). */
  users: number;
}

export interface History {
  room: string;
  /** Offsets are comparable within an epoch only. */
  epoch: string;
  /** The room's latest offset. */
  latest: number;
  /** The oldest offset the hub still keeps. */
  firstKept: number;
  /** In offset order; binary data as Uint8Array. */
  messages: MessageEvent[];
}

export interface BackoffOptions {
  /** First delay (default 100 ms). */
  initialMs?: number;
  /** Largest delay (default 5000 ms); a connection that lasted this long starts over. */
  maxMs?: number;
  /** Fraction of each delay that is random (default 0.5). */
  jitter?: number;
}

export interface ClientOptions {
  /** The WebSocket constructor (default: the global one), e.g. `ws`'s in Node 20. */
  WebSocket?: unknown;
  /** Sent as the `token` query parameter of every handshake (browsers cannot set
   * headers). A function is called before each connection attempt. */
  token?: string | null | (() => string | null | Promise<string | null>);
  /** The query parameter's name (the hub's `auth_query_param`, default `token`). */
  tokenParam?: string;
  backoff?: BackoffOptions;
  /** A publish unanswered this long (once sent) means the connection is dead: it is
   * dropped and the publish re-sent on the next one (default 10000). */
  publishTimeoutMs?: number;
  /** Larger publishes are refused locally with `too_big` (default 16 MiB, the hub's). */
  maxMessageBytes?: number;
  /** How long `presence`, `presenceStats` and `history` wait for their answer
   * (default 10000). */
  requestTimeoutMs?: number;
}

export type ClientState = "connecting" | "open" | "waiting" | "closed";

export interface ClientStats {
  /** Connection attempts. */
  attempts: number;
  /** Connections that opened. */
  connections: number;
  /** Messages dropped because they were already delivered. */
  duplicates: number;
  /** Gaps reported (not counting `history` ones). */
  gaps: number;
  /** New epochs reported. */
  resets: number;
  /** Publishes not answered yet. */
  pending: number;
}

export class FanoutError extends Error {
  constructor(code: string, reason: string, where?: { room?: string; id?: string });
  /** The hub's error code (`forbidden`, `bad_room`...) or the client's: `too_big`,
   * `refused`, `kicked`, `closed`, `unsubscribed`, `timeout` (a request unanswered),
   * `malformed_frame` (an answer that does not read), `dropped` (an ephemeral publish
   * not known to be passed on; never re-sent). */
  readonly code: string;
  readonly reason: string;
  readonly room?: string;
  readonly id?: string;
}

export class Room extends Emitter<RoomEvents> {
  readonly name: string;
  /** The last position delivered, or null before the first `subscribed`. */
  readonly position: Position | null;
  subscribe(options?: SubscribeOptions): Promise<SubscribedEvent>;
  unsubscribe(): void;
  publish(data: PublishData, options: EphemeralPublishOptions): Promise<EphemeralAck>;
  publish(data: PublishData, options?: PublishOptions & { ephemeral?: false }): Promise<Ack>;
  presence(options?: RequestOptions): Promise<Presence>;
  presenceStats(options?: RequestOptions): Promise<PresenceStats>;
  history(options?: HistoryOptions): Promise<History>;
}

export class FanoutClient extends Emitter<ClientEvents> {
  /** Starts connecting at once (after the current task). */
  constructor(url: string | URL, options?: ClientOptions);
  readonly state: ClientState;
  /** The current WebSocket, for debugging; send nothing through it. */
  readonly socket: WebSocket | null;
  /** Publishes not answered yet. */
  readonly pending: number;
  readonly stats: ClientStats;
  /** Why the client stopped, or null while it runs. */
  readonly stopped: StoppedEvent | null;
  /** The handle of a room (the same object for a name); subscribes to nothing. */
  room(name: string): Room;
  /** The personal room's handle (`@<user>`, subscribed by the hub, resumed after every
   * reconnect), or null before the `userRoom` event or for an anonymous identity. */
  userRoom(): Room | null;
  position(room: string): Position | null;
  /** Subscribe (resumed after every reconnect); resolves on the hub's confirmation,
   * rejects with a FanoutError if the hub refuses the room (`forbidden` for any `@`
   * room, which the server manages). */
  subscribe(room: string, options?: SubscribeOptions): Promise<SubscribedEvent>;
  /** Throws a FanoutError `forbidden` for an `@` room. */
  unsubscribe(room: string): void;
  /** Resolves with the ack; re-sent with the same id until the hub answers; rejects
   * with a FanoutError the hub's refusal (or `too_big`, `closed`, `refused`).
   * With `ephemeral: true`: sent once, resolves with an EphemeralAck, or rejects with
   * the hub's refusal or `dropped`. */
  publish(room: string, data: PublishData, options: EphemeralPublishOptions): Promise<EphemeralAck>;
  publish(room: string, data: PublishData, options?: PublishOptions & { ephemeral?: false }): Promise<Ack>;
  /** Who is in `room` now; rejects with the hub's refusal (`forbidden`: not granted or
   * presence off for the room; `bad_room`; `unavailable`: try later), `timeout`,
   * `malformed_frame`. */
  presence(room: string, options?: RequestOptions): Promise<Presence>;
  presenceStats(room: string, options?: RequestOptions): Promise<PresenceStats>;
  /** A room's messages without subscribing; changes no subscription nor position. */
  history(room: string, options?: HistoryOptions): Promise<History>;
  /** Replace the live connection's token (same subject); later handshakes use it. */
  refreshToken(token: string): Promise<{ sub: string | null; exp: number }>;
  /** Skip the backoff wait and connect now. */
  reconnect(): void;
  /** Stop for good; resolves once the socket is closed. */
  close(): Promise<void>;
}
