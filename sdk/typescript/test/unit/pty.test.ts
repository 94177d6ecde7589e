import assert from "node:assert/strict";
import http from "node:http";
import type { AddressInfo } from "node:net";
import { after, afterEach, before, describe, it } from "node:test";

import type { WebSocket } from "ws";

import { AuthenticationError, RemoteAPIError, SandboxClient, SandboxError, SandboxTimeoutError, type Sandbox } from "../../src/index.js";
import { decodeFrame, exitCodeFromReason, inputFrame, PtySession, PtyState, ptyBody, READY_FRAME, resizeFrame } from "../../src/pty.js";
import { sandboxJson, startFake, type Fake, type Recorded } from "./fake.js";

function exitFrame(code: number): Buffer {
  const frame = Buffer.alloc(5);
  frame.writeUInt8(3, 0);
  frame.writeInt32BE(code, 1);
  return frame;
}

describe("PTY frames", () => {
  it("encodes input, resize and READY", () => {
    assert.deepEqual([...inputFrame("hé")], [0, 0x68, 0xc3, 0xa9]);
    assert.deepEqual([...inputFrame(Uint8Array.of(1, 2))], [0, 1, 2]);
    assert.deepEqual([...resizeFrame(120, 40)], [1, 0, 120, 0, 40]);
    assert.deepEqual([...resizeFrame(65535, 1)], [1, 0xff, 0xff, 0, 1]);
    assert.deepEqual([...READY_FRAME], [2]);
    assert.throws(() => resizeFrame(0, 10), RangeError);
    assert.throws(() => resizeFrame(80, 70000), RangeError);
  });

  it("decodes output and exit, ignores text, empty and unknown frames", () => {
    assert.deepEqual(decodeFrame(Buffer.from([0, 0x68, 0x69])), { type: "output", data: Buffer.from("hi") });
    assert.deepEqual(decodeFrame(exitFrame(-1)), { type: "exit", code: -1 });
    assert.deepEqual(decodeFrame(exitFrame(130)), { type: "exit", code: 130 });
    assert.equal(decodeFrame("text"), null);
    assert.equal(decodeFrame(new Uint8Array(0)), null);
    assert.equal(decodeFrame(Uint8Array.of(9, 1)), null);
    assert.equal(decodeFrame(Uint8Array.of(3, 0, 0)), null);
  });

  it("reads exit:N close reasons", () => {
    assert.equal(exitCodeFromReason("exit:0"), 0);
    assert.equal(exitCodeFromReason("exit: 42"), 42);
    assert.equal(exitCodeFromReason("exit:-9"), -9);
    assert.equal(exitCodeFromReason("exit:what"), -1);
    assert.equal(exitCodeFromReason("session terminated"), null);
    assert.equal(exitCodeFromReason(""), null);
  });

  it("builds the create body with defaults", () => {
    assert.deepEqual(ptyBody(), { command: "bash", rows: 24, cols: 80 });
    assert.deepEqual(ptyBody({ command: "sh", args: ["-l"], env: { TERM: "xterm" }, workingDir: "/root", cols: 100, rows: 30 }), {
      command: "sh",
      args: ["-l"],
      env: { TERM: "xterm" },
      working_dir: "/root",
      rows: 30,
      cols: 100,
    });
  });

  it("keeps unread output and finds patterns across frames", () => {
    const state = new PtyState("p1");
    state.feed(Buffer.from([0, ...Buffer.from("ab$ ")]));
    state.feed(Buffer.from([0, ...Buffer.from("cd")]));
    assert.equal(state.takeUntil(Buffer.from("$ "))?.toString(), "ab$ ");
    assert.equal(state.takeUntil(Buffer.from("zz")), null);
    assert.equal(state.take().toString(), "cd");
    state.feed(exitFrame(3));
    state.feed(exitFrame(4));
    assert.equal(state.exitCode, 3);
    assert.equal(new PtyState("p").closed(1000, "exit:5"), null);
    assert.match(String(new PtyState("p").closed(1000, "session terminated")), /terminated/);
    assert.match(String(new PtyState("p").closed(1006, "")), /closed unexpectedly \(1006\)/);
  });
});

describe("PtySession against a fake agent", () => {
  let fake: Fake;
  let client: SandboxClient;
  let sandbox: Sandbox;
  let onSocket: (ws: WebSocket, req: Recorded) => void;
  const killed: string[] = [];

  before(async () => {
    fake = await startFake(
      (req) => {
        if (req.path.startsWith("/v1/namespaces/default/sandboxes")) return { json: sandboxJson({ sandbox_url: fake.url }) };
        if (req.method === "POST" && req.path === "/sandboxes/sbx1/api/v1/pty") {
          return { status: 201, json: { session_id: "pty1", token: "tok123" } };
        }
        if (req.method === "DELETE") {
          killed.push(req.path);
          return req.path.endsWith("/gone") ? { status: 404, json: { error: "no session", code: "NOT_FOUND" } } : { status: 204 };
        }
        return { status: 404, json: { error: "unexpected" } };
      },
      (ws, req) => onSocket(ws, req),
    );
    client = new SandboxClient({ apiUrl: fake.url, apiKey: "k" });
    sandbox = await client.connect("sbx1");
    fake.requests.length = 0;
  });
  after(async () => {
    await fake.close();
  });
  afterEach(() => {
    fake.requests.length = 0;
  });

  it("sends READY first, then input and resize; reads output and the exit frame", async () => {
    const received: Buffer[] = [];
    onSocket = (ws) => {
      ws.on("message", (data: Buffer) => {
        received.push(data);
        if (data[0] === 2) ws.send(Buffer.from([0, ...Buffer.from("sandbox$ ")]));
        if (data[0] === 0 && data.subarray(1).toString() === "exit 3\n") {
          ws.send(Buffer.from([0, ...Buffer.from("bye\r\n")]));
          ws.send(exitFrame(3));
          ws.close(1000, "exit:3");
        }
      });
      ws.send("a text frame is ignored");
    };
    const pty = await sandbox.createPty({ command: "bash", cols: 120, rows: 40, env: { PS1: "sandbox$ " } });
    assert.equal(pty.sessionId, "pty1");
    assert.equal(pty.token, "tok123");
    assert.equal(pty.connected, false);
    assert.equal(pty.websocketUrl, `ws://localhost:${fake.port}/sandboxes/sbx1/api/v1/pty/pty1/ws?token=tok123`);
    assert.deepEqual(JSON.parse(fake.requests[0]!.body.toString()), { command: "bash", env: { PS1: "sandbox$ " }, rows: 40, cols: 120 });
    await assert.rejects(pty.read(10), /not connected/);

    await pty.connect();
    assert.equal(pty.connected, true);
    const upgrade = fake.requests.at(-1)!;
    assert.equal(upgrade.path, "/sandboxes/sbx1/api/v1/pty/pty1/ws");
    assert.equal(upgrade.query.get("token"), "tok123");
    assert.equal(upgrade.headers["x-pty-token"], "tok123");
    assert.equal(upgrade.headers.authorization, "Bearer k");

    assert.equal((await pty.readUntil("$ ", 5000)).toString(), "sandbox$ ");
    await pty.resize(100, 30);
    await pty.send("exit 3\n");
    assert.equal(await pty.wait(5000), 3);
    assert.equal(pty.exitCode, 3);
    assert.equal((await pty.read(1000)).toString(), "bye\r\n");
    assert.equal((await pty.read(1000)).length, 0);
    assert.deepEqual(received.map((frame) => frame[0]), [2, 1, 0]);
    assert.deepEqual([...received[1]!], [1, 0, 100, 0, 30]);
    await assert.rejects(pty.send("more"), /has exited with code 3/);
    await pty.close();
  });

  it("takes the exit code from an exit:N close alone, and reports a pattern that never came", async () => {
    onSocket = (ws) => {
      ws.once("message", () => {
        ws.send(Buffer.from([0, ...Buffer.from("partial")]));
        ws.close(1000, "exit:7");
      });
    };
    const pty = await sandbox.connectPty("pty1", "tok123");
    await assert.rejects(pty.readUntil("never", 5000), (error: unknown) => error instanceof SandboxError && /exited with code 7/.test(String(error)));
    assert.equal(await pty.wait(1000), 7);
    assert.equal((await pty.read()).toString(), "partial");
  });

  it("times out reads and keeps the output", async () => {
    onSocket = (ws) => ws.once("message", () => ws.send(Buffer.from([0, ...Buffer.from("abc")])));
    const pty = await sandbox.connectPty("pty1", "tok123");
    await assert.rejects(pty.readUntil("xyz", 200), (error: unknown) => error instanceof SandboxTimeoutError && /abc/.test(String(error)));
    await assert.rejects(pty.wait(50), SandboxTimeoutError);
    assert.equal((await pty.read(1000)).toString(), "abc");
    await assert.rejects(pty.read(50), SandboxTimeoutError);
    await pty.close();
    assert.equal(pty.connected, false);
    assert.equal(pty.exitCode, null);
  });

  it("reports a terminated session and an unexpected close", async () => {
    onSocket = (ws) => ws.once("message", () => ws.close(1000, "session terminated"));
    const pty = await sandbox.connectPty("pty1", "tok123");
    await assert.rejects(pty.wait(5000), /PTY session pty1 terminated/);
    onSocket = (ws) => ws.once("message", () => ws.terminate());
    const other = await sandbox.connectPty("pty1", "tok123");
    await assert.rejects(other.read(5000), /closed unexpectedly/);
  });

  it("maps a refused upgrade like an HTTP answer", async () => {
    const refusing = http.createServer((_req, res) => {
      res.setHeader("content-type", "application/json");
      res.end(JSON.stringify(sandboxJson({ sandbox_url: `http://localhost:${(refusing.address() as AddressInfo).port}` })));
    });
    let status = "403 Forbidden";
    refusing.on("upgrade", (_req, socket) => {
      const body = JSON.stringify({ error: "bad token", code: "BAD_TOKEN" });
      socket.end(`HTTP/1.1 ${status}\r\ncontent-type: application/json\r\ncontent-length: ${body.length}\r\n\r\n${body}`);
    });
    await new Promise<void>((resolve) => refusing.listen(0, "127.0.0.1", resolve));
    try {
      const port = (refusing.address() as AddressInfo).port;
      const other = await new SandboxClient({ apiUrl: `http://localhost:${port}` }).connect("sbx1");
      await assert.rejects(other.connectPty("pty1", "bad"), (error: unknown) => {
        assert.ok(error instanceof AuthenticationError);
        assert.equal(error.code, "BAD_TOKEN");
        assert.match(error.message, /^PTY session pty1: API error \(status 403, BAD_TOKEN\): bad token/);
        return true;
      });
      status = "502 Bad Gateway";
      await assert.rejects(other.connectPty("pty1", "bad"), (error: unknown) => error instanceof RemoteAPIError && error.statusCode === 502);
    } finally {
      refusing.closeAllConnections();
      await new Promise<void>((resolve) => refusing.close(() => resolve()));
    }
  });

  it("kills with DELETE; a session already gone counts as killed", async () => {
    const pty = await sandbox.createPty();
    await pty.kill();
    await new PtySession(sandbox, "gone", "t").kill();
    assert.deepEqual(killed, ["/sandboxes/sbx1/api/v1/pty/pty1", "/sandboxes/sbx1/api/v1/pty/gone"]);
  });
});
