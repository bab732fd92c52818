// Real hubs (`fanout serve` child processes), a real redis-server, a cuttable TCP proxy,
// and waits on events with timeouts, for the client's tests. Never a sleep-and-hope.
import { spawn, execFileSync } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import net from "node:net";
import { tmpdir } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import WebSocket, { WebSocketServer } from "ws";

import { FanoutClient } from "../fanout.js";

const HERE = path.dirname(fileURLToPath(import.meta.url));
// The venv's Python runs the hub; tests/js/test_js_client.py passes its own.
const PYTHON = process.env.FANOUT_PYTHON ?? path.resolve(HERE, "../../../.venv/bin/python");
const REDIS = process.env.REDIS_SERVER ?? "redis-server";
export const TIMEOUT_MS = 15000;
export const SECRET = "js-client-test-secret-0123456789abcdef";

/** A free TCP port on 127.0.0.1 (asked of the OS, as tests/support does). */
export async function freePort() {
  const server = net.createServer();
  await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address();
  await new Promise((resolve) => server.close(resolve));
  return port;
}

/** Resolves when `check()` is true; rejects naming `what` after `timeoutMs`. */
export async function until(check, what, timeoutMs = TIMEOUT_MS) {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`not within ${timeoutMs} ms: ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

/** The next `type` event of `emitter` for which `where(event)` holds. */
export function next(emitter, type, where = () => true, timeoutMs = TIMEOUT_MS) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      off();
      reject(new Error(`no ${type} event within ${timeoutMs} ms`));
    }, timeoutMs);
    const off = emitter.on(type, (event) => {
      if (!where(event)) return;
      clearTimeout(timer);
      off();
      resolve(event);
    });
  });
}

/** Every `type` event of `emitter`, in order, from now on. */
export function record(emitter, type) {
  const events = [];
  emitter.on(type, (event) => events.push(event));
  return events;
}

/** A client on `url` (the `ws` package's WebSocket), closed by `t.after`. */
export function client(t, url, options = {}) {
  const c = new FanoutClient(url, { WebSocket, backoff: { initialMs: 50, maxMs: 500 }, ...options });
  t.after(() => c.close());
  return c;
}

/** `fanout serve` on a free (or the given) port, healthy; `stop()` sends SIGTERM. */
export async function startHub(args = [], { port, env = {} } = {}) {
  port = port ?? (await freePort());
  const proc = spawn(
    PYTHON,
    ["-m", "fanout.cli", "serve", "--port", String(port), "--log-level", "warning", ...args],
    { env: { ...process.env, ...env }, stdio: ["ignore", "ignore", "pipe"] },
  );
  let log = "";
  proc.stderr.on("data", (chunk) => {
    log += chunk;
  });
  const exited = new Promise((resolve) => proc.on("exit", (code, signal) => resolve(code ?? signal)));
  const url = `http://127.0.0.1:${port}`;
  let gone = false;
  exited.then(() => {
    gone = true;
  });
  await until(async () => {
    if (gone) throw new Error(`fanout serve exited:\n${log}`);
    try {
      return (await fetch(`${url}/healthz`)).ok;
    } catch {
      return false;
    }
  }, "fanout serve answering /healthz", 20000);
  return {
    port,
    url,
    ws: `ws://127.0.0.1:${port}/ws`,
    log: () => log,
    async stop(signal = "SIGTERM") {
      if (!gone) proc.kill(signal);
      return exited;
    },
  };
}

/** A hub for the test, stopped after it. */
export async function hub(t, args = [], options = {}) {
  const running = await startHub(args, options);
  t.after(() => running.stop());
  return running;
}

/** A real redis-server on a free port, no persistence, stopped after the test. */
export async function redis(t) {
  const port = await freePort();
  const dir = mkdtempSync(path.join(tmpdir(), "fanout-js-redis-"));
  const proc = spawn(
    REDIS,
    ["--port", String(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", dir],
    { stdio: "ignore" },
  );
  const exited = new Promise((resolve) => proc.on("exit", resolve));
  t.after(async () => {
    proc.kill("SIGKILL");
    await exited;
    rmSync(dir, { recursive: true, force: true });
  });
  await until(
    () =>
      new Promise((resolve) => {
        const socket = net.connect(port, "127.0.0.1", () => {
          socket.end();
          resolve(true);
        });
        socket.on("error", () => resolve(false));
      }),
    "redis-server listening",
  );
  return `redis://127.0.0.1:${port}/0`;
}

/** A token from `fanout token` (the hub's own minting) for SECRET. */
export function token(...args) {
  return execFileSync(PYTHON, ["-m", "fanout.cli", "token", ...args], {
    env: { ...process.env, FANOUT_AUTH_SECRET: SECRET },
  })
    .toString()
    .trim();
}

/**
 * A TCP proxy in front of `port`, to cut connections the way a network does:
 * `cut()` destroys every proxied connection; `refuse(true)` drops new ones at once;
 * `holdReplies(true)` stops forwarding what the hub sends (requests still go through).
 */
export async function proxy(t, port) {
  const sockets = new Set();
  let refusing = false;
  let holding = false;
  const server = net.createServer((downstream) => {
    if (refusing) return downstream.destroy();
    const upstream = net.connect(port, "127.0.0.1");
    sockets.add(downstream).add(upstream);
    downstream.on("data", (chunk) => upstream.write(chunk));
    upstream.on("data", (chunk) => {
      if (!holding) downstream.write(chunk);
    });
    for (const [a, b] of [
      [downstream, upstream],
      [upstream, downstream],
    ]) {
      a.on("error", () => b.destroy());
      a.on("close", () => {
        sockets.delete(a);
        b.destroy();
      });
    }
  });
  await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve));
  const url = `ws://127.0.0.1:${server.address().port}/ws`;
  t.after(() => {
    for (const s of sockets) s.destroy();
    return new Promise((resolve) => server.close(resolve));
  });
  return {
    url,
    cut() {
      for (const s of sockets) s.destroy();
    },
    refuse(on) {
      refusing = on;
    },
    holdReplies(on) {
      holding = on;
    },
  };
}

/**
 * A raw WebSocket server (not a hub) that selects fanout.v1 and hands each connection
 * ({ws, frames, url}) to `onConnection`: to speak the protocol badly or strangely.
 */
export async function rawServer(t, onConnection) {
  const wss = new WebSocketServer({
    port: 0,
    host: "127.0.0.1",
    handleProtocols: (protocols) => (protocols.has("fanout.v1") ? "fanout.v1" : false),
  });
  await new Promise((resolve) => wss.on("listening", resolve));
  const connections = [];
  wss.on("connection", (ws, request) => {
    const frames = [];
    ws.on("message", (data, isBinary) => frames.push(isBinary ? data : JSON.parse(data)));
    const conn = { ws, frames, url: new URL(request.url, "ws://127.0.0.1") };
    connections.push(conn);
    onConnection(conn);
  });
  t.after(() => {
    for (const c of wss.clients) c.terminate();
    return new Promise((resolve) => wss.close(resolve));
  });
  return { url: `ws://127.0.0.1:${wss.address().port}/ws`, connections };
}
