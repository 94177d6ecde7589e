/**
 * The RFB client against a scripted server over an in-memory transport: versions, security types,
 * authentication results, ServerInit, the pixel format and encodings it asks for, and the server
 * messages it must read to stay in sync.
 */

import assert from "node:assert/strict";
import { describe, it } from "node:test";

import { SandboxError, SandboxTimeoutError } from "../../src/errors.js";
import {
  CLIENT_PIXEL_FORMAT,
  RfbClient,
  decodePixelFormat,
  encodePixelFormat,
  keyEventMessage,
  negotiateVersion,
  pointerEventMessage,
  setEncodingsMessage,
  setPixelFormatMessage,
} from "../../src/rfb.js";
import {
  desktopSizeRect,
  framebufferUpdate,
  pixel,
  rawRect,
  rfbString,
  serveHandshake,
  transportPair,
  type ServeOptions,
} from "./memory.js";

const EXPECTED_SETUP = Buffer.from(
  // SetPixelFormat: type 0, 3 padding, 32 bpp, depth 24, little-endian, true colour, max 255 x3, shifts 16/8/0
  "00000000" + "2018000100ff00ff00ff100800000000" +
    // SetEncodings: type 2, padding, 2 encodings: Raw (0), DesktopSize (-223)
    "020000020000000" + "0ffffff21",
  "hex",
);

async function connected(options: ServeOptions = {}, password?: string, shared?: boolean) {
  const [client, server] = transportPair();
  const [rfb, handshake] = await Promise.all([
    RfbClient.connect(client, { password, shared, timeoutMs: 5000 }),
    serveHandshake(server, options),
  ]);
  return { rfb, handshake, server };
}

/** The client's rejection and the server side's end, together. */
async function refused(options: ServeOptions, password?: string): Promise<{ error: unknown; closed: boolean }> {
  const [client, server] = transportPair();
  const serving = serveHandshake(server, options).catch(() => undefined);
  const error: unknown = await RfbClient.connect(client, { password, timeoutMs: 5000 }).then(
    () => assert.fail("the handshake should have failed"),
    (failure: unknown) => failure,
  );
  await serving;
  return { error, closed: server.closed };
}

describe("RFB handshake", () => {
  it("speaks 3.8 with security None, then sets its pixel format and encodings", async () => {
    const { rfb, handshake } = await connected({ width: 1280, height: 800 });
    assert.equal(handshake.clientVersion, "RFB 003.008\n");
    assert.equal(handshake.chosenSecurity, 1);
    assert.equal(handshake.shared, 1);
    assert.equal(handshake.setup.toString("hex"), EXPECTED_SETUP.toString("hex"));
    assert.equal(rfb.width, 1280);
    assert.equal(rfb.height, 800);
    assert.equal(rfb.name, "fake desktop");
    assert.equal(rfb.serverPixelFormat.trueColour, true);
    assert.equal(rfb.ended, null);
    await rfb.close();
    assert.ok((rfb.ended as Error | null) instanceof SandboxError);
    await rfb.close(); // idempotent
  });

  it("answers VNC authentication with the DES response, in 3.8, 3.7 and 3.3", async () => {
    for (const version of ["003.008", "003.007", "003.003"]) {
      const { rfb, handshake } = await connected({ version, security: [2], password: "tensorlake" }, "tensorlake");
      assert.equal(handshake.clientVersion, `RFB ${version}\n`);
      assert.equal(handshake.chosenSecurity, 2);
      assert.equal(handshake.authOk, true, version);
      await rfb.close();
    }
  });

  it("prefers None when both are offered, and sends shared=0 when asked", async () => {
    const { rfb, handshake } = await connected({ version: "003.007", security: [2, 1] }, "ignored", false);
    assert.equal(handshake.chosenSecurity, 1);
    assert.equal(handshake.shared, 0);
    await rfb.close();
    const old = await connected({ version: "003.003", security: [1] });
    assert.equal(old.handshake.chosenSecurity, 1);
    await old.rfb.close();
  });

  it("picks the highest version both speak", () => {
    const version = (text: string): string => {
      const { major, minor } = negotiateVersion(Buffer.from(text, "latin1"));
      return `${major}.${minor}`;
    };
    assert.equal(version("RFB 003.008\n"), "3.8");
    assert.equal(version("RFB 003.889\n"), "3.8"); // Apple's
    assert.equal(version("RFB 004.001\n"), "3.8");
    assert.equal(version("RFB 003.007\n"), "3.7");
    assert.equal(version("RFB 003.005\n"), "3.3");
    assert.throws(() => version("RFB 002.000\n"), /unsupported RFB protocol version 2\.0/);
    assert.throws(() => version("SSH-2.0-Open"), /not an RFB \(VNC\) server/);
  });

  it("reports a failed authentication with the server's reason, and closes", async () => {
    const modern = await refused({ security: [2], password: "right", failureReason: "bad password, go away" }, "wrong");
    assert.ok(modern.error instanceof SandboxError);
    assert.match(String(modern.error), /authentication failed: bad password, go away/);
    assert.ok(modern.closed);
    const old = await refused({ version: "003.003", security: [2], password: "right" }, "wrong");
    assert.match(String(old.error), /authentication failed \(wrong password\?\)/);
    assert.ok(old.closed);
  });

  it("says so when the server wants a password and none was given", async () => {
    const { error, closed } = await refused({ security: [2], password: "x" });
    assert.match(String(error), /requires a password \(VNC authentication\): pass one with \{ password \}/);
    assert.ok(closed);
  });

  it("reports refusals, unsupported security types and colour-mapped servers", async () => {
    const refusedByServer = await refused({ security: [], failureReason: "too many connections" });
    assert.match(String(refusedByServer.error), /refused the connection: too many connections/);
    const old = await refused({ version: "003.003", security: [0], failureReason: "not today" });
    assert.match(String(old.error), /refused the connection: not today/);
    const unsupported = await refused({ security: [5, 16, 19] });
    assert.match(String(unsupported.error), /offered: 5, 16, 19; supported: None \(1\), VNC authentication \(2\)/);
    assert.ok(unsupported.closed);
    const mapped = await refused({ trueColour: false });
    assert.match(String(mapped.error), /colour-mapped pixel format; this client needs a true-colour server/);
    assert.ok(mapped.closed);
  });

  it("gives up after the timeout and closes the transport", async () => {
    const [client, server] = transportPair();
    const started = Date.now();
    await assert.rejects(
      RfbClient.connect(client, { timeoutMs: 100 }),
      (error: unknown) =>
        error instanceof SandboxTimeoutError && /no RFB handshake within 0\.1 s/.test(error.message) && error.option === "connectTimeoutSecs",
    );
    assert.ok(Date.now() - started < 2000);
    assert.ok(server.closed);
  });
});

describe("RFB messages", () => {
  it("encodes client messages", () => {
    assert.equal(Buffer.from(pointerEventMessage(1 | 4, 300, 2)).toString("hex"), "0505012c0002");
    assert.equal(Buffer.from(keyEventMessage(true, 0xffe3)).toString("hex"), "040100000000ffe3");
    assert.equal(Buffer.from(keyEventMessage(false, 0x010020ac)).toString("hex"), "04000000010020ac");
    assert.deepEqual(decodePixelFormat(encodePixelFormat(CLIENT_PIXEL_FORMAT)), { ...CLIENT_PIXEL_FORMAT });
    assert.equal(Buffer.concat([setPixelFormatMessage(), setEncodingsMessage([0, -223])]).toString("hex"), EXPECTED_SETUP.toString("hex"));
  });

  it("sends pointer and key events as given", async () => {
    const { rfb, server } = await connected();
    await rfb.pointer(1, 10, 20);
    await rfb.key(true, 0x61);
    assert.equal(Buffer.from(await server.read(6 + 8)).toString("hex"), "0501000a0014" + "0401000000000061");
    await rfb.close();
  });

  it("captures the whole screen, reading bells, colour maps and cut text on the way", async () => {
    const { rfb, server } = await connected({ width: 4, height: 2 });
    const capturing = rfb.capture(30_000);
    // FramebufferUpdateRequest: non-incremental, whole screen.
    assert.equal(Buffer.from(await server.read(10)).toString("hex"), "03000000000000040002");
    await server.send(Uint8Array.of(2)); // Bell
    await server.send(Buffer.concat([Uint8Array.of(1, 0, 0, 0, 0, 2), Buffer.alloc(12)])); // SetColourMapEntries, 2 colours
    await server.send(Buffer.concat([Uint8Array.of(3, 0, 0, 0), rfbString("copied text")])); // ServerCutText
    await server.send(framebufferUpdate(rawRect(0, 0, 4, 1, [255, 0, 0])));
    await server.send(framebufferUpdate(rawRect(0, 1, 2, 1, [0, 255, 0]), rawRect(2, 1, 2, 1, [1, 2, 3])));
    const frame = await capturing;
    assert.equal(frame.width, 4);
    assert.equal(frame.height, 2);
    assert.deepEqual(pixel(frame, 3, 0), [255, 0, 0]);
    assert.deepEqual(pixel(frame, 0, 1), [0, 255, 0]);
    assert.deepEqual(pixel(frame, 3, 1), [1, 2, 3]);
    assert.equal(rfb.ended, null);
    await rfb.close();
  });

  it("follows a DesktopSize change during a capture, asking for the new screen", async () => {
    const { rfb, server } = await connected({ width: 4, height: 2 });
    const capturing = rfb.capture(30_000);
    await server.read(10);
    await server.send(framebufferUpdate(rawRect(0, 0, 4, 1, [9, 9, 9]), desktopSizeRect(3, 3)));
    assert.equal(Buffer.from(await server.read(10)).toString("hex"), "03000000000000030003");
    await server.send(framebufferUpdate(rawRect(0, 0, 3, 3, [7, 8, 9])));
    const frame = await capturing;
    assert.deepEqual([frame.width, frame.height, frame.rgb.length], [3, 3, 27]);
    assert.deepEqual(pixel(frame, 2, 2), [7, 8, 9]);
    assert.deepEqual([rfb.width, rfb.height], [3, 3]);
    await rfb.close();
  });

  it("times a capture out and stays in sync for the next one", async () => {
    const { rfb, server } = await connected({ width: 2, height: 1 });
    await assert.rejects(rfb.capture(50), (error: unknown) => error instanceof SandboxTimeoutError && /no complete screen within 0\.05 s/.test(error.message));
    assert.equal(rfb.ended, null);
    const capturing = rfb.capture(30_000);
    await server.read(20); // both requests
    // The late answer to the first request, then the second one's.
    await server.send(framebufferUpdate(rawRect(0, 0, 2, 1, [1, 1, 1])));
    await server.send(framebufferUpdate(rawRect(0, 0, 2, 1, [2, 2, 2])));
    const frame = await capturing;
    assert.equal(frame.rgb.length, 6);
    await rfb.close();
  });

  it("ends the connection on a message it does not know, and on rectangles outside the screen", async () => {
    const first = await connected({ width: 2, height: 2 });
    const capturing = first.rfb.capture(30_000);
    await first.server.send(Uint8Array.of(42));
    await assert.rejects(capturing, /unknown server message type 42/);
    assert.match(String(first.rfb.ended), /unknown server message type 42/);
    assert.ok(first.server.closed);
    await assert.rejects(first.rfb.pointer(0, 0, 0), /unknown server message type 42/);

    const second = await connected({ width: 2, height: 2 });
    const ended = new Promise<Error>((resolve) => second.rfb.onEnd(resolve));
    await second.server.send(framebufferUpdate(rawRect(1, 1, 2, 2, [0, 0, 0])));
    assert.match(String(await ended), /rectangle 2x2 at 1,1 outside the 2x2 screen/);
  });

  it("rejects a capture waiting when the server goes away", async () => {
    const { rfb, server } = await connected();
    const capturing = rfb.capture(30_000);
    await server.close();
    await assert.rejects(capturing, /closed/);
    assert.ok(rfb.ended);
  });
});
