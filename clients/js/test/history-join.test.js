// Joining with history (`subscribe(room, { history: N })`): one `history` request, its
// messages delivered, then one subscribe from that answer's {epoch, latest}. Against a
// raw server that answers exactly as under test, and against a real hub.
import assert from "node:assert/strict";
import { test } from "node:test";

import { client, hub, rawServer, record, until } from "./support.js";

const send = (ws, frame) => ws.send(JSON.stringify(frame));
const subscribed = (room, epoch, offset, recovered = false) => ({ type: "subscribed", room, epoch, offset, recovered });
const message = (room, epoch, offset, data) => ({ type: "message", room, epoch, offset, data });
const range = (from, to) => Array.from({ length: to - from + 1 }, (_, i) => from + i);

/** A history answer for offsets `from`..`latest` of a room in epoch "e". */
function historyOf(f, from, latest, firstKept = from) {
  const messages = range(from, latest).map((offset) => ({ offset, data: `m${offset}` }));
  return { type: "history", room: f.room, id: f.id, epoch: "e", latest, first_kept: firstKept, messages };
}

/** A raw server whose answer to each frame is `answer(frame, ws, server)`. */
async function answering(t, answer) {
  const server = await rawServer(t, ({ ws, frames }) => {
    ws.on("message", () => {
      const f = frames.at(-1);
      if (f.type === "presence_stats") send(ws, { type: "presence_stats", room: f.room, id: f.id, connections: 1, users: 1 });
      else answer(f, ws, server);
    });
  });
  return server;
}

/** Every `message` and `gap` of `room`, in the order they came. */
function deliveries(room) {
  const seen = [];
  room.on("message", (m) => seen.push(["message", m.offset, m.data]));
  room.on("gap", (g) => seen.push(["gap", g.from, g.to, g.history]));
  return seen;
}

test("the last N come from one history request, then one subscribe from its latest offset", async (t) => {
  const server = await answering(t, (f, ws) => {
    if (f.type === "history") return send(ws, historyOf(f, 11, 60, 1));
    send(ws, subscribed(f.room, "e", 61, true));
    send(ws, message(f.room, "e", 61, "m61")); // published between the answer and the subscribe
    send(ws, message(f.room, "e", 62, "m62"));
  });
  const c = client(t, server.url);
  const room = c.room("chat");
  const seen = deliveries(room);
  const confirmed = await room.subscribe({ history: 50 });
  assert.deepEqual(confirmed, { room: "chat", epoch: "e", offset: 61, recovered: true });
  await until(() => seen.length === 52, "52 messages");
  assert.deepEqual(seen, range(11, 62).map((n) => ["message", n, `m${n}`]));
  const frames = server.connections[0].frames.map(({ id, ...rest }) => rest);
  assert.deepEqual(frames, [
    { type: "history", room: "chat", limit: 50 },
    { type: "subscribe", room: "chat", since: { epoch: "e", offset: 60 } },
  ]);
  assert.deepEqual(c.position("chat"), { epoch: "e", offset: 62 });
  assert.deepEqual(c.stats.duplicates, 0);
});

test("history the hub no longer keeps is a history gap; messages trimmed before the subscribe are a real gap", async (t) => {
  const server = await answering(t, (f, ws) => {
    if (f.type === "history") return send(ws, historyOf(f, 55, 60));
    // Between the two, the hub dropped 61-65.
    send(ws, subscribed(f.room, "e", 66, false));
    send(ws, { type: "gap", room: f.room, epoch: "e", from: 61, to: 65 });
    send(ws, message(f.room, "e", 66, "m66"));
  });
  const c = client(t, server.url);
  const room = c.room("chat");
  const seen = deliveries(room);
  const confirmed = await room.subscribe({ history: 50 });
  assert.equal(confirmed.recovered, false);
  await until(() => seen.length === 9, "9 deliveries");
  assert.deepEqual(seen, [
    ["gap", 11, 54, true],
    ...range(55, 60).map((n) => ["message", n, `m${n}`]),
    ["gap", 61, 65, false],
    ["message", 66, "m66"],
  ]);
  assert.equal(c.stats.gaps, 1, "only the missed messages count as a gap");
});

test("an empty room is subscribed from offset 0 of the history's epoch", async (t) => {
  const server = await answering(t, (f, ws) => {
    if (f.type === "history") return send(ws, { type: "history", room: f.room, id: f.id, epoch: "e", latest: 0, first_kept: 1, messages: [] });
    send(ws, subscribed(f.room, "e", 0, true));
  });
  const c = client(t, server.url);
  const seen = deliveries(c.room("empty"));
  assert.deepEqual(await c.subscribe("empty", { history: 50 }), { room: "empty", epoch: "e", offset: 0, recovered: true });
  assert.deepEqual(seen, []);
  assert.deepEqual(server.connections[0].frames[1].since, { epoch: "e", offset: 0 });
});

test("a hub without history requests gets the subscribe-twice join instead", async (t) => {
  const server = await answering(t, (f, ws) => {
    if (f.type === "history") return send(ws, { type: "error", code: "unknown_type", reason: "unknown type 'history'", id: f.id });
    if (!f.since) return send(ws, subscribed(f.room, "e", 8));
    send(ws, subscribed(f.room, "e", 8, true));
    for (const n of range(f.since.offset + 1, 8)) send(ws, message(f.room, "e", n, `m${n}`));
  });
  const c = client(t, server.url);
  const room = c.room("log");
  const seen = deliveries(room);
  await room.subscribe({ history: 3 });
  await until(() => seen.length === 3, "3 messages");
  assert.deepEqual(seen, range(6, 8).map((n) => ["message", n, `m${n}`]));
  assert.deepEqual(
    server.connections[0].frames.map((f) => [f.type, f.since?.offset]),
    [
      ["history", undefined],
      ["subscribe", undefined],
      ["subscribe", 5],
    ],
  );
});

test("a connection lost before the history answer asks again on the next, and subscribes only after it", async (t) => {
  const server = await answering(t, (f, ws, srv) => {
    if (srv.connections.length === 1) return void ws.terminate();
    if (f.type === "history") return send(ws, historyOf(f, 1, 2));
    send(ws, subscribed(f.room, "e", 2, true));
  });
  const c = client(t, server.url);
  const seen = deliveries(c.room("chat"));
  await c.subscribe("chat", { history: 50 });
  assert.deepEqual(seen, [
    ["message", 1, "m1"],
    ["message", 2, "m2"],
  ]);
  const [first, second] = server.connections;
  assert.deepEqual(first.frames.map((f) => f.type), ["history"]);
  assert.deepEqual(second.frames.map((f) => f.type), ["history", "subscribe"]);
});

test("unsubscribing while the history is asked sends no subscribe, and a late answer changes nothing", async (t) => {
  let answerLater;
  const server = await answering(t, (f, ws) => {
    if (f.type === "history") answerLater = () => send(ws, historyOf(f, 1, 3));
  });
  const c = client(t, server.url);
  const seen = deliveries(c.room("chat"));
  const joining = c.subscribe("chat", { history: 10 });
  await until(() => answerLater !== undefined, "the history request");
  c.unsubscribe("chat");
  await assert.rejects(joining, { code: "unsubscribed" });
  answerLater();
  await c.presenceStats("ping"); // a round trip after the late answer
  assert.deepEqual(seen, []);
  assert.deepEqual(server.connections[0].frames.map((f) => f.type), ["history", "presence_stats"]);
  assert.equal(c.position("chat"), null);
});

test("against a real hub: the last 50 of 60, once each in order, then the live ones", async (t) => {
  const { ws } = await hub(t);
  const publisher = client(t, ws);
  for (let i = 1; i <= 60; i++) await publisher.publish("log", `m${i}`);
  const reader = client(t, ws);
  const room = reader.room("log");
  const seen = record(room, "message");
  const subscribed = await room.subscribe({ history: 50 });
  assert.equal(subscribed.offset, 60);
  assert.equal(subscribed.recovered, true);
  await publisher.publish("log", "m61");
  await until(() => seen.length === 51, "51 messages");
  assert.deepEqual(
    seen.map((m) => [m.offset, m.data]),
    range(11, 61).map((n) => [n, `m${n}`]),
  );
  assert.equal(reader.stats.duplicates, 0);
  assert.equal(reader.stats.gaps, 0);
});
