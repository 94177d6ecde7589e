/**
 * `connectDesktop()` against a real server: the port probes through `processes/run` and RFB through
 * the proxy's TCP tunnel. In the default image a small RFB server written for the test (Python,
 * security None) serves a known screen and logs the events it receives; with the desktop image
 * (`alcove/desktop`, when it is built) the image's real X server and VNC server (Xvnc) are driven too.
 */

import assert from "node:assert/strict";
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";

import { SandboxTimeoutError, type Sandbox, type SandboxClient } from "../../src/index.js";
import { decodePng, pixel } from "../unit/memory.js";
import { AlcoveServer, eventually, IMAGES_DIR, shutdown } from "./harness.js";

const TIMEOUT = { timeout: 90_000 };

/** A 64x48 RFB 3.8 server without security: left half red, right half blue; logs events as JSON lines. */
const RFB_SERVER = String.raw`
import json, socket, struct, sys
W, H = 64, 48
port, log = int(sys.argv[1]), open(sys.argv[2], "a", buffering=1)
srv = socket.socket()
srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind(("127.0.0.1", port))
srv.listen(8)
def exact(c, n):
    b = b""
    while len(b) < n:
        k = c.recv(n - len(b))
        if not k:
            raise EOFError
        b += k
    return b
row = b"\x00\x00\xff\x00" * (W // 2) + b"\xff\x00\x00\x00" * (W // 2)
while True:
    c, _ = srv.accept()
    try:
        c.sendall(b"RFB 003.008\n"); exact(c, 12)
        c.sendall(b"\x01\x01"); exact(c, 1); c.sendall(b"\0\0\0\0")
        exact(c, 1)
        name = b"alcove e2e"
        c.sendall(struct.pack(">HHBBBBHHHBBB3xI", W, H, 32, 24, 0, 1, 255, 255, 255, 16, 8, 0, len(name)) + name)
        while True:
            t = exact(c, 1)[0]
            if t == 0:
                exact(c, 19)
            elif t == 2:
                n = struct.unpack(">xH", exact(c, 3))[0]; exact(c, 4 * n)
            elif t == 3:
                exact(c, 9)
                c.sendall(struct.pack(">BxHHHHHi", 0, 1, 0, 0, W, H, 0) + row * H)
            elif t == 4:
                d, k = struct.unpack(">BxxI", exact(c, 7)); log.write(json.dumps(["key", d, k]) + "\n")
            elif t == 5:
                m, x, y = struct.unpack(">BHH", exact(c, 5)); log.write(json.dumps(["pointer", m, x, y]) + "\n")
            else:
                break
    except (EOFError, OSError):
        pass
    finally:
        c.close()
`;

/** Whether the images directory holds the desktop image. */
function hasDesktopImage(): boolean {
  try {
    return readdirSync(IMAGES_DIR).some((dir) => {
      try {
        return (JSON.parse(readFileSync(join(IMAGES_DIR, dir, "manifest.json"), "utf8")) as { name?: string }).name === "alcove/desktop";
      } catch {
        return false;
      }
    });
  } catch {
    return false;
  }
}

describe("desktops against a real server", { timeout: 240_000 }, () => {
  let server: AlcoveServer;
  let client: SandboxClient;
  let sandbox: Sandbox;

  before(async () => {
    server = await AlcoveServer.start();
    client = server.client();
    sandbox = await client.createAndConnect();
  });

  after(() => shutdown(server, sandbox));

  it("waits for the VNC port, then drives the server through the tunnel", TIMEOUT, async () => {
    await sandbox.writeFile("/tmp/rfb_server.py", RFB_SERVER);
    // The server starts a moment after connectDesktop begins probing.
    await sandbox.startProcess("bash", ["-c", "sleep 1 && exec python3 /tmp/rfb_server.py 5950 /tmp/rfb.log"]);
    const desktop = await sandbox.connectDesktop({ port: 5950, connectTimeoutSecs: 30 });
    try {
      assert.deepEqual([desktop.width, desktop.height], [64, 48]);
      const image = decodePng(await desktop.screenshot());
      assert.deepEqual([image.width, image.height], [64, 48]);
      assert.deepEqual(pixel(image, 0, 0), [255, 0, 0]);
      assert.deepEqual(pixel(image, 63, 47), [0, 0, 255]);
      await desktop.moveMouse(10, 20);
      await desktop.click();
      await desktop.typeText("é");
      await desktop.press(["ctrl", "c"]);
    } finally {
      await desktop.close();
    }
    const expected = [
      ["pointer", 0, 10, 20],
      ["pointer", 0, 10, 20], ["pointer", 1, 10, 20], ["pointer", 0, 10, 20],
      ["key", 1, 0xe9], ["key", 0, 0xe9],
      ["key", 1, 0xffe3], ["key", 1, 0x63], ["key", 0, 0x63], ["key", 0, 0xffe3],
    ];
    const events = await eventually("the events in the server's log", async () => {
      const lines = (await sandbox.readFile("/tmp/rfb.log")).toString().trim().split("\n").filter(Boolean);
      return lines.length >= expected.length ? lines.map((line) => JSON.parse(line) as unknown) : undefined;
    });
    assert.deepEqual(events, expected);
  });

  it("says when nothing listens on the port", TIMEOUT, async () => {
    await assert.rejects(
      sandbox.connectDesktop({ port: 5951, connectTimeoutSecs: 1 }),
      (error: unknown) =>
        error instanceof SandboxTimeoutError &&
        error.message === "nothing accepted connections on port 5951 in the sandbox within 1 s: is a VNC server running?",
    );
  });

  it("drives the desktop image's X server and VNC server", { ...TIMEOUT, skip: hasDesktopImage() ? false : "the alcove/desktop image is not built" }, async (t) => {
    await using desktopSandbox = await client.createAndConnect({ image: "alcove/desktop" });
    await using desktop = await desktopSandbox.connectDesktop({ password: "tensorlake", connectTimeoutSecs: 60 });
    assert.deepEqual([desktop.width, desktop.height], [1280, 800]);
    const image = decodePng(await desktop.screenshot({ timeoutSecs: 15 }));
    assert.deepEqual([image.width, image.height], [1280, 800]);
    await desktop.moveMouse(123, 456);
    await eventually("the pointer at 123,456", async () => {
      const where = await desktopSandbox.run("xdotool", ["getmouselocation"], { env: { DISPLAY: ":1" } });
      return /x:123 y:456/.test(where.stdout) ? true : undefined;
    });
    // The browser page of the same desktop.
    const url = await desktopSandbox.desktopUrl();
    assert.ok(url.includes(`/desktop/${desktopSandbox.sandboxId}?token=`), url);
    const page = await fetch(url);
    assert.equal(page.status, 200);
    assert.match(await page.text(), /novnc\/core\/rfb\.js/);
    await assert.rejects(desktopSandbox.desktopUrl({ port: 0 }), RangeError);
    const times: number[] = [];
    for (let i = 0; i < 20; i++) {
      const started = performance.now();
      await desktop.screenshot({ timeoutSecs: 60 });
      times.push(performance.now() - started);
    }
    times.sort((a, b) => a - b);
    t.diagnostic(`screenshot 1280x800 through the server's tunnel, p50 of 20: ${times[10]!.toFixed(1)} ms`);
  });
});
