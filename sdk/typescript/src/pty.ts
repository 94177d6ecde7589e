/**
 * Interactive terminal (PTY) sessions in a sandbox (docs/protocol/streaming.md, PTY WebSocket).
 *
 * Frames are binary; the first byte is the opcode:
 *
 * - client → server: `0x00` + bytes = input; `0x01` + cols (u16 BE) + rows (u16 BE) = resize;
 *   `0x02` = READY, sent once right after connecting (the server holds output back until then);
 * - server → client: `0x00` + bytes = output; `0x03` + exit code (i32 BE) = exit.
 *
 * After the exit the server closes with code 1000 and reason `exit:<code>` (some servers send
 * only that close frame, without the `0x03` frame). Text frames are ignored.
 */

import type WebSocket from "ws";

import { connectTimeoutMs } from "./config.js";
import { SandboxConnectionError, SandboxError, SandboxException, SandboxTimeoutError } from "./errors.js";
import { checkProxy, errorFromResponse, responseText, segment } from "./http.js";
import { stringList, stringMap } from "./models.js";
import type { Sandbox } from "./sandbox.js";
import { closeWebSocket, openWebSocket, ptyWebsocketUrl, websocketHeaders } from "./websocket.js";

export const OP_DATA = 0x00;
export const OP_RESIZE = 0x01;
export const OP_READY = 0x02;
export const OP_EXIT = 0x03;

export const READY_FRAME: Uint8Array = Uint8Array.of(OP_READY);
export const EXIT_REASON_PREFIX = "exit:";
export const TERMINATED_REASON = "session terminated";
const SIZE_MAX = 0xffff;
/** How much of the unread output an error message quotes. */
const TAIL_BYTES = 200;

// ---------------------------------------------------------------------------------------------
// Frames

function size(value: unknown, what: string): number {
  if (typeof value !== "number" || !Number.isInteger(value) || value < 1 || value > SIZE_MAX) {
    throw new RangeError(`${what} must be an integer between 1 and ${SIZE_MAX}, got ${String(value)}`);
  }
  return value;
}

function bytesOf(data: Uint8Array | string, what: string): Buffer {
  if (typeof data === "string") return Buffer.from(data, "utf8");
  if (data instanceof Uint8Array) return Buffer.from(data.buffer, data.byteOffset, data.byteLength);
  throw new TypeError(`${what} must be a Uint8Array or a string, got ${typeof data}`);
}

/** An input frame; text is encoded as UTF-8. */
export function inputFrame(data: Uint8Array | string): Uint8Array {
  return Buffer.concat([Uint8Array.of(OP_DATA), bytesOf(data, "PTY input")]);
}

/** A resize frame: opcode, then cols and rows as big-endian u16. */
export function resizeFrame(cols: number, rows: number): Uint8Array {
  const frame = Buffer.alloc(5);
  frame.writeUInt8(OP_RESIZE, 0);
  frame.writeUInt16BE(size(cols, "cols"), 1);
  frame.writeUInt16BE(size(rows, "rows"), 3);
  return frame;
}

/** A decoded server frame. */
export type PtyFrame = { type: "output"; data: Buffer } | { type: "exit"; code: number };

/** Decode one server message; `null` for text frames, empty or unknown frames. */
export function decodeFrame(message: Uint8Array | string): PtyFrame | null {
  if (typeof message === "string" || message.length === 0) return null;
  const data = Buffer.from(message.buffer, message.byteOffset, message.byteLength);
  if (data[0] === OP_DATA) return { type: "output", data: Buffer.from(data.subarray(1)) };
  if (data[0] === OP_EXIT && data.length >= 5) return { type: "exit", code: data.readInt32BE(1) };
  return null;
}

/** The code of an `exit:<code>` close reason (`-1` when unreadable), else `null`. */
export function exitCodeFromReason(reason: string | null | undefined): number | null {
  if (!reason || !reason.startsWith(EXIT_REASON_PREFIX)) return null;
  const text = reason.slice(EXIT_REASON_PREFIX.length).trim();
  return /^-?\d+$/.test(text) ? Number(text) : -1;
}

/** Options of `Sandbox.createPty()`. */
export interface CreatePtyOptions {
  /** Command to start on the terminal (default `bash`). */
  command?: string;
  args?: string[];
  env?: Record<string, string>;
  workingDir?: string;
  /** Terminal width (default 80). */
  cols?: number;
  /** Terminal height (default 24). */
  rows?: number;
}

/** Body of `POST /api/v1/pty`, after client-side checks. */
export function ptyBody(options: CreatePtyOptions = {}): Record<string, unknown> {
  const command = options.command ?? "bash";
  if (typeof command !== "string" || !command) {
    throw new TypeError(`command must be a non-empty string, got ${JSON.stringify(command)}`);
  }
  const body: Record<string, unknown> = { command };
  if (options.args !== undefined) body.args = stringList(options.args, "args");
  if (options.env !== undefined) body.env = stringMap(options.env, "env");
  if (options.workingDir !== undefined) body.working_dir = options.workingDir;
  body.rows = size(options.rows ?? 24, "rows");
  body.cols = size(options.cols ?? 80, "cols");
  return body;
}

// ---------------------------------------------------------------------------------------------
// Session state

function needleOf(pattern: Uint8Array | string): Buffer {
  const needle = bytesOf(pattern, "pattern");
  if (needle.length === 0) throw new RangeError("pattern must not be empty");
  return needle;
}

function deadlineFor(timeoutMs: number | undefined): number | undefined {
  if (timeoutMs === undefined) return undefined;
  if (typeof timeoutMs !== "number" || Number.isNaN(timeoutMs) || timeoutMs < 0) {
    throw new RangeError(`timeoutMs must be a non-negative number of milliseconds, got ${String(timeoutMs)}`);
  }
  return Date.now() + timeoutMs;
}

/**
 * Output received but not read yet, and the exit code once known. The session feeds it every
 * message and the close of its socket; reads take from it.
 */
export class PtyState {
  buffer: Buffer = Buffer.alloc(0);
  exitCode: number | null = null;

  constructor(readonly sessionId: string) {}

  get exited(): boolean {
    return this.exitCode !== null;
  }

  /** Take one message from the server. */
  feed(message: Uint8Array | string): void {
    const frame = decodeFrame(message);
    if (frame?.type === "output") this.buffer = Buffer.concat([this.buffer, frame.data]);
    else if (frame?.type === "exit" && this.exitCode === null) this.exitCode = frame.code;
  }

  /**
   * Take the close of the socket by the server; returns the error to throw, if any.
   * `exit:<code>` records the exit code; `session terminated` and any other close before the
   * exit are errors.
   */
  closed(code: number | null, reason: string): SandboxException | null {
    if (this.exitCode === null) this.exitCode = exitCodeFromReason(reason);
    if (this.exitCode !== null) return null;
    if (reason === TERMINATED_REASON) return new SandboxError(`PTY session ${this.sessionId} terminated`);
    const detail = code !== null ? `${code} ${reason}`.trim() : "no close frame";
    return new SandboxConnectionError(`PTY session ${this.sessionId}: socket closed unexpectedly (${detail})`);
  }

  /** All unread output. */
  take(): Buffer {
    const data = this.buffer;
    this.buffer = Buffer.alloc(0);
    return data;
  }

  /** Unread output up to and including `needle`, or `null` while it has not arrived. */
  takeUntil(needle: Uint8Array): Buffer | null {
    const index = this.buffer.indexOf(needle);
    if (index < 0) return null;
    const end = index + needle.length;
    const data = Buffer.from(this.buffer.subarray(0, end));
    this.buffer = Buffer.from(this.buffer.subarray(end));
    return data;
  }

  tail(): string {
    const text = this.buffer.subarray(Math.max(0, this.buffer.length - TAIL_BYTES)).toString("utf8");
    return text ? `; last output: ${JSON.stringify(text)}` : "; no unread output";
  }

  notConnected(): SandboxError {
    return new SandboxError(`PTY session ${this.sessionId} is not connected: call connect() first`);
  }

  sendAfterExit(): SandboxError {
    return new SandboxError(`PTY session ${this.sessionId} has exited with code ${this.exitCode}`);
  }

  readTimeout(timeoutMs: number | undefined): SandboxTimeoutError {
    return new SandboxTimeoutError(`PTY session ${this.sessionId}: no output within ${timeoutMs}ms`);
  }

  patternTimeout(needle: Buffer, timeoutMs: number | undefined): SandboxTimeoutError {
    return new SandboxTimeoutError(
      `PTY session ${this.sessionId}: ${JSON.stringify(needle.toString("utf8"))} did not appear within ` +
        `${timeoutMs}ms${this.tail()} (the output stays readable with read())`,
    );
  }

  patternMissing(needle: Buffer): SandboxError {
    return new SandboxError(
      `PTY session ${this.sessionId} exited with code ${this.exitCode} before ` +
        `${JSON.stringify(needle.toString("utf8"))} appeared${this.tail()} (the output stays readable with read())`,
    );
  }

  waitTimeout(timeoutMs: number | undefined): SandboxTimeoutError {
    return new SandboxTimeoutError(`PTY session ${this.sessionId} did not exit within ${timeoutMs}ms`);
  }
}

// ---------------------------------------------------------------------------------------------
// Session

/**
 * A terminal session running a command in the sandbox, from `Sandbox.createPty()`.
 *
 * The session lives in the sandbox until its command exits or {@link kill}; the socket that
 * carries its I/O comes and goes. {@link connect} opens the socket, {@link close} closes it and
 * leaves the command running, for a later `connect()` or `sandbox.connectPty(sessionId, token)`.
 * Hand {@link websocketUrl} to any WebSocket client to drive the session from elsewhere.
 *
 * ```ts
 * const pty = await sandbox.createPty({ command: "bash" });
 * await pty.connect();
 * await pty.send("echo hi; exit 3\n");
 * await pty.readUntil("hi\r\n", 10_000);
 * console.log(await pty.wait(10_000)); // 3
 * ```
 */
export class PtySession {
  readonly #sandbox: Sandbox;
  readonly #sessionId: string;
  readonly #token: string;
  readonly #state: PtyState;
  #ws: WebSocket | null = null;
  #error: SandboxException | null = null;
  #connecting: Promise<PtySession> | null = null;
  #waiters = new Set<() => void>();
  readonly #closingByUs = new WeakSet<WebSocket>();

  constructor(sandbox: Sandbox, sessionId: string, token: string) {
    for (const [value, what] of [
      [sessionId, "sessionId"],
      [token, "token"],
    ] as const) {
      if (typeof value !== "string" || !value) {
        throw new TypeError(`${what} must be a non-empty string, got ${JSON.stringify(value)}`);
      }
    }
    this.#sandbox = sandbox;
    this.#sessionId = sessionId;
    this.#token = token;
    this.#state = new PtyState(sessionId);
  }

  get sessionId(): string {
    return this.#sessionId;
  }

  /** The secret that opens the session's socket (keep it to reconnect). */
  get token(): string {
    return this.#token;
  }

  /** `ws(s)://…/sandboxes/<id>/api/v1/pty/<session>/ws?token=…`: works with any WebSocket client. */
  get websocketUrl(): string {
    const sandbox = this.#sandbox;
    return ptyWebsocketUrl(sandbox._sandboxUrl(), sandbox.sandboxId, this.#sessionId, this.#token);
  }

  /** The command's exit code, once this handle has seen it exit; `null` before. */
  get exitCode(): number | null {
    return this.#state.exitCode;
  }

  /** Whether the socket is open. */
  get connected(): boolean {
    return this.#ws !== null;
  }

  toString(): string {
    return `PtySession(sessionId=${this.#sessionId}, connected=${this.connected}, exitCode=${this.exitCode})`;
  }

  /**
   * Open the socket and send READY (the server then flushes the output it held back).
   * Does nothing when already connected or when the command has exited.
   */
  connect(): Promise<PtySession> {
    if (this.#ws !== null || this.#state.exited) return Promise.resolve(this);
    this.#connecting ??= this.#open().finally(() => {
      this.#connecting = null;
    });
    return this.#connecting;
  }

  async #open(): Promise<PtySession> {
    const sandbox = this.#sandbox;
    const config = sandbox._transport().config;
    const ws = await openWebSocket(this.websocketUrl, websocketHeaders(config, sandbox._target(), this.#token), {
      timeoutMs: connectTimeoutMs(config),
      compression: true,
      what: `PTY session ${this.#sessionId}`,
      sandboxId: sandbox.sandboxId,
    });
    ws.on("message", (data: Buffer, isBinary: boolean) => {
      if (!isBinary) return;
      this.#state.feed(data);
      this.#notify();
    });
    ws.once("close", (code: number, reason: Buffer) => {
      if (this.#ws === ws) this.#ws = null;
      const error = this.#state.closed(code, reason.toString("utf8"));
      if (error !== null && !this.#closingByUs.has(ws)) this.#error = error;
      this.#notify();
    });
    this.#ws = ws;
    this.#error = null;
    await this.#sendFrame(READY_FRAME);
    return this;
  }

  /** Type `data` into the terminal (text is encoded as UTF-8). */
  async send(data: Uint8Array | string): Promise<void> {
    const frame = inputFrame(data);
    if (frame.length > 1) await this.#sendFrame(frame);
  }

  /** Change the terminal size. */
  async resize(cols: number, rows: number): Promise<void> {
    await this.#sendFrame(resizeFrame(cols, rows));
  }

  /**
   * The output not read yet, waiting for some when there is none; empty once the command exited.
   * Throws {@link SandboxTimeoutError} when nothing arrives within `timeoutMs`.
   */
  async read(timeoutMs?: number): Promise<Buffer> {
    const deadline = deadlineFor(timeoutMs);
    while (this.#state.buffer.length === 0 && !this.#state.exited) {
      this.#requireOpen();
      if (!(await this.#changed(deadline))) throw this.#state.readTimeout(timeoutMs);
    }
    return this.#state.take();
  }

  /**
   * Output up to and including the first `pattern` (text is matched as UTF-8); what follows
   * stays for the next read. Throws {@link SandboxTimeoutError} when the pattern does not appear
   * within `timeoutMs`, and {@link SandboxError} when the command exits first; the output read so
   * far stays readable in both cases.
   */
  async readUntil(pattern: Uint8Array | string, timeoutMs?: number): Promise<Buffer> {
    const needle = needleOf(pattern);
    const deadline = deadlineFor(timeoutMs);
    for (;;) {
      const found = this.#state.takeUntil(needle);
      if (found !== null) return found;
      if (this.#state.exited) throw this.#state.patternMissing(needle);
      this.#requireOpen();
      if (!(await this.#changed(deadline))) throw this.#state.patternTimeout(needle, timeoutMs);
    }
  }

  /**
   * Wait for the command to exit and return its exit code; output arriving meanwhile stays
   * readable. Throws {@link SandboxTimeoutError} when it is still running after `timeoutMs`.
   */
  async wait(timeoutMs?: number): Promise<number> {
    const deadline = deadlineFor(timeoutMs);
    while (this.#state.exitCode === null) {
      this.#requireOpen();
      if (!(await this.#changed(deadline))) throw this.#state.waitTimeout(timeoutMs);
    }
    return this.#state.exitCode;
  }

  /** Close the socket; the command keeps running (reconnect with {@link connect}). */
  async close(): Promise<void> {
    if (this.#connecting !== null) await this.#connecting.catch(() => undefined);
    const ws = this.#ws;
    this.#ws = null;
    if (ws === null) return;
    this.#closingByUs.add(ws);
    await closeWebSocket(ws);
  }

  /**
   * End the session: kill its command (a session already gone counts as killed). The socket
   * stays open, so {@link wait} can still collect the exit code.
   */
  async kill(): Promise<void> {
    const sandbox = this.#sandbox;
    const target = sandbox._target();
    const response = await sandbox._transport().send({
      method: "DELETE",
      url: `${target.baseUrl}/api/v1/pty/${segment(this.#sessionId)}`,
      headers: { ...target.headers },
    });
    if (response.status === 404) {
      const error = errorFromResponse(404, responseText(response));
      if ((error as { code?: string }).code !== "SANDBOX_NOT_FOUND") return;
    }
    checkProxy(response, target);
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }

  // -- internals -------------------------------------------------------------------------------

  #requireOpen(): WebSocket {
    if (this.#error !== null) {
      const error = this.#error;
      this.#error = null;
      throw error;
    }
    if (this.#ws === null) throw this.#state.exited ? this.#state.sendAfterExit() : this.#state.notConnected();
    return this.#ws;
  }

  #sendFrame(frame: Uint8Array): Promise<void> {
    const ws = this.#requireOpen();
    return new Promise((resolve, reject) => {
      ws.send(frame, { binary: true }, (error) => {
        if (!error) resolve();
        else reject(this.#state.exited ? this.#state.sendAfterExit() : new SandboxConnectionError(
          `PTY session ${this.#sessionId}: sending failed: ${error.message}`, { cause: error }));
      });
    });
  }

  #notify(): void {
    const waiters = [...this.#waiters];
    this.#waiters.clear();
    for (const wake of waiters) wake();
  }

  /** Wait for a message or the close; false when the deadline passed first. */
  #changed(deadline: number | undefined): Promise<boolean> {
    return new Promise((resolve) => {
      let timer: NodeJS.Timeout | undefined;
      const wake = (): void => {
        clearTimeout(timer);
        resolve(true);
      };
      this.#waiters.add(wake);
      if (deadline !== undefined) {
        timer = setTimeout(() => {
          this.#waiters.delete(wake);
          resolve(false);
        }, Math.max(0, deadline - Date.now()));
      }
    });
  }
}
