/**
 * Desktop control of a sandbox: screenshots, mouse and keyboard over VNC (RFB).
 *
 * `Sandbox.connectDesktop()` waits until something accepts connections on the VNC port in the
 * sandbox (probing it with a short command every 250 ms), opens the sandbox's TCP-tunnel WebSocket
 * to that port (`/api/v1/tunnels/tcp?port=N`, binary frames) and speaks RFB inside it (`rfb.ts`).
 * Nothing listens locally.
 */

import { SandboxError, SandboxTimeoutError } from "./errors.js";
import { keysymForChar, keysymForKey, SHIFT_KEYSYM, shiftedKeysym } from "./keysyms.js";
import { encodePng } from "./png.js";
import { BUTTON_LEFT, BUTTON_MIDDLE, BUTTON_RIGHT, RfbClient, WHEEL_DOWN, WHEEL_UP, keyEventMessage, pointerEventMessage } from "./rfb.js";
import { webSocketTransport, type ByteTransport } from "./transport.js";
import { openWebSocket, validatePort } from "./websocket.js";

/** The usual VNC port of display :1. */
export const DEFAULT_DESKTOP_PORT = 5901;
export const DEFAULT_CONNECT_TIMEOUT_SECS = 10;
export const DEFAULT_SCREENSHOT_TIMEOUT_SECS = 5;
/** Pause between two probes of the VNC port. */
export const PROBE_INTERVAL_MS = 250;
/** How long one probe may take in the sandbox. */
export const PROBE_TIMEOUT_SECS = 2;
/** Longest pause between the clicks of a double click. */
const MAX_DELAY_MS = 60_000;

/** A mouse button. */
export type MouseButton = "left" | "middle" | "right";

const BUTTONS: Readonly<Record<MouseButton, number>> = Object.freeze({ left: BUTTON_LEFT, middle: BUTTON_MIDDLE, right: BUTTON_RIGHT });

/** Options of `Sandbox.connectDesktop()`. */
export interface ConnectDesktopOptions {
  /** The VNC server's port inside the sandbox (default 5901). */
  port?: number;
  /** For VNC authentication, when the server asks for it (only the first 8 characters count). */
  password?: string;
  /** Let other VNC clients stay connected (default true). */
  shared?: boolean;
  /**
   * Seconds to wait for each step of the connection (default 10): for the port to accept
   * connections in the sandbox, for the tunnel to open, and for the RFB handshake.
   */
  connectTimeoutSecs?: number;
}

/** Options of {@link Desktop.screenshot}. */
export interface ScreenshotOptions {
  /** Longest wait for the whole screen, in seconds (default 5). */
  timeoutSecs?: number;
}

/** Options of {@link openDesktop}. */
export interface OpenDesktopOptions {
  password?: string | undefined;
  shared?: boolean | undefined;
  connectTimeoutSecs?: number | undefined;
  /** What is being connected to, for error messages. */
  what?: string | undefined;
}

/** How `connectDesktop` reaches a sandbox (made by the sandbox). */
export interface DesktopTarget {
  sandboxId: string;
  /** WebSocket headers (API key, route hint). */
  headers: Record<string, string>;
  /** The tunnel WebSocket URL of `port`. */
  tunnelUrl(port: number): string;
  /** Whether something accepts TCP connections on `port` in the sandbox now. */
  probe(port: number): Promise<boolean>;
}

/** A positive, finite number of seconds, else `RangeError`. */
function seconds(value: unknown, what: string): number {
  if (typeof value !== "number" || !Number.isFinite(value) || value <= 0) {
    throw new RangeError(`${what} must be a positive number of seconds, got ${String(value)}`);
  }
  return value;
}

/** {@link ConnectDesktopOptions}, checked, with their defaults. */
export interface DesktopSettings {
  port: number;
  password: string | undefined;
  shared: boolean;
  connectTimeoutSecs: number;
}

/** The options of `connectDesktop`, checked, with their defaults. */
export function desktopOptions(options: ConnectDesktopOptions = {}): DesktopSettings {
  if (typeof options !== "object" || options === null) throw new TypeError("connectDesktop options must be an object");
  const port = validatePort(options.port ?? DEFAULT_DESKTOP_PORT, "port");
  const password = options.password ?? undefined;
  if (password !== undefined && typeof password !== "string") {
    throw new TypeError(`password must be a string, got ${typeof password}`);
  }
  const shared = options.shared ?? true;
  if (typeof shared !== "boolean") throw new TypeError(`shared must be a boolean, got ${typeof shared}`);
  const connectTimeoutSecs = seconds(options.connectTimeoutSecs ?? DEFAULT_CONNECT_TIMEOUT_SECS, "connectTimeoutSecs");
  return { port, password, shared, connectTimeoutSecs };
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/**
 * Probe `port` every {@link PROBE_INTERVAL_MS} until it accepts connections, or throw
 * {@link SandboxTimeoutError} after `timeoutSecs`.
 */
export async function waitForPort(target: DesktopTarget, port: number, timeoutSecs: number): Promise<void> {
  const deadline = Date.now() + timeoutSecs * 1000;
  for (;;) {
    if (await target.probe(port)) return;
    const left = deadline - Date.now();
    if (left <= 0) {
      throw new SandboxTimeoutError(
        `nothing accepted connections on port ${port} in the sandbox within ${timeoutSecs} s: is a VNC server running?`,
        "connectTimeoutSecs",
      );
    }
    await sleep(Math.min(PROBE_INTERVAL_MS, left));
  }
}

/**
 * Connect to the VNC server on `options.port` in a sandbox: wait for the port, open the tunnel,
 * run the RFB handshake. Whatever was opened is closed again when a step fails.
 */
export async function connectDesktop(target: DesktopTarget, options: ConnectDesktopOptions = {}): Promise<Desktop> {
  const { port, password, shared, connectTimeoutSecs } = desktopOptions(options);
  await waitForPort(target, port, connectTimeoutSecs);
  const what = `the VNC server on sandbox port ${port}`;
  let transport: ByteTransport | undefined;
  await openWebSocket(target.tunnelUrl(port), target.headers, {
    timeoutMs: connectTimeoutSecs * 1000,
    compression: false,
    what: `desktop tunnel to sandbox port ${port}`,
    sandboxId: target.sandboxId,
    // The server greets first, possibly in the same packet as the upgrade's answer: listen from the start.
    attach: (ws) => {
      transport = webSocketTransport(ws, `the tunnel to sandbox port ${port}`);
    },
  });
  return openDesktop(transport!, { password, shared, connectTimeoutSecs, what });
}

/**
 * A {@link Desktop} over any byte transport to a VNC server (the SDK uses the sandbox's tunnel;
 * tests use a TCP socket). The transport is closed when the handshake fails.
 */
export async function openDesktop(transport: ByteTransport, options: OpenDesktopOptions = {}): Promise<Desktop> {
  const timeoutSecs = seconds(options.connectTimeoutSecs ?? DEFAULT_CONNECT_TIMEOUT_SECS, "connectTimeoutSecs");
  const rfb = await RfbClient.connect(transport, {
    password: options.password,
    shared: options.shared,
    timeoutMs: timeoutSecs * 1000,
    what: options.what,
  });
  return new Desktop(rfb);
}

/**
 * A sandbox's desktop over VNC: screenshots, mouse and keyboard. Made by
 * `Sandbox.connectDesktop()`; close it when done (or use `await using`).
 *
 * Coordinates are integer pixels from the top-left corner, inside the screen. Calls without
 * coordinates act at the pointer's position as this handle last set it (0, 0 at first). Input
 * methods resolve once their events are sent.
 *
 * ```ts
 * await using desktop = await sandbox.connectDesktop({ password: "secret" });
 * const png = await desktop.screenshot();
 * await desktop.click(640, 400);
 * await desktop.typeText("hello\n");
 * await desktop.press(["ctrl", "s"]);
 * ```
 */
export class Desktop {
  readonly #rfb: RfbClient;
  #closed = false;
  #x = 0;
  #y = 0;
  /** Buttons held down (PointerEvent mask). */
  #buttons = 0;
  /** Keys held down by {@link keyDown}: their keysym → the keysym sent. */
  readonly #held = new Map<number, number>();

  /** @internal Use `Sandbox.connectDesktop()`. */
  constructor(rfb: RfbClient) {
    this.#rfb = rfb;
  }

  /** Screen width in pixels (follows resizes). */
  get width(): number {
    return this.#rfb.width;
  }

  /** Screen height in pixels (follows resizes). */
  get height(): number {
    return this.#rfb.height;
  }

  /** The desktop's name, as the VNC server gave it. */
  get name(): string {
    return this.#rfb.name;
  }

  /** Whether the handle is closed: by {@link close}, or because the connection ended. */
  get closed(): boolean {
    return this.#closed || this.#rfb.ended !== null;
  }

  toString(): string {
    return `Desktop(${this.width}x${this.height}, closed=${this.closed})`;
  }

  /** Close the connection (idempotent). */
  async close(): Promise<void> {
    this.#closed = true;
    await this.#rfb.close();
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }

  // -- screen ----------------------------------------------------------------------------------

  /**
   * The whole screen as PNG bytes (RGB, 8 bits per channel). Waits at most `timeoutSecs`
   * (default 5) for the pixels, then throws {@link SandboxTimeoutError}.
   */
  async screenshot(options: ScreenshotOptions = {}): Promise<Uint8Array> {
    const timeoutSecs = seconds(options.timeoutSecs ?? DEFAULT_SCREENSHOT_TIMEOUT_SECS, "timeoutSecs");
    this.#check();
    let frame;
    try {
      frame = await this.#rfb.capture(timeoutSecs * 1000);
    } catch (error) {
      throw this.#mapped(error);
    }
    return encodePng(frame.width, frame.height, frame.rgb);
  }

  // -- mouse -----------------------------------------------------------------------------------

  /** Move the pointer to (`x`, `y`). */
  async moveMouse(x: number, y: number): Promise<void> {
    this.#check();
    const [px, py] = this.#point(x, y, true);
    await this.#send([this.#moveTo(px, py)]);
  }

  /** Press `button` (default left) and hold it, at (`x`, `y`) if given (the pointer moves there first). */
  async mousePress(button: MouseButton = "left", x?: number, y?: number): Promise<void> {
    this.#check();
    const bit = buttonBit(button);
    const [px, py] = this.#point(x, y);
    await this.#send([this.#moveTo(px, py), this.#buttonsTo(this.#buttons | bit)]);
  }

  /** Release `button` (default left), at (`x`, `y`) if given (the pointer moves there first). */
  async mouseRelease(button: MouseButton = "left", x?: number, y?: number): Promise<void> {
    this.#check();
    const bit = buttonBit(button);
    const [px, py] = this.#point(x, y);
    await this.#send([this.#moveTo(px, py), this.#buttonsTo(this.#buttons & ~bit)]);
  }

  /** Press and release `button` (default left) at (`x`, `y`), or where the pointer is. */
  async click(x?: number, y?: number, button: MouseButton = "left"): Promise<void> {
    this.#check();
    const bit = buttonBit(button);
    const [px, py] = this.#point(x, y);
    await this.#send([this.#moveTo(px, py), ...this.#clickOf(bit)]);
  }

  /** Two clicks `delayMs` apart (default 50 ms). */
  async doubleClick(x?: number, y?: number, button: MouseButton = "left", delayMs = 50): Promise<void> {
    this.#check();
    const bit = buttonBit(button);
    if (typeof delayMs !== "number" || !Number.isFinite(delayMs) || delayMs < 0 || delayMs > MAX_DELAY_MS) {
      throw new RangeError(`delayMs must be a number of milliseconds between 0 and ${MAX_DELAY_MS}, got ${String(delayMs)}`);
    }
    const [px, py] = this.#point(x, y);
    await this.#send([this.#moveTo(px, py), ...this.#clickOf(bit)]);
    await sleep(delayMs);
    this.#check();
    await this.#send(this.#clickOf(bit));
  }

  /** A left click at (`x`, `y`), or where the pointer is. */
  leftClick(x?: number, y?: number): Promise<void> {
    return this.click(x, y, "left");
  }

  /** A middle click at (`x`, `y`), or where the pointer is. */
  middleClick(x?: number, y?: number): Promise<void> {
    return this.click(x, y, "middle");
  }

  /** A right click at (`x`, `y`), or where the pointer is. */
  rightClick(x?: number, y?: number): Promise<void> {
    return this.click(x, y, "right");
  }

  /**
   * Turn the wheel `steps` notches: up when positive (button 4), down when negative (button 5), at
   * (`x`, `y`) if given.
   */
  async scroll(steps: number, x?: number, y?: number): Promise<void> {
    this.#check();
    if (typeof steps !== "number" || !Number.isInteger(steps)) {
      throw new TypeError(`steps must be an integer (positive scrolls up, negative down), got ${String(steps)}`);
    }
    const [px, py] = this.#point(x, y);
    const wheel = steps > 0 ? WHEEL_UP : WHEEL_DOWN;
    const messages = [this.#moveTo(px, py)];
    for (let i = 0; i < Math.abs(steps); i++) {
      messages.push(pointerEventMessage(this.#buttons | wheel, px, py), pointerEventMessage(this.#buttons, px, py));
    }
    await this.#send(messages);
  }

  /** Scroll up `steps` notches (default 1). */
  scrollUp(steps = 1, x?: number, y?: number): Promise<void> {
    return this.scroll(Math.abs(steps), x, y);
  }

  /** Scroll down `steps` notches (default 1). */
  scrollDown(steps = 1, x?: number, y?: number): Promise<void> {
    return this.scroll(-Math.abs(steps), x, y);
  }

  // -- keyboard --------------------------------------------------------------------------------

  /**
   * Press `key` and hold it: a name such as `"ctrl"`, `"enter"`, `"F5"` (case-insensitive; see
   * `KEY_NAMES`) or a single character. While Shift is held (`keyDown("shift")`), a letter is sent
   * in upper case, as a keyboard would.
   */
  async keyDown(key: string): Promise<void> {
    this.#check();
    const keysym = keysymForKey(key);
    const sent = this.#shiftHeld() ? shiftedKeysym(keysym) : keysym;
    this.#held.set(keysym, sent);
    await this.#send([keyEventMessage(true, sent)]);
  }

  /** Release `key` (same names as {@link keyDown}). */
  async keyUp(key: string): Promise<void> {
    this.#check();
    const keysym = keysymForKey(key);
    const sent = this.#held.get(keysym) ?? keysym;
    this.#held.delete(keysym);
    await this.#send([keyEventMessage(false, sent)]);
  }

  /**
   * Press and release a key, or a chord given as a list: `press("enter")`,
   * `press(["ctrl", "shift", "t"])` presses the keys in order and releases them in reverse. A
   * letter after `"shift"` is sent in upper case, as a keyboard would (a VNC server types the
   * character it is sent, so a lower-case one would cancel the Shift).
   */
  async press(key: string | readonly string[]): Promise<void> {
    this.#check();
    const keys = typeof key === "string" ? [key] : key;
    if (!Array.isArray(keys) || keys.length === 0) {
      throw new TypeError(`press takes a key or a non-empty list of keys, got ${JSON.stringify(key)}`);
    }
    let shift = this.#shiftHeld();
    const keysyms = keys.map((name) => {
      const keysym = keysymForKey(name);
      const sent = shift ? shiftedKeysym(keysym) : keysym;
      if (keysym === SHIFT_KEYSYM) shift = true;
      return sent;
    });
    await this.#send([
      ...keysyms.map((keysym) => keyEventMessage(true, keysym)),
      ...keysyms.reverse().map((keysym) => keyEventMessage(false, keysym)),
    ]);
  }

  /**
   * Type `text`, one key press and release per character. Any Unicode character can be typed:
   * those without a key of their own are sent as Unicode keysyms (the VNC server maps them).
   * `\n` is Enter and `\t` Tab.
   */
  async typeText(text: string): Promise<void> {
    this.#check();
    if (typeof text !== "string") throw new TypeError(`typeText takes a string, got ${typeof text}`);
    const messages: Uint8Array[] = [];
    for (const char of text) {
      const keysym = keysymForChar(char);
      messages.push(keyEventMessage(true, keysym), keyEventMessage(false, keysym));
    }
    if (messages.length > 0) await this.#send(messages);
  }

  // -- internals -------------------------------------------------------------------------------

  #closedError(): SandboxError {
    const ended = this.#rfb.ended;
    if (this.#closed || !ended) return new SandboxError("the desktop handle is closed");
    return new SandboxError(`the desktop handle is closed: the connection ended (${ended.message})`, { cause: ended });
  }

  #shiftHeld(): boolean {
    return this.#held.has(SHIFT_KEYSYM);
  }

  #check(): void {
    if (this.closed) throw this.#closedError();
  }

  /** A failure, as the closed-handle error when the connection ended meanwhile. */
  #mapped(error: unknown): unknown {
    return this.closed && !(error instanceof SandboxTimeoutError) ? this.#closedError() : error;
  }

  async #send(messages: Uint8Array[]): Promise<void> {
    try {
      await this.#rfb.send(messages.length === 1 ? messages[0]! : Buffer.concat(messages));
    } catch (error) {
      throw this.#mapped(error);
    }
  }

  /** Checked coordinates; both absent means the current position. */
  #point(x: number | undefined, y: number | undefined, required = false): [number, number] {
    if (!required && (x === undefined || x === null) && (y === undefined || y === null)) return [this.#x, this.#y];
    if (x === undefined || x === null || y === undefined || y === null) {
      throw new TypeError(required ? "x and y are required" : "give both x and y, or neither (the pointer's position)");
    }
    for (const [name, value] of [["x", x], ["y", y]] as const) {
      if (typeof value !== "number" || !Number.isInteger(value)) {
        throw new TypeError(`${name} must be an integer number of pixels, got ${String(value)}`);
      }
    }
    if (x < 0 || y < 0 || x >= this.width || y >= this.height) {
      throw new RangeError(
        `(${x}, ${y}) is outside the ${this.width}x${this.height} screen: x must be in 0..${this.width - 1}, y in 0..${this.height - 1}`,
      );
    }
    return [x, y];
  }

  /** A PointerEvent moving the pointer (buttons unchanged), and the new position recorded. */
  #moveTo(x: number, y: number): Uint8Array {
    this.#x = x;
    this.#y = y;
    return pointerEventMessage(this.#buttons, x, y);
  }

  #buttonsTo(mask: number): Uint8Array {
    this.#buttons = mask;
    return pointerEventMessage(mask, this.#x, this.#y);
  }

  #clickOf(bit: number): Uint8Array[] {
    const before = this.#buttons & ~bit;
    return [pointerEventMessage(before | bit, this.#x, this.#y), this.#buttonsTo(before)];
  }
}

function buttonBit(button: unknown): number {
  if (typeof button === "string" && Object.hasOwn(BUTTONS, button)) return BUTTONS[button as MouseButton];
  throw new TypeError(`unknown mouse button ${JSON.stringify(button)}: use one of ${Object.keys(BUTTONS).join(", ")}`);
}
