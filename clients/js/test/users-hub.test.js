// Users against real `fanout serve` hubs with auth: the personal room on every tab of a
// user, resumed after a reconnect; the server's unsubscribe and kick (through its HTTP
// API, as a server application does); presence, join/leave; history on demand.
import assert from "node:assert/strict";
import { test } from "node:test";

import { SECRET, client, hub, next, proxy, record, token, until } from "./support.js";

const API_KEY = "js-users-test-api-key-0123456789";
const HUB = {
  env: { FANOUT_AUTH_SECRET: SECRET, FANOUT_API_KEY: API_KEY },
};
const tokenOf = (user) => token("--sub", user, "--rooms", "chat.*");

/** POST `body` to the hub's HTTP API `path` (as a server application does). */
async function api(running, path, body) {
  const response = await fetch(`${running.url}/api/${path}`, {
    method: "POST",
    headers: { authorization: `apikey ${API_KEY}`, "content-type": "application/json" },
    body: JSON.stringify(body),
  });
  assert.equal(response.status, 200, await response.clone().text());
  return response.json();
}

const publish = (running, room, data) => api(running, "publish", { room, data });

/** A tab of `user`: records its personal room's messages from the announcement on. */
function tab(t, url, user) {
  const c = client(t, url, { token: tokenOf(user) });
  const seen = [];
  c.on("userRoom", () => c.userRoom().on("message", (m) => seen.push(m)));
  return { c, seen, announced: next(c, "userRoom") };
}

test("a message to a user reaches each of their tabs once, in order, and no one else", async (t) => {
  const running = await hub(t, [], HUB);
  const first = tab(t, running.ws, "alice");
  const second = tab(t, running.ws, "alice");
  const bob = tab(t, running.ws, "bob");
  assert.deepEqual(
    (await Promise.all([first.announced, second.announced, bob.announced])).map((e) => e.room),
    ["@alice", "@alice", "@bob"],
  );
  for (let i = 1; i <= 10; i++) await publish(running, "@alice", { n: i });
  await until(() => first.seen.length === 10 && second.seen.length === 10, "10 messages in each tab");
  for (const { seen } of [first, second]) {
    assert.deepEqual(
      seen.map((m) => [m.room, m.offset, m.data.n]),
      Array.from({ length: 10 }, (_, i) => ["@alice", i + 1, i + 1]),
    );
  }
  assert.deepEqual(bob.seen, []);
  await assert.rejects(first.c.publish("@bob", "hi"), { code: "forbidden" });
});

test("a tab that was away gets what was sent to its user meanwhile, once", async (t) => {
  const running = await hub(t, [], HUB);
  const net = await proxy(t, running.port);
  const away = tab(t, net.url, "alice");
  const present = tab(t, running.ws, "alice");
  await Promise.all([away.announced, present.announced]);
  await publish(running, "@alice", "one");
  await until(() => away.seen.length === 1, "the first message");

  net.refuse(true);
  net.cut();
  await next(away.c, "disconnected");
  for (const data of ["two", "three", "four"]) await publish(running, "@alice", data);
  const resumed = next(away.c.userRoom(), "subscribed");
  net.refuse(false);
  away.c.reconnect();
  const { recovered, offset } = await resumed;
  assert.deepEqual([recovered, offset], [true, 4]);
  await publish(running, "@alice", "five");

  await until(() => away.seen.length === 5 && present.seen.length === 5, "5 messages in each tab");
  for (const { seen } of [away, present]) {
    assert.deepEqual(
      seen.map((m) => [m.offset, m.data]),
      [[1, "one"], [2, "two"], [3, "three"], [4, "four"], [5, "five"]],
    );
  }
  assert.equal(away.c.stats.connections, 2);
  assert.equal(away.c.stats.duplicates, 0);
  assert.equal(away.c.stats.gaps, 0);
});

test("a message published to a user by name reaches their personal room", async (t) => {
  const running = await hub(t, [], HUB);
  const alice = tab(t, running.ws, "alice");
  await alice.announced;
  await api(running, "publish", { user: "alice", data: "by name" });
  await until(() => alice.seen.length === 1, "the message");
  assert.deepEqual([alice.seen[0].room, alice.seen[0].data], ["@alice", "by name"]);
});

test("a room the server unsubscribes is forgotten and not resubscribed after a reconnect", async (t) => {
  const running = await hub(t, [], HUB);
  const net = await proxy(t, running.port);
  const alice = client(t, net.url, { token: tokenOf("alice") });
  const room = alice.room("chat.a");
  const seen = record(room, "message");
  await room.subscribe();
  const unsubscribed = next(room, "unsubscribed");
  await api(running, "unsubscribe", { user: "alice", room: "chat.a" });
  assert.equal((await unsubscribed).room, "chat.a");
  assert.equal(alice.position("chat.a"), null);

  net.cut();
  await next(alice, "connected", (e) => e.connection === 2);
  await alice.subscribe("chat.other"); // answered after anything the reconnect sent
  await publish(running, "chat.a", "not for alice any more");
  await alice.publish("chat.other", "sync"); // the hub answers in order: chat.a came first
  assert.deepEqual(seen, []);
});

test("a kicked client stops with the server's reason and does not reconnect", async (t) => {
  const running = await hub(t, [], HUB);
  const alice = client(t, running.ws, { token: tokenOf("alice") });
  const bob = client(t, running.ws, { token: tokenOf("bob") });
  await alice.subscribe("chat.a");
  await bob.subscribe("chat.a");
  const stopped = next(alice, "stopped");
  await api(running, "disconnect", { user: "alice", reason: "banned for spam" });
  const { code, reason } = await stopped;
  assert.equal(code, 4003);
  assert.match(reason, /banned for spam/);
  assert.equal(alice.state, "closed");
  await assert.rejects(alice.publish("chat.a", "after the kick"), { code: "closed" });
  await new Promise((resolve) => setTimeout(resolve, 300)); // a reconnect would come within 100 ms
  assert.equal(alice.stats.attempts, 1);
  assert.equal((await bob.publish("chat.a", "bob stays")).offset, 1);
});

test("presence lists each connection, counts users once, and join/leave reach the room", async (t) => {
  const running = await hub(t, ["--room-options", "chat.live*:join_leave=on;chat.secret*:presence=off"], HUB);
  const alice = client(t, running.ws, { token: tokenOf("alice") });
  const bob = client(t, running.ws, { token: tokenOf("bob") });
  const live = alice.room("chat.live");
  const joins = record(live, "join");
  await live.subscribe();
  const bobJoined = next(live, "join", (e) => e.member.user === "bob");
  await bob.subscribe("chat.live");
  const { member } = await bobJoined;
  assert.equal(typeof member.conn, "string");
  assert.ok(Math.abs(member.joinedAt - Date.now()) < 60000, "joinedAt in Unix ms");

  const { members } = await alice.presence("chat.live");
  assert.deepEqual(members.map((m) => m.user).sort(), ["alice", "bob"]);
  assert.deepEqual(await bob.room("chat.live").presenceStats(), { room: "chat.live", connections: 2, users: 2 });

  const left = next(live, "leave");
  bob.unsubscribe("chat.live");
  assert.deepEqual((await left).member.conn, member.conn);
  assert.ok(joins.every((e) => e.room === "chat.live"));
  await assert.rejects(alice.presence("chat.secret"), { code: "forbidden", room: "chat.secret" });
  await assert.rejects(alice.presence("news"), { code: "forbidden" });
});

test("history reads the last messages or pages forward, without subscribing", async (t) => {
  const running = await hub(t, [], HUB);
  const alice = client(t, running.ws, { token: tokenOf("alice") });
  const bytes = new Uint8Array([0, 255, 1, 2]);
  for (const data of ["one", { n: 2 }, bytes, null, "five"]) await alice.publish("chat.h", data);
  const last = await alice.history("chat.h", { limit: 3 });
  assert.deepEqual([last.room, last.latest, last.firstKept], ["chat.h", 5, 1]);
  assert.deepEqual(
    last.messages.map((m) => [m.offset, m.data instanceof Uint8Array ? [...m.data] : m.data]),
    [[3, [0, 255, 1, 2]], [4, null], [5, "five"]],
  );
  const page = await alice.room("chat.h").history({ limit: 2, since: 1 });
  assert.deepEqual(
    page.messages.map((m) => [m.room, m.epoch, m.offset, m.data instanceof Uint8Array ? [...m.data] : m.data]),
    [
      ["chat.h", last.epoch, 2, { n: 2 }],
      ["chat.h", last.epoch, 3, [...bytes]],
    ],
  );
  assert.deepEqual((await alice.history("chat.h", { since: 5 })).messages, []);
  assert.equal(alice.position("chat.h"), null);
  await assert.rejects(alice.history("news"), { code: "forbidden" });
});
