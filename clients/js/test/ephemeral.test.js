// Ephemeral publishes (`publish(data, { ephemeral: true })`) and the room's `ephemeral`
// event: not stored, no offset, never re-sent, never replayed. Against real hubs, and a
// raw server for what a hub would not do on demand.
import assert from "node:assert/strict";
import { test } from "node:test";

import { client, hub, next, proxy, rawServer, record, until } from "./support.js";

const send = (ws, frame) => ws.send(JSON.stringify(frame));

/** Every `message` and `ephemeral` event of `room`, in the order they came. */
function deliveries(room) {
  const seen = [];
  room.on("message", (m) => seen.push(["message", m.offset, m.data]));
  room.on("ephemeral", (e) => seen.push(["ephemeral", e.data instanceof Uint8Array ? [...e.data] : e.data]));
  return seen;
}

test("an ephemeral publish reaches the room's subscribers as its own event and takes no offset", async (t) => {
  const { ws } = await hub(t);
  const reader = client(t, ws);
  const writer = client(t, ws);
  const { epoch } = await reader.subscribe("doc");
  const seen = deliveries(reader.room("doc"));
  const errors = record(reader, "error");

  const first = await writer.publish("doc", "stored one");
  const ack = await writer.room("doc").publish({ typing: "alice" }, { ephemeral: true, id: "t-1" });
  assert.deepEqual(ack, { id: "t-1", room: "doc", ephemeral: true });
  await writer.publish("doc", new Uint8Array([0, 255]), { ephemeral: true });
  const second = await writer.publish("doc", "stored two");
  assert.deepEqual([first.offset, second.offset], [1, 2], "the ephemeral ones took no offset");

  await until(() => seen.length === 4, "4 deliveries");
  assert.deepEqual(seen, [
    ["message", 1, "stored one"],
    ["ephemeral", { typing: "alice" }],
    ["ephemeral", [0, 255]],
    ["message", 2, "stored two"],
  ]);
  assert.deepEqual(reader.position("doc"), { epoch, offset: 2 });
  assert.deepEqual([reader.stats.duplicates, reader.stats.gaps], [0, 0]);
  assert.deepEqual(errors, [], "an ephemeral frame is not malformed");
  const history = await reader.history("doc");
  assert.deepEqual(history.messages.map((m) => m.data), ["stored one", "stored two"]);
});

test("a client that was away resumes the stored messages but no ephemeral one", async (t) => {
  const running = await hub(t);
  const net = await proxy(t, running.port);
  const away = client(t, net.url);
  const writer = client(t, running.ws);
  const room = away.room("doc");
  await room.subscribe();
  const seen = deliveries(room);

  net.refuse(true);
  net.cut();
  await next(away, "disconnected");
  await writer.publish("doc", "typing...", { ephemeral: true });
  await writer.publish("doc", "while away");
  net.refuse(false);
  away.reconnect();
  await until(() => seen.length === 1, "the stored message");
  await writer.publish("doc", "typing again", { ephemeral: true });
  await until(() => seen.length === 2, "the ephemeral one sent after the resume");
  assert.deepEqual(seen, [
    ["message", 1, "while away"],
    ["ephemeral", "typing again"],
  ]);
});

test("an ephemeral publish with no open connection is dropped, and not sent after the reconnect", async (t) => {
  const running = await hub(t);
  const net = await proxy(t, running.port);
  const reader = client(t, running.ws);
  await reader.subscribe("doc");
  const seen = deliveries(reader.room("doc"));
  net.refuse(true);
  const writer = client(t, net.url);
  await next(writer, "disconnected");
  await assert.rejects(writer.publish("doc", "typing", { ephemeral: true, id: "lost" }), {
    name: "FanoutError",
    code: "dropped",
    room: "doc",
    id: "lost",
  });
  net.refuse(false);
  writer.reconnect();
  await next(writer, "connected");
  await writer.publish("doc", "stored");
  await until(() => seen.length === 1, "the stored message");
  await reader.presenceStats("doc"); // a round trip: anything sent before it has come
  assert.deepEqual(seen, [["message", 1, "stored"]]);
});

test("an ephemeral publish the hub refuses rejects with the hub's code, and the client goes on", async (t) => {
  const { ws } = await hub(t, ["--room-options", "news*:client_publish=off"]);
  const c = client(t, ws);
  await next(c, "connected");
  await assert.rejects(c.publish("news", "typing", { ephemeral: true, id: "t-1" }), {
    code: "forbidden",
    room: "news",
    id: "t-1",
  });
  assert.equal((await c.publish("chat", "fine")).offset, 1);
  assert.equal(c.pending, 0);
  await assert.rejects(c.publish("@alice", "hi", { ephemeral: true }), { code: "forbidden" });
});

test("ephemeral publishes are never retried: a rate limit, a lost connection, or silence drop them", async (t) => {
  const server = await rawServer(t, ({ ws, frames }) => {
    ws.on("message", () => {
      const f = frames.at(-1);
      if (f.type === "presence_stats") send(ws, { type: "presence_stats", room: f.room, id: f.id, connections: 1, users: 1 });
      if (f.type !== "publish") return;
      assert.equal(f.ephemeral, true);
      if (f.data === "limited") send(ws, { type: "error", code: "rate_limited", reason: "slow down", id: f.id });
      if (f.data === "cut") ws.terminate();
      // "silent": no answer.
    });
  });
  const c = client(t, server.url, { publishTimeoutMs: 200 });
  await next(c, "connected");
  const retries = record(c, "retry");
  await assert.rejects(c.publish("doc", "limited", { ephemeral: true }), { code: "rate_limited" });
  await assert.rejects(c.publish("doc", "silent", { ephemeral: true }), { code: "dropped", reason: "no answer within 200 ms" });
  assert.equal(c.state, "open", "silence drops the message, not the connection");
  await assert.rejects(c.publish("doc", "cut", { ephemeral: true }), {
    code: "dropped",
    reason: "the connection ended before the hub answered (not sent again)",
  });
  await next(c, "connected");
  await c.presenceStats("doc"); // a round trip on the new connection: nothing was re-sent
  const publishes = server.connections.flatMap((conn) => conn.frames.filter((f) => f.type === "publish"));
  assert.deepEqual(publishes.map((f) => f.data), ["limited", "silent", "cut"]);
  assert.deepEqual(retries, []);
});

test("ephemeral frames are checked: a room and data, no epoch nor offset needed; acks match id and room", async (t) => {
  const server = await rawServer(t, ({ ws, frames }) => {
    ws.on("message", () => {
      const f = frames.at(-1);
      if (f.type === "subscribe") {
        send(ws, { type: "subscribed", room: f.room, epoch: "e", offset: 3, recovered: false });
        send(ws, { type: "message", room: f.room, ephemeral: true, data: "typing" });
        send(ws, { type: "message", room: "elsewhere", ephemeral: true, data: "not ours" });
        send(ws, { type: "message", room: f.room, ephemeral: true }); // no data: malformed
        send(ws, { type: "message", room: f.room, epoch: "e", offset: 4, data: "stored" });
      }
      if (f.type === "publish") {
        send(ws, { type: "ack", id: f.id, room: "other", ephemeral: true }); // not ours
        send(ws, { type: "ack", id: f.id, room: f.room, ephemeral: true });
      }
    });
  });
  const c = client(t, server.url);
  const room = c.room("doc");
  const seen = deliveries(room);
  const errors = record(c, "error");
  await room.subscribe();
  await until(() => seen.length === 2, "2 deliveries");
  assert.deepEqual(seen, [
    ["ephemeral", "typing"],
    ["message", 4, "stored"],
  ]);
  assert.deepEqual(errors.map((e) => e.code), ["malformed_frame"]);
  assert.deepEqual(c.position("doc"), { epoch: "e", offset: 4 });
  assert.equal(c.stats.gaps, 0);
  assert.deepEqual(await room.publish("x", { ephemeral: true, id: "e-1" }), { id: "e-1", room: "doc", ephemeral: true });
});
