// Tokens: on the handshake's query string, refreshed with the auth frame, refusals final.
import assert from "node:assert/strict";
import { test } from "node:test";

import { SECRET, client, hub, next, token } from "./support.js";

const AUTH = { env: { FANOUT_AUTH_SECRET: SECRET } };

test("a token in the query string opens the connection and grants its rooms", async (t) => {
  const { ws } = await hub(t, [], AUTH);
  const alice = client(t, ws, { token: token("--sub", "alice", "--rooms", "chat.*") });
  await alice.subscribe("chat.lobby");
  const ack = await alice.publish("chat.lobby", "hi");
  assert.equal(ack.offset, 1);
  await assert.rejects(alice.publish("news", "no"), { code: "forbidden", id: /.+/ });
  await assert.rejects(alice.subscribe("news"), { code: "forbidden" });
  assert.equal(alice.state, "open");
});

test("a bad token stops the client with the hub's reason, without retrying", async (t) => {
  const { ws } = await hub(t, [], AUTH);
  const mallory = client(t, ws, { token: "not-a-token" });
  const subscribing = mallory.subscribe("chat.lobby");
  const stopped = await next(mallory, "stopped");
  assert.equal(stopped.status, 403);
  assert.match(stopped.reason, /malformed token/);
  assert.equal(mallory.state, "closed");
  assert.equal(mallory.stats.attempts, 1);
  await assert.rejects(subscribing, { code: "refused" });
  await assert.rejects(mallory.publish("chat.lobby", 1), { code: "closed" });
});

test("a refreshed token keeps the connection past the first one's expiry", async (t) => {
  const { ws } = await hub(t, [], AUTH);
  // Every token minted before the short one starts to run out: minting takes a process
  // start each, which on a busy machine could outlast the first token's 3 s.
  const fresh = token("--sub", "alice", "--rooms", "chat.*");
  const bobs = token("--sub", "bob", "--rooms", "chat.*");
  const alice = client(t, ws, { token: token("--sub", "alice", "--rooms", "chat.*", "--ttl", "3") });
  await alice.subscribe("chat.lobby");
  const refreshed = await alice.refreshToken(fresh);
  assert.equal(refreshed.sub, "alice");
  assert.ok(refreshed.exp > Date.now() / 1000 + 60);
  await assert.rejects(alice.refreshToken(bobs), {
    code: "forbidden",
  });
  await assert.rejects(alice.refreshToken("nope"), { code: "unauthorized" });
  // Past the first token's expiry (3 s), the connection is still the first one.
  const deadline = Date.now() + 3500;
  // Paced: flat out, one client would pass the hub's rate limit and be closed 4029.
  for (let i = 1; Date.now() < deadline; i++) {
    await alice.publish("chat.lobby", i);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  assert.equal(alice.stats.connections, 1);
  assert.equal(alice.state, "open");
});

test("an expired token closes the connection for good with the reason", async (t) => {
  const { ws } = await hub(t, [], AUTH);
  const alice = client(t, ws, { token: token("--sub", "alice", "--rooms", "chat.*", "--ttl", "1") });
  await alice.subscribe("chat.lobby");
  const stopped = await next(alice, "stopped");
  assert.deepEqual(stopped, { reason: "token expired", code: 1008 });
  assert.equal(alice.state, "closed");
  assert.equal(alice.stats.attempts, 1);
});
