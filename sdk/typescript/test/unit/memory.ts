/**
 * Test helpers for the desktop: an in-memory pair of byte transports, a scripted RFB server side,
 * and a PNG decoder that checks what the SDK encodes.
 */

import assert from "node:assert/strict";
import { inflateSync } from "node:zlib";

import { vncAuthResponse } from "../../src/des.js";
import { SandboxConnectionError } from "../../src/errors.js";
import { crc32 } from "../../src/png.js";
import { ByteQueue, type ByteTransport } from "../../src/transport.js";

/** The server end of a pair: a transport, plus whether the client closed the pair. */
export interface ServerEnd extends ByteTransport {
  readonly closed: boolean;
  /** Everything the client sent that the server has not read yet (no waiting). */
  drain(): Promise<Uint8Array>;
  /** Pending bytes from the client. */
  readonly pending: number;
}

/** Two connected in-memory transports: `[client, server]`. Closing either closes both. */
export function transportPair(): [ByteTransport, ServerEnd] {
  const toServer = new ByteQueue();
  const toClient = new ByteQueue();
  let closed = false;
  const end = (): void => {
    closed = true;
    toServer.end(new SandboxConnectionError("the in-memory connection is closed"));
    toClient.end(new SandboxConnectionError("the in-memory connection is closed"));
  };
  const sender = (queue: ByteQueue) => async (data: Uint8Array): Promise<void> => {
    if (closed) throw new SandboxConnectionError("the in-memory connection is closed");
    queue.push(Uint8Array.from(data));
  };
  const client: ByteTransport = {
    send: sender(toServer),
    read: (n) => toClient.read(n),
    close: async () => end(),
  };
  const server: ServerEnd = {
    send: sender(toClient),
    read: (n) => toServer.read(n),
    close: async () => end(),
    get closed() {
      return closed;
    },
    get pending() {
      return toServer.length;
    },
    drain() {
      return toServer.read(toServer.length);
    },
  };
  return [client, server];
}

export function u32be(value: number): Buffer {
  const out = Buffer.alloc(4);
  out.writeUInt32BE(value >>> 0);
  return out;
}

export function rfbString(text: string): Buffer {
  const bytes = Buffer.from(text, "utf8");
  return Buffer.concat([u32be(bytes.length), bytes]);
}

/** ServerInit: size, a pixel format (true colour unless told), a name. */
export function serverInit(width: number, height: number, name = "fake desktop", trueColour = true): Buffer {
  const out = Buffer.alloc(24);
  out.writeUInt16BE(width, 0);
  out.writeUInt16BE(height, 2);
  out.set([32, 24, 0, trueColour ? 1 : 0], 4);
  out.writeUInt16BE(255, 8);
  out.writeUInt16BE(255, 10);
  out.writeUInt16BE(255, 12);
  out.set([16, 8, 0], 14);
  out.writeUInt32BE(Buffer.byteLength(name), 20);
  return Buffer.concat([out, Buffer.from(name, "utf8")]);
}

export interface ServeOptions {
  /** The greeting's version (default "003.008"). */
  version?: string;
  /** Security types offered (3.7/3.8) or the one imposed (3.3); default [1]. */
  security?: number[];
  /** The password VNC authentication expects. */
  password?: string;
  /** For 3.8 failures. */
  failureReason?: string;
  width?: number;
  height?: number;
  trueColour?: boolean;
}

/** What the scripted server saw of the client's handshake. */
export interface Handshake {
  clientVersion: string;
  chosenSecurity: number | null;
  authOk: boolean | null;
  shared: number;
  /** SetPixelFormat and SetEncodings, as sent. */
  setup: Buffer;
}

/** Play the server's side of a handshake; rejects when the client gives up half-way. */
export async function serveHandshake(server: ByteTransport, options: ServeOptions = {}): Promise<Handshake> {
  const version = options.version ?? "003.008";
  const minor = Number(version.slice(4));
  await server.send(Buffer.from(`RFB ${version}\n`, "latin1"));
  const clientVersion = Buffer.from(await server.read(12)).toString("latin1");
  const offered = options.security ?? [1];
  let chosen: number;
  if (minor < 7 && version.startsWith("003")) {
    chosen = offered[0]!;
    await server.send(u32be(chosen));
    if (chosen === 0) {
      await server.send(rfbString(options.failureReason ?? "go away"));
      throw new Error("server refused");
    }
  } else {
    await server.send(Buffer.concat([Uint8Array.of(offered.length), Uint8Array.from(offered)]));
    if (offered.length === 0) {
      await server.send(rfbString(options.failureReason ?? "go away"));
      throw new Error("server refused");
    }
    chosen = (await server.read(1))[0]!;
  }
  let authOk: boolean | null = null;
  if (chosen === 2) {
    const challenge = Buffer.from(Array.from({ length: 16 }, (_, i) => (i * 37 + 11) & 0xff));
    await server.send(challenge);
    const response = await server.read(16);
    authOk = Buffer.from(response).equals(Buffer.from(vncAuthResponse(challenge, options.password ?? "")));
  }
  const effectiveMinor = clientVersion === "RFB 003.008\n" ? 8 : clientVersion === "RFB 003.007\n" ? 7 : 3;
  if (effectiveMinor === 8 || chosen === 2) {
    await server.send(u32be(authOk === false ? 1 : 0));
    if (authOk === false) {
      if (effectiveMinor === 8) await server.send(rfbString(options.failureReason ?? "password check failed"));
      return { clientVersion, chosenSecurity: chosen, authOk, shared: -1, setup: Buffer.alloc(0) };
    }
  }
  const shared = (await server.read(1))[0]!;
  await server.send(serverInit(options.width ?? 64, options.height ?? 48, "fake desktop", options.trueColour ?? true));
  if (options.trueColour === false) return { clientVersion, chosenSecurity: chosen, authOk, shared, setup: Buffer.alloc(0) };
  const setup = Buffer.from(await server.read(20 + 4 + 8));
  return { clientVersion, chosenSecurity: chosen, authOk, shared, setup };
}

/** A FramebufferUpdate with one Raw rectangle of one colour (pixels as B, G, R, X). */
export function rawRect(x: number, y: number, width: number, height: number, [r, g, b]: [number, number, number]): Buffer {
  const header = Buffer.alloc(12);
  header.writeUInt16BE(x, 0);
  header.writeUInt16BE(y, 2);
  header.writeUInt16BE(width, 4);
  header.writeUInt16BE(height, 6);
  header.writeInt32BE(0, 8);
  const pixels = Buffer.alloc(width * height * 4);
  for (let i = 0; i < width * height; i++) pixels.set([b, g, r, 0], i * 4);
  return Buffer.concat([header, pixels]);
}

/** A DesktopSize pseudo-rectangle. */
export function desktopSizeRect(width: number, height: number): Buffer {
  const header = Buffer.alloc(12);
  header.writeUInt16BE(width, 4);
  header.writeUInt16BE(height, 6);
  header.writeInt32BE(-223, 8);
  return header;
}

/** A FramebufferUpdate message of the given rectangles. */
export function framebufferUpdate(...rects: Buffer[]): Buffer {
  const header = Buffer.alloc(4);
  header.writeUInt16BE(rects.length, 2);
  return Buffer.concat([header, ...rects]);
}

/** A decoded PNG, after checking its structure and every chunk's CRC. */
export interface DecodedPng {
  width: number;
  height: number;
  rgb: Buffer;
  chunks: string[];
}

/** Decode a PNG made by `encodePng` (RGB, 8 bits, filter 0 rows), checking signature and CRCs. */
export function decodePng(png: Uint8Array): DecodedPng {
  const data = Buffer.from(png);
  assert.deepEqual([...data.subarray(0, 8)], [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a], "PNG signature");
  let offset = 8;
  const chunks: string[] = [];
  const idat: Buffer[] = [];
  let width = 0;
  let height = 0;
  while (offset < data.length) {
    const length = data.readUInt32BE(offset);
    const type = data.toString("latin1", offset + 4, offset + 8);
    const body = data.subarray(offset + 8, offset + 8 + length);
    const crc = data.readUInt32BE(offset + 8 + length);
    assert.equal(crc, crc32(data.subarray(offset + 4, offset + 8 + length)), `CRC of ${type}`);
    chunks.push(type);
    if (type === "IHDR") {
      width = body.readUInt32BE(0);
      height = body.readUInt32BE(4);
      assert.deepEqual([...body.subarray(8)], [8, 2, 0, 0, 0], "8-bit RGB, deflate, no interlace");
    } else if (type === "IDAT") {
      idat.push(body);
    }
    offset += 12 + length;
  }
  assert.equal(offset, data.length, "no bytes after the last chunk");
  assert.equal(chunks[0], "IHDR");
  assert.equal(chunks.at(-1), "IEND");
  const raw = inflateSync(Buffer.concat(idat));
  const stride = width * 3;
  assert.equal(raw.length, (stride + 1) * height, "inflated size");
  const rgb = Buffer.alloc(stride * height);
  for (let y = 0; y < height; y++) {
    assert.equal(raw[y * (stride + 1)], 0, `filter type of row ${y}`);
    raw.copy(rgb, y * stride, y * (stride + 1) + 1, (y + 1) * (stride + 1));
  }
  return { width, height, rgb, chunks };
}

/** The RGB of pixel (`x`, `y`). */
export function pixel(image: { width: number; rgb: Uint8Array }, x: number, y: number): [number, number, number] {
  const i = (y * image.width + x) * 3;
  return [image.rgb[i]!, image.rgb[i + 1]!, image.rgb[i + 2]!];
}
