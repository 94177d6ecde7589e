/** Terminals (PTY) and TCP tunnels in a real sandbox of a real `alcove serve`. */

import assert from "node:assert/strict";
import { once } from "node:events";
import net from "node:net";
import { after, before, describe, it } from "node:test";

import WebSocket from "ws";

import {
  RemoteAPIError,
  SandboxError,
  SandboxException,
  SandboxTimeoutError,
  type Sandbox,
  type SandboxClient,
} from "../../src/index.js";
import { AlcoveServer, eventually, shutdown } from "./harness.js";

const TIMEOUT = { timeout: 60_000 };

describe("terminals and tunnels against a real server", { timeout: 150_000 }, () => {
  let server: AlcoveServer;
  let client: SandboxClient;
  let sandbox: Sandbox;

  before(async () => {
    server = await AlcoveServer.start();
    client = server.client();
    sandbox = await client.createAndConnect({ name: "ts-interactive" });
  });

  after(() => shutdown(server, sandbox));

  it("echoes through a PTY, resizes it and reports the exit code", TIMEOUT, async () => {
    const pty = await sandbox.createPty({ command: "bash", args: ["--norc", "--noprofile"], env: { PS1: "sbx$ " }, cols: 80, rows: 24 });
    await pty.connect();
    try {
      await pty.readUntil("sbx$ ", 15_000);
      await pty.send("echo $((6 * 7))\n");
      const echoed = (await pty.readUntil("sbx$ ", 15_000)).toString();
      // The echo of the command line does not hold "42"; its output does.
      assert.ok(echoed.includes("42\r\n"), JSON.stringify(echoed));
      await pty.resize(100, 30);
      await pty.send("stty size\n");
      // (bash may redraw its prompt on the resize first)
      await pty.readUntil("30 100\r\n", 15_000);
      await pty.send("exit 5\n");
      assert.equal(await pty.wait(15_000), 5);
      assert.equal(pty.exitCode, 5);
    } finally {
      await pty.close();
    }
  });

  it("reattaches to a PTY with its id and token, and kills it", TIMEOUT, async () => {
    const pty = await sandbox.createPty({ command: "bash", args: ["--norc", "--noprofile"], env: { PS1: "sbx$ " } });
    await pty.connect();
    await pty.readUntil("sbx$ ", 15_000);
    await pty.send("MARK=kept-across-reconnects\n");
    await pty.readUntil("sbx$ ", 15_000);
    await pty.close();
    assert.equal(pty.connected, false);

    const again = await sandbox.connectPty(pty.sessionId, pty.token);
    try {
      await again.send("echo $MARK\n");
      await again.readUntil("kept-across-reconnects\r\n", 15_000);
      await again.kill();
      // A killed session ends with the close reason "session terminated", not an exit code.
      await assert.rejects(again.wait(15_000), (error: unknown) => error instanceof SandboxError && /terminated/.test(String(error)));
      await again.kill(); // a session already gone counts as killed
      await assert.rejects(sandbox.connectPty(pty.sessionId, pty.token), (error: unknown) => error instanceof RemoteAPIError && error.statusCode === 404);
    } finally {
      await again.close();
    }
  });

  it("drops the older of two connections to one session", TIMEOUT, async () => {
    const first = await sandbox.createPty({ command: "bash", args: ["--norc", "--noprofile"], env: { PS1: "sbx$ " } });
    await first.connect();
    await first.readUntil("sbx$ ", 15_000);
    const second = await sandbox.connectPty(first.sessionId, first.token);
    try {
      await second.send("echo $((6*7))\n");
      await second.readUntil("42\r\n", 15_000);
      await assert.rejects(first.readUntil("never", 15_000), (error: unknown) => error instanceof SandboxError && !(error instanceof SandboxTimeoutError));
    } finally {
      await second.kill();
      await second.close();
      await first.close();
    }
  });

  it("gives a websocketUrl any WebSocket client can use", TIMEOUT, async () => {
    const pty = await sandbox.createPty({ command: "sh", args: ["-c", "read line; echo got:$line; exit 3"] });
    const ws = new WebSocket(pty.websocketUrl);
    await once(ws, "open");
    const output: Buffer[] = [];
    let closeReason = "";
    ws.on("message", (data: Buffer) => {
      if (data[0] === 0) output.push(data.subarray(1));
    });
    const closed = new Promise<void>((resolve) =>
      ws.once("close", (_code: number, reason: Buffer) => {
        closeReason = reason.toString();
        resolve();
      }),
    );
    ws.send(Uint8Array.of(2));
    ws.send(Buffer.concat([Uint8Array.of(0), Buffer.from("hi\n")]));
    await closed;
    assert.match(Buffer.concat(output).toString(), /got:hi/);
    assert.equal(closeReason, "exit:3");
  });

  it("tunnels a local port to python -m http.server in the sandbox", TIMEOUT, async () => {
    await sandbox.writeFile("/srv/www/hello.txt", "hello through the tunnel\n");
    const web = await sandbox.startProcess("python", ["-m", "http.server", "8000", "--bind", "0.0.0.0"], { workingDir: "/srv/www" });
    const tunnel = await sandbox.createTunnel(8000);
    try {
      assert.equal(tunnel.localHost, "127.0.0.1");
      const body = await eventually("the web server through the tunnel", async () => {
        const response = await fetch(`http://${tunnel.localHost}:${tunnel.localPort}/hello.txt`);
        return response.ok ? await response.text() : undefined;
      });
      assert.equal(body, "hello through the tunnel\n");
      // Several connections at once, each with its own socket.
      const bodies = await Promise.all(
        [1, 2, 3].map(async () => (await fetch(`http://127.0.0.1:${tunnel.localPort}/hello.txt`)).text()),
      );
      assert.deepEqual(bodies, Array(3).fill("hello through the tunnel\n"));
    } finally {
      await tunnel.close();
      await sandbox.killProcess(web.pid);
    }
    await assert.rejects(fetch(`http://127.0.0.1:${tunnel.localPort}/`));
  });

  it("closes a local connection when nothing listens on the sandbox port", TIMEOUT, async () => {
    const tunnel = await sandbox.createTunnel(5999);
    const errors: unknown[] = [];
    tunnel.on("connectionError", (error) => errors.push(error));
    try {
      const socket = net.connect(tunnel.localAddress);
      socket.on("error", () => undefined);
      socket.write("hello?");
      await once(socket, "close");
      assert.equal(errors.length, 1);
      assert.ok(errors[0] instanceof SandboxException);
      assert.match(String(errors[0]), /tunnel to sandbox port 5999/);
    } finally {
      await tunnel.close();
    }
  });
});
