/**
 * A minimal X11 client (core protocol over the display's Unix socket), enough to see what keys
 * reach the X server: it maps a full-screen window, gives it the input focus, and records the
 * KeyPress / KeyRelease events it gets, resolving keycodes to keysyms with the keyboard mapping
 * that was current when each event arrived (the VNC server may add keysyms on the fly).
 */

import net from "node:net";

import { ByteQueue } from "../../src/transport.js";
import { SandboxConnectionError } from "../../src/errors.js";

const KEY_PRESS = 2;
const KEY_RELEASE = 3;
const MAP_NOTIFY = 19;
const MAPPING_NOTIFY = 34;

/** A key event as the window saw it. */
export interface KeyEvent {
  down: boolean;
  keycode: number;
  /** Modifier state before the event (Shift 1, Lock 2, Control 4, Mod1 8, …). */
  state: number;
  /** The keysym of the keycode in the mapping of the time (shift level applied). */
  keysym: number;
}

type Mapping = { min: number; perKeycode: number; keysyms: number[] };

function request(opcode: number, data: number, body: Buffer = Buffer.alloc(0)): Buffer {
  const header = Buffer.alloc(4);
  header[0] = opcode;
  header[1] = data;
  header.writeUInt16LE((4 + body.length) / 4, 2);
  return Buffer.concat([header, body]);
}

function u32s(...values: number[]): Buffer {
  const out = Buffer.alloc(4 * values.length);
  values.forEach((value, i) => out.writeUInt32LE(value >>> 0, 4 * i));
  return out;
}

export class XClient {
  readonly #socket: net.Socket;
  readonly #queue = new ByteQueue();
  #sequence = 0;
  readonly #replies = new Map<number, { resolve: (reply: Buffer) => void; reject: (error: Error) => void }>();
  #window = 0;
  #root = 0;
  #minKeycode = 8;
  #maxKeycode = 255;
  #mapping: Promise<Mapping> = Promise.resolve({ min: 8, perKeycode: 1, keysyms: [] });
  readonly #raw: { down: boolean; keycode: number; state: number; mapping: Promise<Mapping> }[] = [];
  #mapped: () => void = () => undefined;
  #failure: Error | null = null;

  private constructor(socket: net.Socket) {
    this.#socket = socket;
    socket.on("data", (chunk: Buffer) => this.#queue.push(chunk));
    socket.on("close", () => this.#queue.end(new SandboxConnectionError("X connection closed")));
    socket.on("error", () => undefined);
  }

  /** Connect to display `:display` and map a focused full-screen window. */
  static async open(display: number, width: number, height: number): Promise<XClient> {
    const socket = net.connect(`/tmp/.X11-unix/X${display}`);
    await new Promise<void>((resolve, reject) => {
      socket.once("connect", resolve);
      socket.once("error", reject);
    });
    const client = new XClient(socket);
    await client.#setup();
    void client.#readLoop();
    await client.#createWindow(width, height);
    return client;
  }

  async close(): Promise<void> {
    if (this.#socket.destroyed) return;
    const closed = new Promise<void>((resolve) => this.#socket.once("close", () => resolve()));
    this.#socket.destroy();
    await closed;
  }

  /** The key events seen so far, keysyms resolved. */
  async keyEvents(): Promise<KeyEvent[]> {
    return Promise.all(
      this.#raw.map(async (event) => ({
        down: event.down,
        keycode: event.keycode,
        state: event.state,
        keysym: keysymOf(await event.mapping, event.keycode, event.state),
      })),
    );
  }

  /** The key events once `done(events)` holds, or when `timeoutMs` passed (for the caller to check). */
  async waitForKeyEvents(done: (events: KeyEvent[]) => boolean, timeoutMs = 5000): Promise<KeyEvent[]> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const events = await this.keyEvents();
      if (done(events) || Date.now() > deadline || this.#failure) return events;
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
  }

  /** Forget the events seen so far. */
  clear(): void {
    this.#raw.length = 0;
  }

  async #setup(): Promise<void> {
    const hello = Buffer.alloc(12);
    hello[0] = 0x6c; // 'l': little-endian
    hello.writeUInt16LE(11, 2);
    this.#socket.write(hello);
    const head = Buffer.from(await this.#queue.read(8));
    const body = Buffer.from(await this.#queue.read(head.readUInt16LE(6) * 4));
    if (head[0] !== 1) throw new Error(`X server refused the connection: ${body.toString("latin1", 0, head[1]).trim()}`);
    const idBase = body.readUInt32LE(4);
    const vendorLength = body.readUInt16LE(16);
    const formats = body[21]!;
    this.#minKeycode = body[26]!;
    this.#maxKeycode = body[27]!;
    const screens = 32 + Math.ceil(vendorLength / 4) * 4 + formats * 8;
    this.#root = body.readUInt32LE(screens);
    this.#window = idBase | 1;
  }

  async #readLoop(): Promise<void> {
    try {
      for (;;) {
        const packet = Buffer.from(await this.#queue.read(32));
        const kind = packet[0]! & 0x7f;
        if (kind === 1) {
          const extra = packet.readUInt32LE(4) * 4;
          const reply = extra > 0 ? Buffer.concat([packet, Buffer.from(await this.#queue.read(extra))]) : packet;
          const sequence = packet.readUInt16LE(2);
          this.#replies.get(sequence)?.resolve(reply);
          this.#replies.delete(sequence);
        } else if (kind === 0) {
          const sequence = packet.readUInt16LE(2);
          const error = new Error(`X error ${packet[1]} (request ${packet[10]}, sequence ${sequence})`);
          const waiting = this.#replies.get(sequence);
          if (waiting) {
            waiting.reject(error);
            this.#replies.delete(sequence);
          } else {
            this.#failure = error;
          }
        } else if (kind === KEY_PRESS || kind === KEY_RELEASE) {
          this.#raw.push({ down: kind === KEY_PRESS, keycode: packet[1]!, state: packet.readUInt16LE(28), mapping: this.#mapping });
        } else if (kind === MAP_NOTIFY) {
          this.#mapped();
        } else if (kind === MAPPING_NOTIFY) {
          this.#mapping = this.#fetchMapping();
        }
      }
    } catch (error) {
      this.#failure = error as Error;
      for (const waiting of this.#replies.values()) waiting.reject(error as Error);
    }
  }

  #send(packet: Buffer): number {
    this.#sequence = (this.#sequence + 1) & 0xffff;
    this.#socket.write(packet);
    return this.#sequence;
  }

  #call(packet: Buffer): Promise<Buffer> {
    return new Promise((resolve, reject) => {
      const sequence = this.#send(packet);
      this.#replies.set(sequence, { resolve, reject });
    });
  }

  #fetchMapping(): Promise<Mapping> {
    const count = this.#maxKeycode - this.#minKeycode + 1;
    const body = Buffer.alloc(4);
    body[0] = this.#minKeycode;
    body[1] = count;
    const pending = this.#call(request(101, 0, body)).then((reply) => {
      const perKeycode = reply[1]!;
      const keysyms: number[] = [];
      for (let i = 0; i < count * perKeycode; i++) keysyms.push(reply.readUInt32LE(32 + 4 * i));
      return { min: this.#minKeycode, perKeycode, keysyms };
    });
    pending.catch(() => undefined);
    return pending;
  }

  async #createWindow(width: number, height: number): Promise<void> {
    this.#mapping = this.#fetchMapping();
    const mapped = new Promise<void>((resolve) => (this.#mapped = resolve));
    const geometry = Buffer.alloc(16);
    geometry.writeUInt32LE(this.#window, 0);
    geometry.writeUInt32LE(this.#root, 4);
    geometry.writeInt16LE(0, 8);
    geometry.writeInt16LE(0, 10);
    geometry.writeUInt16LE(width, 12);
    geometry.writeUInt16LE(height, 14);
    const rest = Buffer.concat([
      Buffer.from([0, 0, 1, 0]), // border width 0, class InputOutput
      u32s(0, 0x200 | 0x800, 1, 0x1 | 0x2 | 0x20000), // visual CopyFromParent; override-redirect, event mask
    ]);
    this.#send(request(1, 0, Buffer.concat([geometry, rest]))); // CreateWindow
    this.#send(request(8, 0, u32s(this.#window))); // MapWindow
    await mapped;
    this.#send(request(42, 2, u32s(this.#window, 0))); // SetInputFocus (revert to parent), CurrentTime
    const focus = await this.#call(request(43, 0)); // GetInputFocus: a round trip, and a check
    if (focus.readUInt32LE(8) !== this.#window) throw new Error("the test window did not get the input focus");
    await this.#mapping;
  }
}

/** The keysym of `keycode` at the shift level `state` selects (core protocol rules, group 1). */
function keysymOf(mapping: Mapping, keycode: number, state: number): number {
  const start = (keycode - mapping.min) * mapping.perKeycode;
  const list = mapping.keysyms.slice(start, start + mapping.perKeycode);
  const base = list[0] ?? 0;
  const shifted = list[1] ?? 0;
  if ((state & 1) === 0) return base;
  if (shifted !== 0) return shifted;
  // A lone lower-case letter: its shifted level is the upper case.
  if (base >= 0x61 && base <= 0x7a) return base - 0x20;
  return base;
}

/** The text typed by a sequence of key events (modifier keys left out). */
export function typedText(events: KeyEvent[]): string {
  let text = "";
  for (const event of events) {
    if (!event.down) continue;
    const keysym = event.keysym;
    if (keysym >= 0xffe1 && keysym <= 0xffee) continue; // modifiers
    if (keysym === 0xff0d) text += "\n";
    else if (keysym === 0xff09) text += "\t";
    else if ((keysym >= 0x20 && keysym <= 0x7e) || (keysym >= 0xa0 && keysym <= 0xff)) text += String.fromCodePoint(keysym);
    else if (keysym >= 0x01000100 && keysym <= 0x0110ffff) text += String.fromCodePoint(keysym - 0x01000000);
    else text += `<0x${keysym.toString(16)}>`;
  }
  return text;
}
