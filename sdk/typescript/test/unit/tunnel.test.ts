import assert from "node:assert/strict";
import { once } from "node:events";
import net from "node:net";
import { after, before, describe, it } from "node:test";

import type { WebSocket } from "ws";

import { SandboxClient, SandboxException, type Sandbox, type Tunnel } from "../../src/index.js";
import { sandboxJson, startFake, type Fake, type Recorded } from "./fake.js";

/** Send `data` through the tunnel and read until the peer closes. */
async function roundTrip(tunnel: Tunnel, data: Buffer, endAfterWrite = false): Promise<Buffer> {
  const socket = net.connect(tunnel.localAddress);
  await once(socket, "connect");
  const chunks: Buffer[] = [];
  socket.on("data", (chunk: Buffer) => chunks.push(chunk));
  socket.write(data);
  if (endAfterWrite) socket.end();
  await once(socket, "close");
  return Buffer.concat(chunks);
}

describe("Tunnel against a fake agent", () => {
  let fake: Fake;
  let sandbox: Sandbox;
  let onSocket: (ws: WebSocket, req: Recorded) => void;

  before(async () => {
    fake = await startFake(
      () => ({ json: sandboxJson({ sandbox_url: `${fake.url}/ignored-prefix` }) }),
      (ws, req) => onSocket(ws, req),
    );
    sandbox = await new SandboxClient({ apiUrl: fake.url, apiKey: "k" }).connect("sbx1");
  });
  after(async () => {
    await fake.close();
  });

  it("relays bytes both ways as binary frames over the self-routing URL", async () => {
    const seen: { binary: boolean; data: Buffer }[] = [];
    onSocket = (ws) => {
      ws.on("message", (data: Buffer, isBinary: boolean) => {
        seen.push({ binary: isBinary, data });
        ws.send(Buffer.concat([Buffer.from("echo:"), data]));
        if (data.toString().endsWith("!")) ws.close(1000);
      });
    };
    const tunnel = await sandbox.createTunnel(8080);
    try {
      assert.equal(tunnel.remotePort, 8080);
      assert.equal(tunnel.localHost, "127.0.0.1");
      assert.ok(tunnel.localPort > 0);
      assert.deepEqual(tunnel.localAddress, { host: "127.0.0.1", port: tunnel.localPort });
      assert.equal(tunnel.websocketUrl, `ws://localhost:${fake.port}/sandboxes/sbx1/api/v1/tunnels/tcp?port=8080`);
      const reply = await roundTrip(tunnel, Buffer.from("ping!"));
      assert.equal(reply.toString(), "echo:ping!");
      assert.ok(seen.every((m) => m.binary));
      const upgrade = fake.requests.at(-1)!;
      assert.equal(upgrade.path, "/sandboxes/sbx1/api/v1/tunnels/tcp");
      assert.equal(upgrade.query.get("port"), "8080");
      assert.equal(upgrade.headers.authorization, "Bearer k");
      // A second connection gets its own socket.
      assert.equal((await roundTrip(tunnel, Buffer.from("again!"))).toString(), "echo:again!");
    } finally {
      await tunnel.close();
    }
    assert.equal(tunnel.closed, true);
  });

  it("relays what the sandbox side sends first, right after the upgrade (a server banner)", async () => {
    onSocket = (ws) => {
      ws.send(Buffer.from("RFB 003.008\n"));
      ws.on("message", () => ws.close(1000));
    };
    const tunnel = await sandbox.createTunnel(5901);
    try {
      for (let i = 0; i < 5; i++) {
        assert.equal((await roundTrip(tunnel, Buffer.from("x"))).toString(), "RFB 003.008\n");
      }
    } finally {
      await tunnel.close();
    }
  });

  it("closes the sandbox side when the local side ends", async () => {
    let closedByClient: () => void = () => undefined;
    const sandboxSideClosed = new Promise<void>((resolve) => (closedByClient = resolve));
    onSocket = (ws) => {
      ws.on("close", () => closedByClient());
    };
    const tunnel = await sandbox.createTunnel(5432, { localPort: 0, localHost: "127.0.0.1" });
    try {
      await roundTrip(tunnel, Buffer.from("x"), true);
      await sandboxSideClosed;
    } finally {
      await tunnel.close();
    }
  });

  it("closes a local connection the sandbox refuses, and keeps listening", async () => {
    const fakeNoUpgrade = await startFake(() => ({ json: sandboxJson({ sandbox_url: `http://localhost:${port()}` }) }));
    const port = (): number => fakeNoUpgrade.port;
    try {
      const other = await new SandboxClient({ apiUrl: fakeNoUpgrade.url }).connect("sbx1");
      const tunnel = await other.createTunnel(9999);
      const errors: unknown[] = [];
      tunnel.on("connectionError", (error) => errors.push(error));
      try {
        assert.equal((await roundTrip(tunnel, Buffer.from("hello"))).length, 0);
        assert.equal((await roundTrip(tunnel, Buffer.from("hello"))).length, 0);
        assert.equal(errors.length, 2);
        assert.ok(errors[0] instanceof SandboxException);
      } finally {
        await tunnel.close();
      }
    } finally {
      await fakeNoUpgrade.close();
    }
  });

  it("rejects bad ports and a port already in use", async () => {
    await assert.rejects(sandbox.createTunnel(0), RangeError);
    await assert.rejects(sandbox.createTunnel(80, { localPort: -1 }), RangeError);
    const first = await sandbox.createTunnel(80);
    try {
      await assert.rejects(sandbox.createTunnel(80, { localPort: first.localPort }), /binding the tunnel listener/);
    } finally {
      await first.close();
    }
  });
});
