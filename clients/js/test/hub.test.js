// The client against real `fanout serve` hubs (memory broker).
import assert from "node:assert/strict";
import { test } from "node:test";

import { client, hub, next, proxy, record, startHub, until } from "./support.js";

test("a publish is acked with its offset and every subscriber gets it in order", async (t) => {
  const { ws } = await hub(t);
  const alice = client(t, ws);
  const bob = client(t, ws);
  const subscribed = await alice.subscribe("news");
  assert.equal(subscribed.offset, 0);
  assert.equal(subscribed.recovered, false);
  const seen = record(alice.room("news"), "message");

  const acks = [];
  for (const data of [{ text: "one" }, "two", null]) acks.push(await bob.publish("news", data));
  assert.deepEqual(
    acks.map((a) => [a.room, a.epoch, a.offset]),
    [1, 2, 3].map((offset) => ["news", subscribed.epoch, offset]),
  );
  await until(() => seen.length === 3, "3 messages");
  assert.deepEqual(
    seen.map((m) => [m.offset, m.data]),
    [
      [1, { text: "one" }],
      [2, "two"],
      [3, null],
    ],
  );
  assert.deepEqual(alice.position("news"), { epoch: subscribed.epoch, offset: 3 });
  assert.equal(bob.pending, 0);
});

test("bytes go out as a binary publish and come back as the same bytes", async (t) => {
  const { ws } = await hub(t);
  const alice = client(t, ws);
  await alice.subscribe("files");
  const png = new Uint8Array([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 0, 255]);
  const inputs = [png, png.buffer.slice(0), new DataView(png.buffer, 2, 4), new Blob([png])];
  const expected = [png, png, png.subarray(2, 6), png];
  for (const [i, input] of inputs.entries()) {
    const message = next(alice.room("files"), "message", (m) => m.offset === i + 1);
    const ack = await alice.publish("files", input);
    assert.equal(ack.offset, i + 1);
    const { data } = await message;
    assert.ok(data instanceof Uint8Array, `message ${i + 1} is bytes`);
    assert.deepEqual([...data], [...expected[i]]);
  }
});

test("history on join delivers the last messages before the live ones", async (t) => {
  const { ws } = await hub(t);
  const publisher = client(t, ws);
  for (let i = 1; i <= 8; i++) await publisher.publish("log", `m${i}`);
  const reader = client(t, ws);
  const seen = record(reader.room("log"), "message");
  const subscribed = await reader.subscribe("log", { history: 3 });
  assert.equal(subscribed.offset, 8);
  assert.equal(subscribed.recovered, true);
  await publisher.publish("log", "m9");
  await until(() => seen.length === 4, "4 messages");
  assert.deepEqual(
    seen.map((m) => m.data),
    ["m6", "m7", "m8", "m9"],
  );
});

test("a publish whose ack was lost is re-sent after the reconnect and stored once", async (t) => {
  const hubProcess = await hub(t);
  const net = await proxy(t, hubProcess.port);
  const watcher = client(t, hubProcess.ws);
  await watcher.subscribe("orders");
  const watched = record(watcher.room("orders"), "message");
  const publisher = client(t, net.url);
  await next(publisher, "connected");

  // The hub gets the publish, but its ack never reaches the client: then the link dies.
  net.holdReplies(true);
  const acked = publisher.publish("orders", { item: "tea" }, { id: "order-1" });
  await next(watcher.room("orders"), "message");
  net.cut();
  net.holdReplies(false);
  const ack = await acked;

  assert.equal(publisher.stats.connections, 2);
  assert.equal(ack.id, "order-1");
  assert.equal(ack.offset, 1);
  await watcher.publish("orders", "next one");
  await until(() => watched.length === 2, "2 messages");
  assert.deepEqual(
    watched.map((m) => [m.offset, m.data]),
    [
      [1, { item: "tea" }],
      [2, "next one"],
    ],
  );
});

test("a gap is reported when the hub no longer keeps what the client missed", async (t) => {
  const hubProcess = await hub(t, ["--history-max-messages", "3"]);
  const net = await proxy(t, hubProcess.port);
  const reader = client(t, net.url);
  const room = reader.room("news");
  const seen = record(room, "message");
  const gaps = record(room, "gap");
  const { epoch } = await room.subscribe();
  const publisher = client(t, hubProcess.ws);
  await publisher.publish("news", "n1");
  await publisher.publish("news", "n2");
  await until(() => seen.length === 2, "2 messages");

  net.refuse(true);
  net.cut();
  await next(reader, "disconnected");
  for (let i = 3; i <= 7; i++) await publisher.publish("news", `n${i}`);
  net.refuse(false);
  reader.reconnect();

  await next(room, "message", (m) => m.offset === 7);
  assert.deepEqual(gaps, [{ room: "news", epoch, from: 3, to: 4, history: false }]);
  assert.deepEqual(
    seen.map((m) => m.data),
    ["n1", "n2", "n5", "n6", "n7"],
  );
  assert.equal(reader.stats.gaps, 1);
});

test("a hub restart is reported as a new epoch and the client carries on", async (t) => {
  const first = await startHub();
  t.after(() => first.stop());
  const alice = client(t, first.ws);
  const room = alice.room("chat");
  const seen = record(room, "message");
  const { epoch: oldEpoch } = await room.subscribe();
  await alice.publish("chat", "before");

  const disconnected = next(alice, "disconnected");
  await first.stop();
  assert.equal((await disconnected).code, 1001); // the hub's shutdown: reconnect and resume
  // Sent while the hub is down: kept, then sent on the next connection.
  const whileDown = alice.publish("chat", "while down");
  assert.equal(alice.pending, 1);
  const reset = next(room, "reset");
  const second = await startHub([], { port: first.port });
  t.after(() => second.stop());

  const { epoch, previousEpoch } = await reset;
  assert.equal(previousEpoch, oldEpoch);
  assert.notEqual(epoch, oldEpoch);
  const ack = await whileDown;
  assert.deepEqual([ack.epoch, ack.offset], [epoch, 1]);
  await alice.publish("chat", "after");
  await until(() => seen.length === 3, "3 messages");
  assert.deepEqual(
    seen.map((m) => [m.data, m.epoch === oldEpoch ? "old" : "new", m.offset]),
    [
      ["before", "old", 1],
      ["while down", "new", 1],
      ["after", "new", 2],
    ],
  );
  assert.equal(alice.stats.resets, 1);
  assert.equal(alice.stats.duplicates, 0);
});

test("a refused subscribe rejects and is reported on the room", async (t) => {
  const { ws } = await hub(t, ["--max-rooms-per-connection", "1"]);
  const alice = client(t, ws);
  await alice.subscribe("one");
  const error = next(alice.room("two"), "error");
  await assert.rejects(alice.subscribe("two"), { name: "FanoutError", code: "too_many_rooms" });
  assert.equal((await error).code, "too_many_rooms");
  assert.equal(alice.position("two"), null);
  await assert.rejects(alice.publish("bad room!", 1), { code: "bad_room" });
});
