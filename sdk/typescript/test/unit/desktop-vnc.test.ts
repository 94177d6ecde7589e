/**
 * The desktop client against a real VNC server on this host: Xvfb (1280x800x24, display :140 or
 * up) and x11vnc, reached over a plain TCP socket and, through `Sandbox.connectDesktop()`, over a
 * fake agent whose tunnel WebSocket relays to x11vnc. Skipped when Xvfb / x11vnc are missing
 * (`apt-get install -y xvfb x11vnc xdotool x11-xserver-utils`).
 *
 * Keys are checked by an X client of the test's own (`xclient.ts`) that holds the focus and
 * records the key events the X server delivers.
 */

import assert from "node:assert/strict";
import net from "node:net";
import { after, before, describe, it } from "node:test";

import type { WebSocket } from "ws";

import { SandboxClient, SandboxError, type Desktop } from "../../src/index.js";
import { openDesktop } from "../../src/desktop.js";
import { socketTransport } from "../../src/transport.js";
import { sandboxJson, startFake, type Fake } from "./fake.js";
import { decodePng, pixel, type DecodedPng } from "./memory.js";
import { missingTools, SCREEN_HEIGHT, SCREEN_WIDTH, VNC_PASSWORD, VncFixture } from "./vnc.js";
import { typedText, XClient } from "./xclient.js";

const MISSING = missingTools();
const TIMEOUT = { timeout: 60_000 };

/** Connect straight to x11vnc over TCP. */
async function direct(port: number, password?: string): Promise<Desktop> {
  const socket = net.connect({ host: "127.0.0.1", port });
  await new Promise<void>((resolve, reject) => {
    socket.once("connect", resolve);
    socket.once("error", reject);
  });
  return openDesktop(socketTransport(socket, `x11vnc on port ${port}`), { password, connectTimeoutSecs: 10 });
}

async function eventually<T>(what: string, check: () => T | undefined, timeoutMs = 5000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = check();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
}

/**
 * Screenshots until (0,0), (640,400) and (1279,0) show `colour`. x11vnc serves its copy of the
 * screen, which follows X by polling (and starts polling a few seconds after the first client).
 */
async function showing(desktop: Desktop, colour: [number, number, number]): Promise<DecodedPng> {
  let image: DecodedPng | undefined;
  const deadline = Date.now() + 15_000;
  do {
    image = decodePng(await desktop.screenshot({ timeoutSecs: 10 }));
    assert.deepEqual([image.width, image.height], [SCREEN_WIDTH, SCREEN_HEIGHT]);
    if ([pixel(image, 0, 0), pixel(image, 640, 400), pixel(image, 1279, 0)].every((p) => p.join() === colour.join())) return image;
  } while (Date.now() < deadline);
  assert.fail(`the screen never showed ${colour.join(",")}: ${pixel(image, 640, 400).join(",")} at the centre`);
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)]!;
}

async function timeScreenshots(desktop: Desktop, count: number): Promise<number[]> {
  const times: number[] = [];
  for (let i = 0; i < count; i++) {
    const started = performance.now();
    // A loaded machine may take seconds; the timings are reported, not asserted
    // (bench/desktop_bench.py measures them).
    await desktop.screenshot({ timeoutSecs: 60 });
    times.push(performance.now() - started);
  }
  return times;
}

describe("Desktop against x11vnc on this host", { skip: MISSING ?? false, timeout: 180_000 }, () => {
  let fixture: VncFixture;
  let openPort: number;
  let passwordPort: number;
  let desktop: Desktop;

  before(async () => {
    fixture = await VncFixture.start();
    passwordPort = await fixture.startVnc(VNC_PASSWORD);
    openPort = await fixture.startVnc();
    desktop = await direct(passwordPort, VNC_PASSWORD);
  });
  after(async () => {
    await desktop?.close();
    await fixture?.close();
  });

  it("connects with the password and reads the screen size", TIMEOUT, () => {
    assert.equal(desktop.width, SCREEN_WIDTH);
    assert.equal(desktop.height, SCREEN_HEIGHT);
    assert.equal(desktop.closed, false);
  });

  it("takes 1280x800 PNG screenshots that follow what is drawn", TIMEOUT, async () => {
    // x11vnc draws the pointer into the screen it serves: keep it away from the pixels looked at.
    await desktop.moveMouse(1200, 700);
    assert.ok(fixture.run(["xsetroot", "-solid", "#0000ff"]).ok);
    const blue = await showing(desktop, [0, 0, 255]);
    assert.ok(fixture.run(["xsetroot", "-solid", "red"]).ok);
    const red = await showing(desktop, [255, 0, 0]);
    assert.ok(!red.rgb.equals(blue.rgb), "the pixels changed");
  });

  it("moves the pointer where X sees it, and clicks and scrolls there", TIMEOUT, async () => {
    await desktop.moveMouse(100, 200);
    await eventually("the pointer at 100,200", () => {
      const { x, y } = fixture.mouseLocation();
      return x === 100 && y === 200 ? true : undefined;
    });
    await desktop.click(640, 400);
    await desktop.doubleClick(1279, 799);
    await eventually("the pointer at 1279,799", () => {
      const { x, y } = fixture.mouseLocation();
      return x === 1279 && y === 799 ? true : undefined;
    });
    await desktop.scrollDown(2, 10, 20);
    await desktop.rightClick();
    await eventually("the pointer at 10,20", () => {
      const { x, y } = fixture.mouseLocation();
      return x === 10 && y === 20 ? true : undefined;
    });
    await assert.rejects(desktop.moveMouse(1280, 0), /outside the 1280x800 screen/);
  });

  it("types text, Unicode included, and chords that reach X", TIMEOUT, async () => {
    const x = await XClient.open(fixture.display, SCREEN_WIDTH, SCREEN_HEIGHT);
    try {
      const text = "Hello, é ü €!\n";
      await desktop.typeText(text);
      const events = await x.waitForKeyEvents((seen) => typedText(seen) === text);
      assert.equal(typedText(events), text, JSON.stringify(events.filter((e) => e.down)));

      x.clear();
      await desktop.press(["ctrl", "a"]);
      const chord = await x.waitForKeyEvents((seen) => seen.length >= 4);
      const summary = chord.map((e) => `${e.down ? "+" : "-"}${e.keysym.toString(16)}${e.state & 4 ? "^" : ""}`);
      // Control down, then "a" down and up with Control held, then Control up.
      assert.deepEqual(summary, ["+ffe3", "+61^", "-61^", "-ffe3^"]);

      // Shift held: letters come out in upper case, in chords and between keyDown / keyUp.
      x.clear();
      await desktop.press(["shift", "b"]);
      await desktop.keyDown("shift");
      await desktop.press("c");
      await desktop.keyDown("d");
      await desktop.keyUp("shift");
      await desktop.keyUp("d");
      await desktop.press("e");
      assert.equal(typedText(await x.waitForKeyEvents((seen) => typedText(seen) === "BCDe")), "BCDe");
    } finally {
      await x.close();
    }
  });

  it("refuses a wrong password, and a missing one, with clear errors", TIMEOUT, async () => {
    await assert.rejects(
      direct(passwordPort, "wrong-password"),
      (error: unknown) => error instanceof SandboxError && /authentication failed/.test(error.message),
    );
    await assert.rejects(direct(passwordPort), /requires a password \(VNC authentication\)/);
    const open = await direct(openPort);
    try {
      assert.equal(open.width, SCREEN_WIDTH);
      assert.equal(decodePng(await open.screenshot()).width, SCREEN_WIDTH);
    } finally {
      await open.close();
    }
  });

  it("speaks RFB 3.3 with VNC authentication", TIMEOUT, async () => {
    const old = await fixture.startVnc(VNC_PASSWORD, ["-rfbversion", "3.3"]);
    const legacy = await direct(old, VNC_PASSWORD);
    try {
      assert.equal(decodePng(await legacy.screenshot()).height, SCREEN_HEIGHT);
    } finally {
      await legacy.close();
    }
    await assert.rejects(direct(old, "nope"), /authentication failed/);
  });

  describe("through Sandbox.connectDesktop and the tunnel WebSocket", () => {
    let fake: Fake;
    let sockets: number;

    before(async () => {
      sockets = 0;
      fake = await startFake(
        (req) => {
          if (req.path.endsWith("/processes/run")) {
            return { headers: { "content-type": "text/event-stream" }, chunks: [`data: {"pid":1}\n\ndata: {"exit_code":0}\n\n`] };
          }
          return { json: sandboxJson({ sandbox_url: fake.url }) };
        },
        (ws: WebSocket) => {
          // The agent's side of /api/v1/tunnels/tcp: relay binary frames to x11vnc.
          sockets += 1;
          const tcp = net.connect({ host: "127.0.0.1", port: passwordPort });
          ws.on("message", (data: Buffer, isBinary: boolean) => {
            if (!isBinary) ws.close(1003);
            else tcp.write(data);
          });
          tcp.on("data", (chunk: Buffer) => ws.send(chunk, { binary: true }));
          tcp.on("close", () => ws.close());
          tcp.on("error", () => ws.terminate());
          ws.on("close", () => tcp.destroy());
        },
      );
    });
    after(async () => {
      await fake.close();
    });

    it("drives the desktop and measures screenshots", TIMEOUT, async (t) => {
      const sandbox = await new SandboxClient({ apiUrl: fake.url }).connect("sbx1");
      await using remote = await sandbox.connectDesktop({ password: VNC_PASSWORD, connectTimeoutSecs: 10 });
      assert.equal(sockets, 1);
      assert.deepEqual([remote.width, remote.height], [SCREEN_WIDTH, SCREEN_HEIGHT]);
      await remote.moveMouse(321, 123);
      await eventually("the pointer at 321,123", () => {
        const { x, y } = fixture.mouseLocation();
        return x === 321 && y === 123 ? true : undefined;
      });
      assert.ok(fixture.run(["xsetroot", "-solid", "#00ff00"]).ok);
      await remote.moveMouse(1200, 700); // x11vnc draws the pointer into the screen
      await showing(remote, [0, 255, 0]);

      // Timings on a plain screen, then on a noisy one (a random bitmap tiled over the root),
      // which is the worst case for PNG compression.
      const timings: string[] = [];
      for (const screen of ["plain", "noisy"]) {
        if (screen === "noisy") assert.ok(fixture.run(["xsetroot", "-bitmap", fixture.noiseBitmap(), "-fg", "#3366cc", "-bg", "#f0e0d0"]).ok);
        const viaTunnel = await timeScreenshots(remote, 20);
        const viaTcp = await timeScreenshots(desktop, 20);
        timings.push(`${screen}: ${median(viaTcp).toFixed(1)} ms over TCP, ${median(viaTunnel).toFixed(1)} ms through the tunnel WebSocket`);
        assert.equal(viaTunnel.length, 20);
      }
      const report = `screenshot ${SCREEN_WIDTH}x${SCREEN_HEIGHT}, p50 of 20: ${timings.join("; ")}`;
      t.diagnostic(report);
      if (process.env.ALCOVE_DESKTOP_TIMINGS) console.log(report);
    });

    it("fails with the authentication error through the tunnel too, and closes it", TIMEOUT, async () => {
      const sandbox = await new SandboxClient({ apiUrl: fake.url }).connect("sbx1");
      await assert.rejects(sandbox.connectDesktop({ password: "wrong" }), /authentication failed/);
    });
  });
});
