// Two `fanout serve` nodes sharing a real Redis: a node restart loses nothing.
import assert from "node:assert/strict";
import { test } from "node:test";

import { client, hub, next, record, redis, startHub, until } from "./support.js";

test("a client resumes without loss or repeats when its node restarts", async (t) => {
  const broker = ["--broker", await redis(t), "--history-max-messages", "1000"];
  const node = await startHub(broker);
  t.after(() => node.stop());
  const other = await hub(t, broker);
  const reader = client(t, node.ws);
  const room = reader.room("feed");
  const seen = record(room, "message");
  const gaps = record(room, "gap");
  const resets = record(room, "reset");
  const { epoch } = await room.subscribe();
  const publisher = client(t, other.ws);
  for (let i = 1; i <= 5; i++) await publisher.publish("feed", i);
  await until(() => seen.length === 5, "5 messages");

  await node.stop("SIGKILL");
  await next(reader, "disconnected");
  for (let i = 6; i <= 10; i++) await publisher.publish("feed", i); // while it is away
  const resumed = next(room, "subscribed");
  const restarted = await startHub(broker, { port: node.port });
  t.after(() => restarted.stop());
  assert.deepEqual(await resumed, { room: "feed", epoch, offset: 10, recovered: true });
  for (let i = 11; i <= 15; i++) await publisher.publish("feed", i);

  await until(() => seen.length === 15, "15 messages");
  assert.deepEqual(
    seen.map((m) => [m.epoch, m.offset, m.data]),
    Array.from({ length: 15 }, (_, i) => [epoch, i + 1, i + 1]),
  );
  assert.deepEqual([gaps, resets], [[], []]);
  assert.equal(reader.stats.duplicates, 0);
});
