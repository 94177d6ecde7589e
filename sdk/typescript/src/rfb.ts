/**
 * An RFB (VNC) client, RFC 6143, over any {@link ByteTransport}.
 *
 * What it speaks: protocol versions 3.3, 3.7 and 3.8; security None (1) and VNC authentication
 * (2); the Raw encoding and the DesktopSize pseudo-encoding, in a 32-bit true-colour pixel format
 * it sets itself; PointerEvent and KeyEvent. After the handshake a pump reads every server message
 * as it arrives (framebuffer updates, colour maps, bells, cut text), so the stream stays in sync
 * whatever the caller waits for.
 */

import { vncAuthResponse } from "./des.js";
import { SandboxConnectionError, SandboxError, SandboxTimeoutError } from "./errors.js";
import type { ByteTransport } from "./transport.js";

/** PointerEvent button mask bits. */
export const BUTTON_LEFT = 1;
export const BUTTON_MIDDLE = 2;
export const BUTTON_RIGHT = 4;
export const WHEEL_UP = 8;
export const WHEEL_DOWN = 16;

export const ENCODING_RAW = 0;
export const ENCODING_DESKTOP_SIZE = -223;

const SECURITY_INVALID = 0;
const SECURITY_NONE = 1;
const SECURITY_VNC_AUTH = 2;

/** Longest reason / name / cut text accepted from a server. */
const MAX_STRING_BYTES = 16 * 1024 * 1024;
/** Largest screen accepted (pixels): 8192 x 8192, 192 MiB of RGB. */
const MAX_PIXELS = 8192 * 8192;

/** Whether a screen size is one this client can hold. */
function validSize(width: number, height: number): boolean {
  return width > 0 && height > 0 && width * height <= MAX_PIXELS;
}

/** An RFB pixel format (RFC 6143, 7.4). */
export interface PixelFormat {
  bitsPerPixel: number;
  depth: number;
  bigEndian: boolean;
  trueColour: boolean;
  redMax: number;
  greenMax: number;
  blueMax: number;
  redShift: number;
  greenShift: number;
  blueShift: number;
}

/** The format the client asks for: 32 bpp, depth 24, little-endian, so pixels arrive as B, G, R, X. */
export const CLIENT_PIXEL_FORMAT: Readonly<PixelFormat> = Object.freeze({
  bitsPerPixel: 32,
  depth: 24,
  bigEndian: false,
  trueColour: true,
  redMax: 255,
  greenMax: 255,
  blueMax: 255,
  redShift: 16,
  greenShift: 8,
  blueShift: 0,
});

/** What the server said in ServerInit. */
export interface ServerInit {
  width: number;
  height: number;
  pixelFormat: PixelFormat;
  name: string;
}

/** Options of {@link RfbClient.connect}. */
export interface RfbOptions {
  /** For VNC authentication; only the first 8 bytes count. */
  password?: string | undefined;
  /** Let other clients stay connected (the ClientInit shared flag; default true). */
  shared?: boolean | undefined;
  /** Longest wait for the whole handshake, in milliseconds. */
  timeoutMs: number;
  /** What is being connected to, for error messages (default "the VNC server"). */
  what?: string | undefined;
}

/** A screen image: `width * height` pixels as RGB bytes, row after row. */
export interface Framebuffer {
  width: number;
  height: number;
  rgb: Uint8Array;
}

// ---------------------------------------------------------------------------------------------
// Client messages

/** Encode a pixel format into its 16 bytes. */
export function encodePixelFormat(format: PixelFormat): Uint8Array {
  const out = Buffer.alloc(16);
  out[0] = format.bitsPerPixel;
  out[1] = format.depth;
  out[2] = format.bigEndian ? 1 : 0;
  out[3] = format.trueColour ? 1 : 0;
  out.writeUInt16BE(format.redMax, 4);
  out.writeUInt16BE(format.greenMax, 6);
  out.writeUInt16BE(format.blueMax, 8);
  out[10] = format.redShift;
  out[11] = format.greenShift;
  out[12] = format.blueShift;
  return out;
}

export function decodePixelFormat(bytes: Uint8Array): PixelFormat {
  const data = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  return {
    bitsPerPixel: data[0]!,
    depth: data[1]!,
    bigEndian: data[2] !== 0,
    trueColour: data[3] !== 0,
    redMax: data.readUInt16BE(4),
    greenMax: data.readUInt16BE(6),
    blueMax: data.readUInt16BE(8),
    redShift: data[10]!,
    greenShift: data[11]!,
    blueShift: data[12]!,
  };
}

/** SetPixelFormat (message 0). */
export function setPixelFormatMessage(format: PixelFormat = CLIENT_PIXEL_FORMAT): Uint8Array {
  const out = Buffer.alloc(20);
  out[0] = 0;
  out.set(encodePixelFormat(format), 4);
  return out;
}

/** SetEncodings (message 2). */
export function setEncodingsMessage(encodings: readonly number[]): Uint8Array {
  const out = Buffer.alloc(4 + 4 * encodings.length);
  out[0] = 2;
  out.writeUInt16BE(encodings.length, 2);
  encodings.forEach((encoding, i) => out.writeInt32BE(encoding, 4 + 4 * i));
  return out;
}

/** FramebufferUpdateRequest (message 3). */
export function framebufferUpdateRequest(incremental: boolean, x: number, y: number, width: number, height: number): Uint8Array {
  const out = Buffer.alloc(10);
  out[0] = 3;
  out[1] = incremental ? 1 : 0;
  out.writeUInt16BE(x, 2);
  out.writeUInt16BE(y, 4);
  out.writeUInt16BE(width, 6);
  out.writeUInt16BE(height, 8);
  return out;
}

/** KeyEvent (message 4). */
export function keyEventMessage(down: boolean, keysym: number): Uint8Array {
  const out = Buffer.alloc(8);
  out[0] = 4;
  out[1] = down ? 1 : 0;
  out.writeUInt32BE(keysym >>> 0, 4);
  return out;
}

/** PointerEvent (message 5). */
export function pointerEventMessage(buttonMask: number, x: number, y: number): Uint8Array {
  const out = Buffer.alloc(6);
  out[0] = 5;
  out[1] = buttonMask & 0xff;
  out.writeUInt16BE(x, 2);
  out.writeUInt16BE(y, 4);
  return out;
}

// ---------------------------------------------------------------------------------------------
// Handshake

function u16(bytes: Uint8Array, offset: number): number {
  return (bytes[offset]! << 8) | bytes[offset + 1]!;
}

function u32(bytes: Uint8Array, offset: number): number {
  return ((bytes[offset]! << 24) >>> 0) + ((bytes[offset + 1]! << 16) | (bytes[offset + 2]! << 8) | bytes[offset + 3]!);
}

function s32(bytes: Uint8Array, offset: number): number {
  return u32(bytes, offset) | 0;
}

/** A u32 length, then that many bytes of text. */
async function readString(transport: ByteTransport, what: string): Promise<string> {
  const length = u32(await transport.read(4), 0);
  if (length > MAX_STRING_BYTES) throw new SandboxError(`RFB protocol error: ${what} of ${length} bytes`);
  return Buffer.from(await transport.read(length)).toString("utf8");
}

/** The version this client answers with, from the server's greeting `RFB xxx.yyy\n`. */
export function negotiateVersion(greeting: Uint8Array): { major: 3; minor: 3 | 7 | 8 } {
  const text = Buffer.from(greeting).toString("latin1");
  const match = /^RFB (\d{3})\.(\d{3})\n$/.exec(text);
  if (!match) throw new SandboxError(`not an RFB (VNC) server: it greeted with ${JSON.stringify(text)}`);
  const major = Number(match[1]);
  const minor = Number(match[2]);
  // RFC 6143, 7.1.1: answer with the highest version both speak; unknown 3.x below 3.7 mean 3.3.
  if (major > 3 || (major === 3 && minor >= 8)) return { major: 3, minor: 8 };
  if (major === 3 && minor === 7) return { major: 3, minor: 7 };
  if (major === 3 && minor >= 3) return { major: 3, minor: 3 };
  throw new SandboxError(`unsupported RFB protocol version ${major}.${minor} (this client speaks 3.3, 3.7 and 3.8)`);
}

const SECURITY_NAMES: Record<number, string> = { 1: "None", 2: "VNC authentication" };

function securityName(type: number): string {
  return SECURITY_NAMES[type] ? `${SECURITY_NAMES[type]} (${type})` : String(type);
}

/** Run the handshake up to ServerInit, then set the pixel format and encodings. */
async function handshake(transport: ByteTransport, options: RfbOptions, what: string): Promise<ServerInit> {
  const version = negotiateVersion(await transport.read(12));
  await transport.send(Buffer.from(`RFB 003.00${version.minor}\n`, "latin1"));

  let security: number;
  if (version.minor === 3) {
    security = u32(await transport.read(4), 0);
    if (security === SECURITY_INVALID) {
      throw new SandboxError(`${what} refused the connection: ${await readString(transport, "reason")}`);
    }
    if (security !== SECURITY_NONE && security !== SECURITY_VNC_AUTH) {
      throw new SandboxError(`${what} asks for security type ${security}; this client supports None (1) and VNC authentication (2)`);
    }
  } else {
    const count = (await transport.read(1))[0]!;
    if (count === 0) {
      throw new SandboxError(`${what} refused the connection: ${await readString(transport, "reason")}`);
    }
    const offered = [...(await transport.read(count))];
    if (offered.includes(SECURITY_NONE)) security = SECURITY_NONE;
    else if (offered.includes(SECURITY_VNC_AUTH)) security = SECURITY_VNC_AUTH;
    else {
      throw new SandboxError(
        `${what} offers no security type this client supports (offered: ${offered.map(securityName).join(", ")}; ` +
          `supported: None (1), VNC authentication (2))`,
      );
    }
    await transport.send(Uint8Array.of(security));
  }

  if (security === SECURITY_VNC_AUTH) {
    const challenge = await transport.read(16);
    if (options.password === undefined || options.password === null) {
      throw new SandboxError(`${what} requires a password (VNC authentication): pass one with { password }`);
    }
    await transport.send(vncAuthResponse(challenge, options.password));
  }
  // SecurityResult: 3.8 sends it for every type, older versions only after VNC authentication.
  if (version.minor === 8 || security === SECURITY_VNC_AUTH) {
    const result = u32(await transport.read(4), 0);
    if (result !== 0) {
      let reason = "";
      if (version.minor === 8) reason = await readString(transport, "reason").catch(() => "");
      const detail = reason ? `: ${reason}` : security === SECURITY_VNC_AUTH ? " (wrong password?)" : "";
      throw new SandboxError(`${what}: authentication failed${detail}`);
    }
  }

  await transport.send(Uint8Array.of(options.shared === false ? 0 : 1));
  const init = await transport.read(24);
  const width = u16(init, 0);
  const height = u16(init, 2);
  const pixelFormat = decodePixelFormat(init.subarray(4, 20));
  const nameLength = u32(init, 20);
  if (nameLength > MAX_STRING_BYTES) throw new SandboxError(`RFB protocol error: desktop name of ${nameLength} bytes`);
  const name = Buffer.from(await transport.read(nameLength)).toString("utf8");
  if (!pixelFormat.trueColour) {
    throw new SandboxError(`${what} uses a colour-mapped pixel format; this client needs a true-colour server`);
  }
  if (!validSize(width, height)) throw new SandboxError(`${what} has a screen of ${width}x${height}, which this client cannot hold`);
  await transport.send(Buffer.concat([setPixelFormatMessage(), setEncodingsMessage([ENCODING_RAW, ENCODING_DESKTOP_SIZE])]));
  return { width, height, pixelFormat, name };
}

// ---------------------------------------------------------------------------------------------
// Client

/** A capture in progress: which pixels arrived since it was asked for. */
interface Capture {
  covered: Uint8Array;
  remaining: number;
  resolve: (framebuffer: Framebuffer) => void;
  reject: (error: Error) => void;
}

/**
 * A connected RFB client. Make one with {@link RfbClient.connect}; it owns the transport and
 * closes it on {@link close} or when the stream breaks.
 */
export class RfbClient {
  readonly #transport: ByteTransport;
  readonly #what: string;
  #width: number;
  #height: number;
  readonly #name: string;
  readonly #serverPixelFormat: PixelFormat;
  /** The screen as last received, RGB. */
  #rgb: Uint8Array;
  #capture: Capture | null = null;
  #captures: Promise<unknown> = Promise.resolve();
  /** Why the connection ended (set once), `null` while it is up. */
  #ended: Error | null = null;
  #closing: Promise<void> | null = null;
  readonly #onEnd: ((error: Error) => void)[] = [];

  private constructor(transport: ByteTransport, init: ServerInit, what: string) {
    this.#transport = transport;
    this.#what = what;
    this.#width = init.width;
    this.#height = init.height;
    this.#name = init.name;
    this.#serverPixelFormat = init.pixelFormat;
    this.#rgb = new Uint8Array(init.width * init.height * 3);
  }

  /**
   * Run the handshake over `transport` and start reading server messages. Any failure, or the
   * handshake taking longer than `timeoutMs` ({@link SandboxTimeoutError}), closes the transport.
   */
  static async connect(transport: ByteTransport, options: RfbOptions): Promise<RfbClient> {
    const what = options.what ?? "the VNC server";
    let timer: NodeJS.Timeout | undefined;
    const timedOut = new Promise<never>((_, reject) => {
      timer = setTimeout(
        () => reject(new SandboxTimeoutError(`${what}: no RFB handshake within ${options.timeoutMs / 1000} s`, "connectTimeoutSecs")),
        options.timeoutMs,
      );
    });
    const handshaking = handshake(transport, options, what);
    handshaking.catch(() => undefined); // it loses the race on a timeout, then fails as the transport closes
    let init: ServerInit;
    try {
      init = await Promise.race([handshaking, timedOut]);
    } catch (error) {
      await transport.close().catch(() => undefined);
      throw error;
    } finally {
      clearTimeout(timer);
    }
    const client = new RfbClient(transport, init, what);
    void client.#pump();
    return client;
  }

  get width(): number {
    return this.#width;
  }

  get height(): number {
    return this.#height;
  }

  /** The desktop's name from ServerInit. */
  get name(): string {
    return this.#name;
  }

  /** The server's own pixel format (the client asked for {@link CLIENT_PIXEL_FORMAT}). */
  get serverPixelFormat(): PixelFormat {
    return this.#serverPixelFormat;
  }

  /** Why the connection ended, or `null` while it is up. */
  get ended(): Error | null {
    return this.#ended;
  }

  /** Call `listener` once when the connection ends (at once if it already did). */
  onEnd(listener: (error: Error) => void): void {
    if (this.#ended) listener(this.#ended);
    else this.#onEnd.push(listener);
  }

  /** Send a PointerEvent. */
  pointer(buttonMask: number, x: number, y: number): Promise<void> {
    return this.send(pointerEventMessage(buttonMask, x, y));
  }

  /** Send a KeyEvent. */
  key(down: boolean, keysym: number): Promise<void> {
    return this.send(keyEventMessage(down, keysym));
  }

  /** Send raw client messages (several may be concatenated). */
  send(bytes: Uint8Array): Promise<void> {
    if (this.#ended) return Promise.reject(this.#ended);
    return this.#transport.send(bytes).catch((error: unknown) => {
      // The connection broke: it is over for every caller.
      this.#end(error instanceof Error ? error : new SandboxConnectionError(String(error)));
      throw error;
    });
  }

  /**
   * The whole screen, fresh: asks for a non-incremental update and waits until every pixel has
   * arrived (through a resize too). Throws {@link SandboxTimeoutError} after `timeoutMs`; the
   * connection stays usable. Captures run one at a time.
   */
  capture(timeoutMs: number): Promise<Framebuffer> {
    const run = this.#captures.then(() => this.#captureNow(timeoutMs));
    this.#captures = run.catch(() => undefined);
    return run;
  }

  async #captureNow(timeoutMs: number): Promise<Framebuffer> {
    if (this.#ended) throw this.#ended;
    let timer: NodeJS.Timeout | undefined;
    const done = new Promise<Framebuffer>((resolve, reject) => {
      this.#capture = { covered: new Uint8Array(this.#width * this.#height), remaining: this.#width * this.#height, resolve, reject };
      timer = setTimeout(
        () => reject(new SandboxTimeoutError(`${this.#what}: no complete screen within ${timeoutMs / 1000} s`, "timeoutSecs")),
        timeoutMs,
      );
    });
    done.catch(() => undefined); // awaited below, unless sending the request fails first
    try {
      await this.send(framebufferUpdateRequest(false, 0, 0, this.#width, this.#height));
      return await done;
    } finally {
      clearTimeout(timer);
      this.#capture = null;
    }
  }

  /** Close the connection (idempotent). A capture waiting is rejected. */
  close(): Promise<void> {
    this.#end(new SandboxError(`the connection to ${this.#what} was closed`));
    return this.#closing ?? Promise.resolve();
  }

  #end(error: Error): void {
    if (this.#ended) return;
    this.#ended = error;
    this.#closing = this.#transport.close().catch(() => undefined);
    this.#capture?.reject(error);
    for (const listener of this.#onEnd.splice(0)) listener(error);
  }

  // -- server messages -------------------------------------------------------------------------

  async #pump(): Promise<void> {
    const transport = this.#transport;
    try {
      for (;;) {
        const type = (await transport.read(1))[0]!;
        switch (type) {
          case 0: {
            // FramebufferUpdate: padding, number of rectangles.
            const count = u16(await transport.read(3), 1);
            for (let i = 0; i < count; i++) await this.#rectangle();
            break;
          }
          case 1: {
            // SetColourMapEntries: padding, first colour, number of colours, 6 bytes each.
            const header = await transport.read(5);
            await transport.read(u16(header, 3) * 6);
            break;
          }
          case 2: // Bell
            break;
          case 3: {
            // ServerCutText: 3 bytes of padding, then a string.
            await transport.read(3);
            await readString(transport, "cut text");
            break;
          }
          default:
            throw new SandboxError(`RFB protocol error: unknown server message type ${type}`);
        }
      }
    } catch (error) {
      const reason =
        error instanceof SandboxError
          ? error
          : new SandboxConnectionError(`${this.#what}: ${error instanceof Error ? error.message : String(error)}`, { cause: error });
      this.#end(reason);
    }
  }

  async #rectangle(): Promise<void> {
    const header = await this.#transport.read(12);
    const x = u16(header, 0);
    const y = u16(header, 2);
    const width = u16(header, 4);
    const height = u16(header, 6);
    const encoding = s32(header, 8);
    if (encoding === ENCODING_DESKTOP_SIZE) {
      this.#resize(width, height);
      return;
    }
    if (encoding !== ENCODING_RAW) throw new SandboxError(`RFB protocol error: rectangle in encoding ${encoding}, which was not asked for`);
    if (x + width > this.#width || y + height > this.#height) {
      throw new SandboxError(
        `RFB protocol error: rectangle ${width}x${height} at ${x},${y} outside the ${this.#width}x${this.#height} screen`,
      );
    }
    const pixels = await this.#transport.read(width * height * 4);
    this.#paint(x, y, width, height, pixels);
  }

  /** Copy B, G, R, X pixels into the RGB screen, and count those a capture waits for. */
  #paint(x: number, y: number, width: number, height: number, pixels: Uint8Array): void {
    const rgb = this.#rgb;
    const capture = this.#capture;
    const stride = this.#width;
    let source = 0;
    for (let row = y; row < y + height; row++) {
      let index = row * stride + x;
      let target = index * 3;
      for (let column = 0; column < width; column++) {
        rgb[target] = pixels[source + 2]!;
        rgb[target + 1] = pixels[source + 1]!;
        rgb[target + 2] = pixels[source]!;
        source += 4;
        target += 3;
      }
      if (capture) {
        const covered = capture.covered;
        for (let column = 0; column < width; column++, index++) {
          if (covered[index] === 0) {
            covered[index] = 1;
            capture.remaining -= 1;
          }
        }
      }
    }
    if (capture && capture.remaining === 0) {
      this.#capture = null;
      capture.resolve({ width: this.#width, height: this.#height, rgb: rgb.slice() });
    }
  }

  /** DesktopSize: a new, blank screen; a capture in progress asks for all of it again. */
  #resize(width: number, height: number): void {
    if (!validSize(width, height)) {
      throw new SandboxError(`RFB protocol error: the screen was resized to ${width}x${height}`);
    }
    this.#width = width;
    this.#height = height;
    this.#rgb = new Uint8Array(width * height * 3);
    const capture = this.#capture;
    if (capture) {
      capture.covered = new Uint8Array(width * height);
      capture.remaining = width * height;
      this.send(framebufferUpdateRequest(false, 0, 0, width, height)).catch(() => undefined);
    }
  }
}
