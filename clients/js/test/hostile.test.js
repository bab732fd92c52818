// A raw WebSocket server that speaks fanout.v1 badly or strangely: the client must not
// crash, must keep what is valid, and must follow the close codes' rules.
import assert from "node:assert/strict";
import { test } from "node:test";

import { client, next, rawServer, record, until } from "./support.js";

function binary(header, payload) {
  const head = Buffer.from(JSON.stringify(header));
  const length = Buffer.alloc(4);
  length.writeUInt32BE(head.length);
  return Buffer.concat([length, head, Buffer.from(payload)]);
}

const MALFORMED = [
  "not json",
  "[1,2]",
  "null",
  "42",
  '"a string"',
  "{}",
  '{"type":5}',
  '{"type":"message","room":"r","epoch":"e","offset":"3","data":1}',
  '{"type":"message","room":"r","epoch":"e","offset":-1,"data":1}',
  '{"type":"message","room":"r","epoch":"e","offset":1.5,"data":1}',
  '{"type":"message","room":"r","epoch":"e","offset":2}',
  '{"type":"message","room":["r"],"epoch":"e","offset":2,"data":1}',
  '{"type":"subscribed","room":"r"}',
  '{"type":"subscribed","room":"r","epoch":"e","offset":0,"recovered":"yes"}',
  '{"type":"gap","room":"r","epoch":"e","from":9,"to":3}',
  '{"type":"ack","id":7,"room":"r","epoch":"e","offset":1}',
  '{"type":"error","code":null,"reason":"x"}',
  '{"type":"authorized","exp":"soon"}',
    Buffer.from([0, 0]),
  Buffer.from([0, 0, 0, 200, 123, 125]),
  Buffer.from([0, 0, 0, 2, 0xff, 0xfe]),
  binary(["not", "an", "object"], "x"),
];

test("malformed frames from a server are reported and skipped, valid ones still count", async (t) => {
  const server = await rawServer(t, ({ ws, frames }) => {
    ws.on("message", () => {
      const sub = frames.find((f) => f.type === "subscribe");
      if (!sub || frames.length > 1) return;
      ws.send('{"type":"subscribed","room":"r","epoch":"e","offset":1,"recovered":false}');
      for (const frame of MALFORMED) ws.send(frame);
      ws.send('{"type":"message","__proto__":{"polluted":1},"room":"r","epoch":"e","offset":2,"data":"valid"}');
      ws.send(binary({ type: "message", room: "r", epoch: "e", offset: 3 }, [1, 2, 3]));
      ws.send('{"type":"message","room":"r","epoch":"e","offset":3,"data":"duplicate"}');
      ws.send('{"type":"message","room":"r","epoch":"other","offset":4,"data":"stale epoch"}');
      ws.send('{"type":"message","room":"elsewhere","epoch":"e","offset":1,"data":"not ours"}');
      ws.send('{"type":"from-the-future","room":"r"}');
      ws.send('{"type":"message","room":"r","epoch":"e","offset":6,"data":"after a hole"}');
    });
  });
  const c = client(t, server.url);
  const errors = record(c, "error");
  const room = c.room("r");
  const seen = record(room, "message");
  const gaps = record(room, "gap");
  await room.subscribe();
  await until(() => seen.length === 3, "3 valid messages");

  assert.deepEqual(
    seen.map((m) => [m.offset, m.data instanceof Uint8Array ? [...m.data] : m.data]),
    [
      [2, "valid"],
      [3, [1, 2, 3]],
      [6, "after a hole"],
    ],
  );
  // Offsets 4-5 never came and were never announced: said, not silently skipped.
  assert.deepEqual(gaps, [{ room: "r", epoch: "e", from: 4, to: 5, history: false }]);
  assert.equal(errors.length, MALFORMED.length);
  assert.ok(errors.every((e) => e.code === "malformed_frame" && e.reason), errors);
  assert.equal({}.polluted, undefined);
  assert.equal(c.stats.duplicates, 1);
  assert.equal(c.state, "open");
});

test("after a slow-consumer close the client resubscribes from its last offset and re-sends its publish", async (t) => {
  const server = await rawServer(t, ({ ws, frames }) => {
    const first = server.connections.length === 1;
    ws.on("message", () => {
      const last = frames.at(-1);
      if (last.type === "subscribe" && first) {
        ws.send('{"type":"subscribed","room":"r","epoch":"e","offset":4,"recovered":false}');
        ws.send('{"type":"message","room":"r","epoch":"e","offset":5,"data":"five"}');
      } else if (last.type === "publish" && first) {
        ws.close(4008, "slow consumer: outbox full"); // the publish is not answered
      } else if (last.type === "subscribe") {
        ws.send('{"type":"subscribed","room":"r","epoch":"e","offset":5,"recovered":true}');
      } else if (last.type === "publish") {
        ws.send(JSON.stringify({ type: "ack", id: last.id, room: "r", epoch: "e", offset: 6 }));
      }
    });
  });
  const c = client(t, server.url);
  const room = c.room("r");
  const seen = record(room, "message");
  await room.subscribe();
  await until(() => seen.length === 1, "message 5");
  const disconnected = next(c, "disconnected");
  const ack = await room.publish({ n: 1 }, { id: "p-1" });
  const { code, reason, retryInMs } = await disconnected;
  assert.deepEqual([code, reason], [4008, "slow consumer: outbox full"]);
  assert.ok(retryInMs > 0);
  assert.equal(ack.offset, 6);
  const [, second] = server.connections;
  assert.deepEqual(second.frames, [
    { type: "subscribe", room: "r", since: { epoch: "e", offset: 5 } },
    { type: "publish", room: "r", data: { n: 1 }, id: "p-1" },
  ]);
});

test("a policy close (1008) stops the client for good with the server's reason", async (t) => {
  const server = await rawServer(t, ({ ws }) => ws.close(1008, "token expired"));
  const c = client(t, server.url);
  const publishing = c.publish("r", "x");
  const stopped = await next(c, "stopped");
  assert.deepEqual(stopped, { reason: "token expired", code: 1008 });
  await assert.rejects(publishing, { code: "refused", reason: "token expired" });
  assert.equal(server.connections.length, 1);
});

test("retryable errors are retried with the same id, others reject the publish", async (t) => {
  const server = await rawServer(t, ({ ws, frames }) => {
    ws.on("message", () => {
      const last = frames.at(-1);
      const tries = frames.filter((f) => f.id === last.id).length;
      if (last.id === "flaky" && tries < 3) {
        const code = tries === 1 ? "unavailable" : "timeout";
        ws.send(JSON.stringify({ type: "error", code, reason: "broker trouble", id: last.id }));
      } else if (last.id === "flaky") {
        ws.send(JSON.stringify({ type: "ack", id: "flaky", room: "r", epoch: "e", offset: 1 }));
      } else {
        ws.send(JSON.stringify({ type: "error", code: "forbidden", reason: "no", id: last.id }));
      }
    });
  });
  const c = client(t, server.url);
  const retries = record(c, "retry");
  assert.equal((await c.publish("r", 1, { id: "flaky" })).offset, 1);
  assert.deepEqual(
    retries.map((r) => [r.code, r.id]),
    [
      ["unavailable", "flaky"],
      ["timeout", "flaky"],
    ],
  );
  await assert.rejects(c.publish("r", 2, { id: "denied" }), { code: "forbidden", id: "denied" });
  assert.equal(server.connections.length, 1);
});
