// The personal room, server-side unsubscribes, kicks, presence and history requests,
// against a raw server that sends exactly the frames under test (good and broken ones):
// the client's bookkeeping, without a hub deciding anything.
import assert from "node:assert/strict";
import { test } from "node:test";

import { client, next, rawServer, record, until } from "./support.js";

const ALICE = { user: "alice", conn: "n1-1", node: "n1", joined_at: 1700000000500, info: { nick: "al" } };
const send = (ws, frame) => ws.send(JSON.stringify(frame));
const subscribed = (room, epoch, offset, recovered = false) => ({ type: "subscribed", room, epoch, offset, recovered });
const message = (room, epoch, offset, data) => ({ type: "message", room, epoch, offset, data });

test("the personal room the server announces is tracked, and resumed with user_since after a reconnect", async (t) => {
  const server = await rawServer(t, ({ ws }) => {
    if (server.connections.length === 1) {
      send(ws, subscribed("@alice", "e1", 0));
      for (const offset of [1, 2, 2]) send(ws, message("@alice", "e1", offset, `m${offset}`));
      setTimeout(() => ws.close(1001, "going away"), 50);
    } else {
      // Resumed from user_since: the replay repeats offset 2, which is dropped.
      send(ws, subscribed("@alice", "e1", 4, true));
      for (const offset of [2, 3, 4]) send(ws, message("@alice", "e1", offset, `m${offset}`));
    }
  });
  const c = client(t, server.url);
  assert.equal(c.userRoom(), null);
  // Listeners added when the room is announced see everything: its messages follow.
  const seen = [];
  const confirmations = [];
  c.on("userRoom", ({ room }) => {
    assert.equal(room, "@alice");
    c.userRoom().on("message", (m) => seen.push(m));
    c.userRoom().on("subscribed", (s) => confirmations.push(s));
  });
  await until(() => seen.length === 4, "4 messages of the personal room");
  const personal = c.userRoom();
  assert.equal(personal, c.room("@alice"));

  assert.deepEqual(
    seen.map((m) => [m.offset, m.data]),
    [[1, "m1"], [2, "m2"], [3, "m3"], [4, "m4"]],
  );
  const [first, second] = server.connections;
  assert.equal(first.url.searchParams.get("user_since"), null);
  assert.equal(second.url.searchParams.get("user_since"), "e1:2");
  assert.deepEqual(
    confirmations.map((s) => [s.offset, s.recovered]),
    [
      [0, false],
      [4, true],
    ],
  );
  assert.deepEqual(personal.position, { epoch: "e1", offset: 4 });
  assert.equal(c.stats.duplicates, 2);
  // The client never subscribes it itself: the hub refuses any @ room from a client.
  assert.deepEqual([...first.frames, ...second.frames], []);
});

test("a personal room in a new epoch is reported as a reset, and a second @ room is ignored", async (t) => {
  const server = await rawServer(t, ({ ws }) => {
    if (server.connections.length === 1) {
      send(ws, subscribed("@alice", "e1", 5));
      setTimeout(() => ws.close(1012, "restart"), 50);
    } else {
      send(ws, subscribed("@alice", "e2", 3));
      send(ws, subscribed("@mallory", "x", 0));
      send(ws, message("@mallory", "x", 1, "not ours"));
      send(ws, message("@alice", "e2", 4, "new epoch"));
    }
  });
  const c = client(t, server.url);
  await next(c, "userRoom");
  const reset = next(c.userRoom(), "reset");
  const got = await next(c.userRoom(), "message");
  assert.deepEqual(await reset, { room: "@alice", epoch: "e2", offset: 3, previousEpoch: "e1" });
  assert.deepEqual([got.epoch, got.offset, got.data], ["e2", 4, "new epoch"]);
  assert.equal(c.userRoom().name, "@alice");
  assert.equal(c.position("@mallory"), null);
  assert.equal(server.connections[1].url.searchParams.get("user_since"), "e1:5");
});

test("rooms starting with @ are refused locally: the server manages them", async (t) => {
  const server = await rawServer(t, () => {});
  const c = client(t, server.url);
  await assert.rejects(c.subscribe("@bob"), { code: "forbidden", room: "@bob" });
  await assert.rejects(c.publish("@bob", "hi"), { code: "forbidden" });
  assert.throws(() => c.unsubscribe("@bob"), { code: "forbidden" });
  await next(c, "connected");
  assert.deepEqual(server.connections[0].frames, []);
});

test("an unsubscribed from the server forgets the room; unknown rooms change nothing", async (t) => {
  const server = await rawServer(t, ({ ws, frames }) => {
    ws.on("message", () => {
      const last = frames.at(-1);
      if (last.type !== "subscribe") return;
      send(ws, subscribed(last.room, "e", 0));
      if (server.connections.length > 1) return;
      send(ws, { type: "unsubscribed", room: "nobody-asked", reason: "x" });
      send(ws, subscribed("nobody-asked", "e", 7));
      send(ws, message("nobody-asked", "e", 8, "stray"));
      send(ws, { type: "unsubscribed", room: last.room, reason: "removed by the app" });
      send(ws, message(last.room, "e", 1, "after the unsubscribe"));
      setTimeout(() => ws.close(1001, "going away"), 50);
    });
  });
  const c = client(t, server.url);
  const errors = record(c, "error");
  const news = c.room("news");
  const seen = record(news, "message");
  const gone = next(news, "unsubscribed");
  await news.subscribe();
  assert.deepEqual(await gone, { room: "news", reason: "removed by the app" });
  await next(c, "connected", ({ connection }) => connection === 2);
  await c.subscribe("other");
  assert.deepEqual(seen, []);
  assert.equal(c.position("news"), null);
  assert.equal(c.position("nobody-asked"), null);
  assert.deepEqual(
    server.connections[1].frames.map((f) => f.room),
    ["other"],
    "news is not resubscribed",
  );
  assert.deepEqual(errors, []);
});

test("a kick (4003) stops the client with the server's reason and no reconnect", async (t) => {
  const server = await rawServer(t, ({ ws }) => {
    setTimeout(() => ws.close(4003, "disconnected by the server: banned"), 50);
  });
  const c = client(t, server.url);
  const publishing = c.publish("r", "x");
  const asking = c.presence("r");
  const disconnected = next(c, "disconnected");
  const stopped = await next(c, "stopped");
  assert.deepEqual(stopped, { reason: "disconnected by the server: banned", code: 4003 });
  assert.equal((await disconnected).retryInMs, null);
  await assert.rejects(publishing, { code: "kicked", reason: "disconnected by the server: banned" });
  await assert.rejects(asking, { code: "kicked" });
  assert.equal(c.state, "closed");
  assert.equal(server.connections.length, 1);
});

/** A server answering each request with `answer(frame)` (a frame, or null for silence). */
function answering(t, answer) {
  return rawServer(t, ({ ws, frames }) => {
    ws.on("message", () => {
      const reply = answer(frames.at(-1));
      if (reply) send(ws, reply);
    });
  });
}

test("presence, presence stats and history are answered by id, binary history as bytes", async (t) => {
  const server = await answering(t, (f) => {
    if (f.type === "presence") return { type: "presence", room: f.room, id: f.id, members: [ALICE] };
    if (f.type === "presence_stats") return { type: "presence_stats", room: f.room, id: f.id, connections: 3, users: 2 };
    return {
      type: "history", room: f.room, id: f.id, epoch: "e", latest: 9, first_kept: 4,
      messages: [{ offset: 8, data: { a: 1 } }, { offset: 9, data: "AP8K", encoding: "base64" }],
    };
  });
  const c = client(t, server.url);
  const room = c.room("chat");
  assert.deepEqual(await room.presence(), {
    room: "chat",
    members: [{ user: "alice", conn: "n1-1", node: "n1", joinedAt: 1700000000500, info: { nick: "al" } }],
  });
  assert.deepEqual(await c.presenceStats("chat"), { room: "chat", connections: 3, users: 2 });
  const history = await c.history("chat", { limit: 2, since: 7 });
  assert.deepEqual(
    { ...history, messages: history.messages.map((m) => ({ ...m, data: m.data instanceof Uint8Array ? [...m.data] : m.data })) },
    {
      room: "chat", epoch: "e", latest: 9, firstKept: 4,
      messages: [
        { room: "chat", epoch: "e", offset: 8, data: { a: 1 } },
        { room: "chat", epoch: "e", offset: 9, data: [0, 255, 10] },
      ],
    },
  );
  const sent = server.connections[0].frames;
  assert.deepEqual(
    sent.map(({ id, ...rest }) => [typeof id, rest]),
    [
      ["string", { type: "presence", room: "chat" }],
      ["string", { type: "presence_stats", room: "chat" }],
      ["string", { type: "history", room: "chat", limit: 2, since: 7 }],
    ],
  );
  assert.equal(c.position("chat"), null, "history subscribes to nothing");
  await assert.rejects(c.history("chat", { limit: 0 }), RangeError);
  await assert.rejects(c.history("chat", { since: -1 }), RangeError);
});

test("a refused, malformed, mismatched or missing answer rejects its request, and only it", async (t) => {
  const server = await answering(t, (f) => {
    const id = f.id;
    switch (f.room) {
      case "refused":
        return { type: "error", code: "forbidden", reason: "presence is off here", id };
      case "malformed":
        return { type: "presence", room: f.room, id, members: [{ user: "x" }] };
      case "bad-base64":
        return { type: "history", room: f.room, id, epoch: "e", latest: 1, first_kept: 1, messages: [{ offset: 1, data: "%%", encoding: "base64" }] };
      case "unordered":
        return { type: "history", room: f.room, id, epoch: "e", latest: 2, first_kept: 1, messages: [{ offset: 2, data: 1 }, { offset: 1, data: 0 }] };
      case "mismatched":
        return { type: "presence_stats", room: f.room, id, connections: 1, users: 1 };
      case "other-id":
        return { type: "presence", room: f.room, id: "not-yours", members: [] };
      default:
        return null; // "silent"
    }
  });
  const c = client(t, server.url, { requestTimeoutMs: 300 });
  const errors = record(c, "error");
  await assert.rejects(c.presence("refused"), { code: "forbidden", reason: "presence is off here", room: "refused" });
  await assert.rejects(c.presence("malformed"), { code: "malformed_frame" });
  await assert.rejects(c.history("bad-base64"), { code: "malformed_frame" });
  await assert.rejects(c.history("unordered"), { code: "malformed_frame" });
  await assert.rejects(c.presence("mismatched"), { code: "malformed_frame" });
  const started = Date.now();
  await assert.rejects(c.presence("other-id"), { code: "timeout" });
  await assert.rejects(c.presenceStats("silent", { timeoutMs: 100 }), { code: "timeout", room: "silent" });
  assert.ok(Date.now() - started >= 390);
  assert.deepEqual(
    errors.map((e) => e.code),
    ["malformed_frame", "malformed_frame", "malformed_frame"],
  );
  assert.equal(c.state, "open");
});

test("a request asked while disconnected, or whose connection dropped, is sent on the next", async (t) => {
  const server = await rawServer(t, ({ ws, frames }) => {
    ws.on("message", () => {
      const f = frames.at(-1);
      // The first connection drops the request unanswered.
      if (server.connections.length === 1) return void ws.terminate();
      send(ws, { type: "presence_stats", room: f.room, id: f.id, connections: 1, users: 1 });
    });
  });
  const c = client(t, server.url);
  const stats = await c.presenceStats("r"); // asked before the first connection opened
  assert.deepEqual(stats, { room: "r", connections: 1, users: 1 });
  assert.equal(server.connections.length, 2);
  assert.equal(server.connections[1].frames[0].id, server.connections[0].frames[0].id);
});

test("join and leave of a subscribed room are room events; of other rooms, nothing", async (t) => {
  const server = await rawServer(t, ({ ws, frames }) => {
    ws.on("message", () => {
      const f = frames.at(-1);
      send(ws, subscribed(f.room, "e", 0));
      send(ws, { type: "join", room: "elsewhere", member: ALICE });
      send(ws, { type: "join", room: f.room, member: ALICE });
      send(ws, { type: "leave", room: f.room, member: { ...ALICE, user: null } });
    });
  });
  const c = client(t, server.url);
  const room = c.room("chat");
  const joins = record(room, "join");
  const leave = next(room, "leave");
  await room.subscribe();
  const left = await leave;
  assert.deepEqual(joins, [
    { room: "chat", member: { user: "alice", conn: "n1-1", node: "n1", joinedAt: 1700000000500, info: { nick: "al" } } },
  ]);
  assert.equal(left.member.user, null);
  assert.deepEqual(c.position("chat"), { epoch: "e", offset: 0 });
});
