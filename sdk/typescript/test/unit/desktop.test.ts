/**
 * The Desktop handle against a scripted RFB server: the events each call sends, input checks, the
 * closed handle; and `Sandbox.connectDesktop()` against a fake agent: the port probes, the tunnel
 * WebSocket (RFB in binary frames), timeouts, and cleaning up after a failed connect.
 */

import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";

import type { WebSocket } from "ws";

import {
  Desktop,
  RemoteAPIError,
  SandboxClient,
  SandboxError,
  SandboxTimeoutError,
  type Sandbox,
} from "../../src/index.js";
import { openDesktop } from "../../src/desktop.js";
import { webSocketTransport } from "../../src/transport.js";
import {
  decodePng,
  framebufferUpdate,
  pixel,
  rawRect,
  serveHandshake,
  transportPair,
  type ServeOptions,
  type ServerEnd,
} from "./memory.js";
import { sandboxJson, startFake, type Fake, type Recorded } from "./fake.js";

const API = "/sandboxes/sbx1/api/v1";

async function desktopPair(options: ServeOptions = { width: 100, height: 50 }): Promise<{ desktop: Desktop; server: ServerEnd }> {
  const [client, server] = transportPair();
  const [desktop] = await Promise.all([openDesktop(client, {}), serveHandshake(server, options)]);
  return { desktop, server };
}

/** The client messages sent so far, in hex, one per event (pointer: 6 bytes, key: 8 bytes). */
async function sent(server: ServerEnd): Promise<string[]> {
  const data = Buffer.from(await server.drain());
  const out: string[] = [];
  for (let offset = 0; offset < data.length; ) {
    const size = data[offset] === 5 ? 6 : data[offset] === 4 ? 8 : data[offset] === 3 ? 10 : 1;
    out.push(data.toString("hex", offset, offset + size));
    offset += size;
  }
  return out;
}

const pointer = (mask: number, x: number, y: number): string =>
  Buffer.from([5, mask, x >> 8, x & 0xff, y >> 8, y & 0xff]).toString("hex");
const key = (down: boolean, keysym: number): string => {
  const out = Buffer.alloc(8);
  out[0] = 4;
  out[1] = down ? 1 : 0;
  out.writeUInt32BE(keysym, 4);
  return out.toString("hex");
};

describe("Desktop input", () => {
  it("moves, presses, releases and clicks, tracking the pointer and held buttons", async () => {
    const { desktop, server } = await desktopPair();
    assert.equal(desktop.width, 100);
    assert.equal(desktop.height, 50);
    assert.equal(String(desktop), "Desktop(100x50, closed=false)");
    await desktop.moveMouse(10, 20);
    await desktop.click();
    await desktop.click(30, 40, "right");
    await desktop.mousePress("left", 1, 2);
    await desktop.moveMouse(5, 6); // a drag: the left button stays down
    await desktop.mouseRelease();
    await desktop.leftClick(7, 8);
    await desktop.middleClick();
    await desktop.rightClick(9, 9);
    assert.deepEqual(await sent(server), [
      pointer(0, 10, 20),
      pointer(0, 10, 20), pointer(1, 10, 20), pointer(0, 10, 20),
      pointer(0, 30, 40), pointer(4, 30, 40), pointer(0, 30, 40),
      pointer(0, 1, 2), pointer(1, 1, 2),
      pointer(1, 5, 6),
      pointer(1, 5, 6), pointer(0, 5, 6),
      pointer(0, 7, 8), pointer(1, 7, 8), pointer(0, 7, 8),
      pointer(0, 7, 8), pointer(2, 7, 8), pointer(0, 7, 8),
      pointer(0, 9, 9), pointer(4, 9, 9), pointer(0, 9, 9),
    ]);
    await desktop.close();
  });

  it("double-clicks with a pause, and scrolls with wheel buttons 4 and 5", async () => {
    const { desktop, server } = await desktopPair();
    const started = Date.now();
    await desktop.doubleClick(3, 4, "left", 120);
    assert.ok(Date.now() - started >= 100, "the two clicks are delayMs apart");
    await desktop.scroll(2, 50, 25);
    await desktop.scrollDown();
    await desktop.scrollUp(1, 0, 0);
    await desktop.scroll(0);
    assert.deepEqual(await sent(server), [
      pointer(0, 3, 4), pointer(1, 3, 4), pointer(0, 3, 4), pointer(1, 3, 4), pointer(0, 3, 4),
      pointer(0, 50, 25), pointer(8, 50, 25), pointer(0, 50, 25), pointer(8, 50, 25), pointer(0, 50, 25),
      pointer(0, 50, 25), pointer(16, 50, 25), pointer(0, 50, 25),
      pointer(0, 0, 0), pointer(8, 0, 0), pointer(0, 0, 0),
      pointer(0, 0, 0),
    ]);
    await desktop.close();
  });

  it("sends key events: down, up, chords in order then reverse, and text by code point", async () => {
    const { desktop, server } = await desktopPair();
    await desktop.keyDown("Shift");
    await desktop.keyUp("shift");
    await desktop.press("Enter");
    await desktop.press(["ctrl", "alt", "Delete"]);
    await desktop.typeText("aé€\n");
    await desktop.typeText("");
    assert.deepEqual(await sent(server), [
      key(true, 0xffe1), key(false, 0xffe1),
      key(true, 0xff0d), key(false, 0xff0d),
      key(true, 0xffe3), key(true, 0xffe9), key(true, 0xffff), key(false, 0xffff), key(false, 0xffe9), key(false, 0xffe3),
      key(true, 0x61), key(false, 0x61), key(true, 0xe9), key(false, 0xe9),
      key(true, 0x010020ac), key(false, 0x010020ac), key(true, 0xff0d), key(false, 0xff0d),
    ]);
    await desktop.close();
  });

  it("refuses bad input before sending anything", async () => {
    const { desktop, server } = await desktopPair();
    const outside = (error: unknown): boolean =>
      error instanceof RangeError && /outside the 100x50 screen: x must be in 0\.\.99, y in 0\.\.49/.test(error.message);
    await assert.rejects(desktop.moveMouse(100, 0), outside);
    await assert.rejects(desktop.click(0, 50), outside);
    await assert.rejects(desktop.moveMouse(-1, 3), outside);
    await assert.rejects(desktop.moveMouse(1.5, 3), /x must be an integer/);
    await assert.rejects(desktop.click(5), /give both x and y, or neither/);
    await assert.rejects(desktop.moveMouse(undefined as unknown as number, 1), /x and y are required/);
    const badButton = (error: unknown): boolean =>
      error instanceof TypeError && /unknown mouse button "back": use one of left, middle, right/.test(error.message);
    await assert.rejects(desktop.click(1, 1, "back" as "left"), badButton);
    await assert.rejects(desktop.mousePress("back" as "left"), badButton);
    await assert.rejects(desktop.doubleClick(1, 1, "left", -5), /delayMs must be a number of milliseconds between 0 and 60000/);
    await assert.rejects(desktop.scroll(1.5), /steps must be an integer/);
    await assert.rejects(desktop.press([]), /non-empty list of keys/);
    await assert.rejects(desktop.press(["ctrl", "hyper"]), /unknown key "hyper": use a single character or one of ctrl, control/);
    await assert.rejects(desktop.keyDown("nope"), RangeError);
    await assert.rejects(desktop.typeText("ok\x01"), /control character/);
    for (const timeoutSecs of [0, -1, Number.NaN, Infinity, "5" as unknown as number]) {
      await assert.rejects(desktop.screenshot({ timeoutSecs }), (error: unknown) => error instanceof RangeError && /timeoutSecs must be a positive number/.test(error.message));
    }
    assert.equal(server.pending, 0, "nothing was sent");
    await desktop.close();
  });

  it("takes a screenshot as PNG", async () => {
    const { desktop, server } = await desktopPair({ width: 3, height: 2 });
    const shooting = desktop.screenshot({ timeoutSecs: 5 });
    await server.read(10);
    await server.send(framebufferUpdate(rawRect(0, 0, 3, 2, [10, 20, 30])));
    const image = decodePng(await shooting);
    assert.deepEqual([image.width, image.height], [3, 2]);
    assert.deepEqual(pixel(image, 2, 1), [10, 20, 30]);
    await assert.rejects(desktop.screenshot({ timeoutSecs: 0.05 }), SandboxTimeoutError);
    await desktop.close();
  });

  it("throws on a closed handle, and closes idempotently", async () => {
    const { desktop, server } = await desktopPair();
    await desktop.close();
    await desktop.close();
    assert.equal(desktop.closed, true);
    assert.ok(server.closed);
    const closed = (error: unknown): boolean => error instanceof SandboxError && error.message === "the desktop handle is closed";
    await assert.rejects(desktop.screenshot(), closed);
    await assert.rejects(desktop.moveMouse(1, 1), closed);
    await assert.rejects(desktop.click(), closed);
    await assert.rejects(desktop.doubleClick(), closed);
    await assert.rejects(desktop.scrollUp(), closed);
    await assert.rejects(desktop.keyDown("a"), closed);
    await assert.rejects(desktop.press("a"), closed);
    await assert.rejects(desktop.typeText("a"), closed);
    assert.equal(desktop.width, 100, "the size stays readable");
  });

  it("says the handle is closed when the server goes away, and disposes with `await using`", async () => {
    const { desktop, server } = await desktopPair();
    const shooting = desktop.screenshot();
    await server.close();
    await assert.rejects(shooting, /^SandboxError: the desktop handle is closed: the connection ended \(/);
    await assert.rejects(desktop.moveMouse(1, 1), /the desktop handle is closed: the connection ended/);
    assert.equal(desktop.closed, true);

    const other = await desktopPair();
    {
      await using disposable = other.desktop;
      assert.equal(disposable.closed, false);
    }
    assert.equal(other.desktop.closed, true);
    assert.ok(other.server.closed);
  });
});

describe("Sandbox.connectDesktop against a fake agent", () => {
  let fake: Fake;
  let sandbox: Sandbox;
  let probes: Recorded[];
  /** Exit code of each probe, in turn (the last one repeats). */
  let probeExits: number[];
  let onSocket: (ws: WebSocket, req: Recorded) => void;

  before(async () => {
    fake = await startFake(
      (req) => {
        if (req.path === `${API}/processes/run`) {
          probes.push(req);
          const exit = probeExits.length > 1 ? probeExits.shift()! : probeExits[0]!;
          return {
            headers: { "content-type": "text/event-stream" },
            chunks: [`data: ${JSON.stringify({ pid: 9 })}\n\n`, `data: ${JSON.stringify({ exit_code: exit })}\n\n`],
          };
        }
        return { json: sandboxJson({ sandbox_url: fake.url }) };
      },
      (ws, req) => onSocket(ws, req),
    );
    sandbox = await new SandboxClient({ apiUrl: fake.url, apiKey: "k" }).connect("sbx1");
  });
  after(async () => {
    await fake.close();
  });

  /** Serve RFB inside each tunnel WebSocket; resolves with what the server side saw. */
  function serveRfb(options: ServeOptions): { frames: boolean[]; closed: Promise<void> } {
    const frames: boolean[] = [];
    let closedResolve: () => void = () => undefined;
    const closed = new Promise<void>((resolve) => (closedResolve = resolve));
    onSocket = (ws) => {
      ws.on("message", (_data: Buffer, isBinary: boolean) => frames.push(isBinary));
      ws.on("close", () => closedResolve());
      serveHandshake(webSocketTransport(ws, "server side"), options).catch(() => undefined);
    };
    return { frames, closed };
  }

  it("probes the port until it opens, then speaks RFB in the tunnel's binary frames", async () => {
    probes = [];
    probeExits = [1, 1, 0];
    const { frames } = serveRfb({ width: 640, height: 480, security: [2], password: "tensorlake" });
    const started = Date.now();
    const desktop = await sandbox.connectDesktop({ password: "tensorlake" });
    try {
      assert.equal(probes.length, 3);
      assert.ok(Date.now() - started >= 450, "probes are 250 ms apart");
      assert.deepEqual(JSON.parse(probes[0]!.body.toString()), {
        command: "/bin/bash",
        args: ["-c", "exec 3<>/dev/tcp/127.0.0.1/5901"],
        timeout: 2,
        batch_output: true,
      });
      const upgrade = fake.requests.find((r) => r.path.endsWith("/tunnels/tcp"))!;
      assert.equal(upgrade.path, `${API}/tunnels/tcp`);
      assert.equal(upgrade.query.get("port"), "5901");
      assert.equal(upgrade.headers.authorization, "Bearer k");
      assert.equal(desktop.width, 640);
      assert.equal(desktop.height, 480);
      assert.ok(frames.length > 0 && frames.every((binary) => binary), "binary frames only");
    } finally {
      await desktop.close();
    }
  });

  it("gives up when nothing listens, naming the port and the timeout", async () => {
    probes = [];
    probeExits = [1];
    fake.requests.length = 0;
    const started = Date.now();
    await assert.rejects(
      sandbox.connectDesktop({ port: 5999, connectTimeoutSecs: 0.6 }),
      (error: unknown) =>
        error instanceof SandboxTimeoutError &&
        error.message === "nothing accepted connections on port 5999 in the sandbox within 0.6 s: is a VNC server running?",
    );
    assert.ok(Date.now() - started < 3000);
    assert.ok(probes.length >= 2 && probes.length <= 4, `${probes.length} probes`);
    assert.ok(!fake.requests.some((r) => r.path.endsWith("/tunnels/tcp")), "no tunnel opened");
  });

  it("closes the tunnel when the handshake fails", async () => {
    probes = [];
    probeExits = [0];
    const { closed } = serveRfb({ security: [2], password: "right" });
    await assert.rejects(sandbox.connectDesktop({ password: "wrong" }), /authentication failed/);
    await closed;
    const noPassword = serveRfb({ security: [2], password: "right" });
    await assert.rejects(sandbox.connectDesktop(), /requires a password/);
    await noPassword.closed;
  });

  it("maps a refused tunnel like any proxy answer", async () => {
    probes = [];
    probeExits = [0];
    const refusing = await startFake((req) =>
      req.path.endsWith("/processes/run")
        ? { headers: { "content-type": "text/event-stream" }, chunks: [`data: {"exit_code":0}\n\n`] }
        : { json: sandboxJson({ sandbox_url: `http://localhost:${refusing.port}` }) },
    );
    try {
      const other = await new SandboxClient({ apiUrl: refusing.url }).connect("sbx1");
      // The fake has no WebSocket handler: the upgrade is dropped.
      await assert.rejects(other.connectDesktop({ connectTimeoutSecs: 2 }), SandboxError);
    } finally {
      await refusing.close();
    }
    const gone = await startFake((req) =>
      req.path.endsWith("/processes/run")
        ? { status: 502, json: { message: "sandbox unreachable" } }
        : { json: sandboxJson({ sandbox_url: `http://localhost:${gone.port}` }) },
    );
    try {
      const other = await new SandboxClient({ apiUrl: gone.url }).connect("sbx1");
      await assert.rejects(other.connectDesktop(), (error: unknown) => error instanceof RemoteAPIError && error.statusCode === 502);
    } finally {
      await gone.close();
    }
  });

  it("checks its options before sending anything", async () => {
    fake.requests.length = 0;
    await assert.rejects(sandbox.connectDesktop({ port: 0 }), /port must be an integer between 1 and 65535/);
    await assert.rejects(sandbox.connectDesktop({ port: 70000 }), RangeError);
    for (const connectTimeoutSecs of [0, -2, Number.NaN, "10" as unknown as number]) {
      await assert.rejects(sandbox.connectDesktop({ connectTimeoutSecs }), /connectTimeoutSecs must be a positive number of seconds/);
    }
    await assert.rejects(sandbox.connectDesktop({ password: 1234 as unknown as string }), /password must be a string/);
    await assert.rejects(sandbox.connectDesktop({ shared: "yes" as unknown as boolean }), /shared must be a boolean/);
    assert.equal(fake.requests.length, 0);
  });
});
