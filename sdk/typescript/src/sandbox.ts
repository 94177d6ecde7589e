/**
 * Handle to one running sandbox: commands, processes, files, terminals, tunnels and desktops.
 *
 * Requests go to the sandbox's agent (docs/protocol/sandbox-api.md) through the proxy at the
 * sandbox's `sandbox_url`, addressed by the self-routing path `{sandbox_url}/sandboxes/{id}/api/v1/...`.
 */

import { createWriteStream } from "node:fs";
import { once } from "node:events";

import type {
  BindOutcome,
  GetLogsOptions,
  SandboxClient,
  UpdateResourcesOptions,
  WaitForResourceResizeOptions,
} from "./client.js";
import { connectTimeoutMs } from "./config.js";
import { connectDesktop, PROBE_TIMEOUT_SECS, type ConnectDesktopOptions, type Desktop } from "./desktop.js";
import { SandboxError, SandboxNotFoundError, SandboxNotRoutableError } from "./errors.js";
import {
  checkProxy,
  readChunks,
  responseJson,
  segment,
  type HttpResponse,
  type HttpTransport,
  type ProxyTarget,
  type RequestSpec,
  proxyTarget,
} from "./http.js";
import {
  directoryEntryFromWire,
  listFromWire,
  outputResponseFromWire,
  processInfoFromWire,
  ptySessionInfoFromWire,
  stringList,
  stringMap,
  type CommandResult,
  type DirectoryEntry,
  type OutputBatch,
  type OutputEvent,
  type OutputMode,
  type OutputResponse,
  type OutputStream,
  type HealthCheckOptions,
  type ProcessHealthCheck,
  type ProcessInfo,
  type RestartOptions,
  type RestartPolicyConfig,
  type FileSystemMount,
  type SandboxInfo,
  type SandboxLogSignal,
  type SandboxLogsResponse,
  type SandboxMetrics,
  type SandboxProcessLogFiltersResponse,
  type StdinMode,
} from "./models.js";
import { PtySession, ptyBody, type CreatePtyOptions } from "./pty.js";
import { followOutputBatches, followOutputEvents, type OpenFollow } from "./follow-stream.js";
import { collectRun } from "./run-stream.js";
import { Tunnel, type CreateTunnelOptions } from "./tunnel.js";
import { tunnelWebsocketUrl, websocketHeaders } from "./websocket.js";

/** A user: a name or `uid[:gid]` string, or an object the agent understands. */
export type RunUser = string | { name: string } | { uid: number; gid?: number };

/** Options of `Sandbox.run()`. */
export interface RunOptions {
  args?: string[];
  env?: Record<string, string>;
  workingDir?: string;
  /** Kill the command (its whole process tree) after this many seconds. */
  timeoutSecs?: number;
  user?: RunUser;
}

/** Options of `Sandbox.startProcess()`. */
export interface StartProcessOptions {
  args?: string[];
  env?: Record<string, string>;
  workingDir?: string;
  /**
   * `pipe` (the default): the process's stdin is a pipe to write to with `writeStdin()` and end
   * with `closeStdin()`; a program that reads stdin waits for that. `closed`: stdin is at
   * end-of-file from the start.
   */
  stdinMode?: StdinMode;
  stdoutMode?: OutputMode;
  stderrMode?: OutputMode;
  user?: RunUser;
  /**
   * Name of a managed process: it addresses the process instead of its pid in every process
   * method and stays valid across restarts. Not empty, not all digits, no `/`, not `run`.
   */
  name?: string;
  /** Restart policy of a managed process (sent as `restart`, snake_case); `{}` takes the server's defaults. */
  restart?: RestartOptions | RestartPolicyConfig;
  /** Health check of a managed process (sent as `health_check`, snake_case). */
  healthCheck?: HealthCheckOptions | ProcessHealthCheck;
}

/** What `writeFile` accepts: bytes, text (written as UTF-8), or a stream of byte chunks. */
export type FileData =
  | Uint8Array
  | ArrayBuffer
  | string
  | ReadableStream<Uint8Array>
  | AsyncIterable<Uint8Array>
  | Iterable<Uint8Array>;

const FOLLOW_STREAMS: Record<"output" | "stdout" | "stderr", OutputStream | null> = {
  output: null,
  stdout: "stdout",
  stderr: "stderr",
};

function pidSegment(pid: number | string): string {
  if (typeof pid === "number" && Number.isInteger(pid) && pid >= 0) return String(pid);
  if (typeof pid === "string" && pid.trim()) return segment(pid);
  throw new TypeError(`pid must be a process id or a managed-process name, got ${JSON.stringify(pid)}`);
}

function pathQuery(path: string): Record<string, string> {
  if (typeof path !== "string" || !path) throw new TypeError(`path must be a non-empty string, got ${JSON.stringify(path)}`);
  return { path };
}

function commandFields(
  command: string,
  args: unknown,
  env: unknown,
  workingDir: unknown,
  user: unknown,
): Record<string, unknown> {
  if (typeof command !== "string" || !command) {
    throw new TypeError(`command must be a non-empty string, got ${JSON.stringify(command)}`);
  }
  const body: Record<string, unknown> = { command };
  if (args !== undefined && args !== null) body.args = stringList(args, "args");
  if (env !== undefined && env !== null) body.env = stringMap(env, "env");
  if (workingDir !== undefined && workingDir !== null) {
    if (typeof workingDir !== "string") throw new TypeError(`workingDir must be a string, got ${typeof workingDir}`);
    body.working_dir = workingDir;
  }
  if (user !== undefined && user !== null) body.user = user;
  return body;
}

/**
 * The options of `run(command, args?, options?)` / `startProcess(...)`: the arguments may come
 * as a list in second place (`run("python", ["-c", "..."])`) or inside the options.
 */
function withArgs<T extends { args?: string[] }>(args: string[] | T | undefined, options: T | undefined): T {
  if (Array.isArray(args)) {
    if (options?.args !== undefined) throw new TypeError("pass args either as a list or in the options, not both");
    return { ...(options ?? ({} as T)), args };
  }
  if (args !== undefined && options !== undefined) {
    throw new TypeError("the second argument must be a list of arguments when options follow it");
  }
  return (args ?? options ?? {}) as T;
}

/** Body of `POST /api/v1/processes/run`; the time limit travels as `timeout` (seconds). */
export function runBody(command: string, options: RunOptions = {}): Record<string, unknown> {
  const body = commandFields(command, options.args, options.env, options.workingDir, options.user);
  if (options.timeoutSecs !== undefined && options.timeoutSecs !== null) {
    const timeout = options.timeoutSecs;
    if (typeof timeout !== "number" || !Number.isFinite(timeout) || timeout <= 0) {
      throw new RangeError(`timeoutSecs must be a positive number, got ${String(timeout)}`);
    }
    body.timeout = timeout;
  }
  // Lines in batches (one event per read): far fewer bytes to scan. Servers that do not know the
  // field ignore it and send one event per line, which is read as well.
  body.batch_output = true;
  return body;
}

/** The SDK's `stdinMode` when none is given; always sent, since the server's own default is `closed`. */
export const DEFAULT_STDIN_MODE: StdinMode = "pipe";

/** Body of `POST /api/v1/processes`; `stdin_mode` is always there (default `pipe`). */
export function startProcessBody(command: string, options: StartProcessOptions = {}): Record<string, unknown> {
  const body = commandFields(command, options.args, options.env, options.workingDir, options.user);
  const modes: [string, unknown, readonly string[]][] = [
    ["stdin_mode", options.stdinMode ?? DEFAULT_STDIN_MODE, ["closed", "pipe"]],
    ["stdout_mode", options.stdoutMode, ["capture", "discard"]],
    ["stderr_mode", options.stderrMode, ["capture", "discard"]],
  ];
  for (const [key, value, allowed] of modes) {
    if (value === undefined || value === null) continue;
    if (typeof value !== "string" || !allowed.includes(value)) {
      throw new TypeError(`${key} must be one of ${allowed.join(", ")}, got ${JSON.stringify(value)}`);
    }
    body[key] = value;
  }
  if (options.name !== undefined && options.name !== null) body.name = managedName(options.name);
  if (options.restart !== undefined && options.restart !== null) body.restart = restartBody(options.restart);
  if (options.healthCheck !== undefined && options.healthCheck !== null) body.health_check = healthCheckBody(options.healthCheck);
  return body;
}

/** A managed-process name, checked as the agent does. */
function managedName(name: unknown): string {
  if (typeof name !== "string" || !name) throw new TypeError(`name must be a non-empty string, got ${JSON.stringify(name)}`);
  if (/^[0-9]+$/.test(name)) throw new TypeError(`name must not be all digits (it would read as a pid), got ${JSON.stringify(name)}`);
  if (name.includes("/") || ["run", ".", ".."].includes(name)) {
    throw new TypeError(`name must not contain '/' nor be 'run', '.' or '..', got ${JSON.stringify(name)}`);
  }
  return name;
}

/** The snake_case JSON of a restart or health-check config, after checking its fields (the server checks the rest). */
function configBody(
  value: unknown,
  what: string,
  fields: Record<string, string>,
  defaults: Record<string, unknown>,
): Record<string, unknown> {
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    throw new TypeError(`${what} must be an object, got ${JSON.stringify(value)}`);
  }
  const unknown = Object.keys(value).filter((key) => !(key in fields));
  if (unknown.length) throw new TypeError(`${what} has unknown fields ${unknown.join(", ")}; known: ${Object.keys(fields).join(", ")}`);
  const body: Record<string, unknown> = { ...defaults };
  for (const [key, item] of Object.entries(value as Record<string, unknown>)) {
    if (item === undefined) continue;
    body[fields[key]!] = item;
  }
  for (const [key, item] of Object.entries(body)) {
    if (key === "policy" || key === "type" || key === "path" || item === null) continue;
    if (typeof item !== "number" || !Number.isInteger(item) || item < 0) {
      throw new RangeError(`${what}.${key} must be a non-negative integer, got ${JSON.stringify(item)}`);
    }
  }
  return body;
}

/** The `restart` field of a start body: every field, the server's defaults for those left out. */
export function restartBody(restart: RestartOptions | RestartPolicyConfig): Record<string, unknown> {
  const body = configBody(
    restart,
    "restart",
    { policy: "policy", maxRestarts: "max_restarts", initialBackoffMs: "initial_backoff_ms", maxBackoffMs: "max_backoff_ms" },
    { policy: "on_failure", initial_backoff_ms: 500, max_backoff_ms: 30_000 },
  );
  if (!["never", "on_failure", "always"].includes(body.policy as string)) {
    throw new TypeError(`restart.policy must be one of never, on_failure, always, got ${JSON.stringify(body.policy)}`);
  }
  if (body.max_restarts === null) delete body.max_restarts;
  return body;
}

/** The `health_check` field of a start body: every field, the server's defaults for those left out. */
export function healthCheckBody(healthCheck: HealthCheckOptions | ProcessHealthCheck): Record<string, unknown> {
  const body = configBody(
    healthCheck,
    "healthCheck",
    {
      type: "type",
      port: "port",
      path: "path",
      initialDelayMs: "initial_delay_ms",
      intervalMs: "interval_ms",
      timeoutMs: "timeout_ms",
      failureThreshold: "failure_threshold",
    },
    { initial_delay_ms: 5_000, interval_ms: 1_000, timeout_ms: 500, failure_threshold: 3 },
  );
  if (body.type !== "http" && body.type !== "tcp") {
    throw new TypeError(`healthCheck.type must be http or tcp, got ${JSON.stringify(body.type)}`);
  }
  if (typeof body.port !== "number" || body.port < 1 || body.port > 65535) {
    throw new RangeError(`healthCheck.port must be between 1 and 65535, got ${JSON.stringify(body.port)}`);
  }
  if (body.path === null) delete body.path;
  else if (body.path !== undefined && typeof body.path !== "string") {
    throw new TypeError(`healthCheck.path must be a string, got ${JSON.stringify(body.path)}`);
  }
  return body;
}

/**
 * Signal numbers as the sandbox (Linux, x86-64) reads them: names are looked up here, not in the
 * client machine's `os.constants.signals` (SIGUSR1 is 30 on macOS, where Linux reads 30 as SIGPWR;
 * Windows has no SIGUSR1 at all).
 */
const LINUX_SIGNALS: Readonly<Record<string, number>> = {
  SIGHUP: 1, SIGINT: 2, SIGQUIT: 3, SIGILL: 4, SIGTRAP: 5, SIGABRT: 6, SIGIOT: 6, SIGBUS: 7,
  SIGFPE: 8, SIGKILL: 9, SIGUSR1: 10, SIGSEGV: 11, SIGUSR2: 12, SIGPIPE: 13, SIGALRM: 14,
  SIGTERM: 15, SIGSTKFLT: 16, SIGCHLD: 17, SIGCLD: 17, SIGCONT: 18, SIGSTOP: 19, SIGTSTP: 20,
  SIGTTIN: 21, SIGTTOU: 22, SIGURG: 23, SIGXCPU: 24, SIGXFSZ: 25, SIGVTALRM: 26, SIGPROF: 27,
  SIGWINCH: 28, SIGIO: 29, SIGPOLL: 29, SIGPWR: 30, SIGSYS: 31, SIGRTMIN: 34, SIGRTMAX: 64,
};

/** A signal number from a number (sent as it is) or a name such as `"SIGTERM"` (its Linux number). */
export function signalNumber(signal: number | NodeJS.Signals): number {
  if (typeof signal === "number") {
    if (Number.isInteger(signal) && signal > 0) return signal;
  } else if (typeof signal === "string" && Object.hasOwn(LINUX_SIGNALS, signal)) {
    return LINUX_SIGNALS[signal]!;
  }
  throw new TypeError(`signal must be a positive integer or a signal name like "SIGTERM", got ${JSON.stringify(signal)}`);
}

/** A streamed request body from what `writeFile` accepts, or the bytes when they are in memory. */
export function uploadBody(data: FileData): Uint8Array | ReadableStream<Uint8Array> {
  if (typeof data === "string") return Buffer.from(data, "utf8");
  if (data instanceof Uint8Array) return data;
  if (data instanceof ArrayBuffer) return new Uint8Array(data);
  if (data instanceof ReadableStream) return data;
  const chunk = (value: unknown): Uint8Array => {
    if (value instanceof Uint8Array) return value;
    if (typeof value === "string") return Buffer.from(value, "utf8");
    throw new TypeError(`writeFile data must yield Uint8Array chunks, got ${typeof value}`);
  };
  if (typeof (data as AsyncIterable<Uint8Array>)[Symbol.asyncIterator] === "function") {
    const iterator = (data as AsyncIterable<Uint8Array>)[Symbol.asyncIterator]();
    return new ReadableStream<Uint8Array>({
      async pull(controller) {
        const next = await iterator.next();
        if (next.done) controller.close();
        else controller.enqueue(chunk(next.value));
      },
      async cancel() {
        await iterator.return?.();
      },
    });
  }
  if (typeof (data as Iterable<Uint8Array>)[Symbol.iterator] === "function") {
    const iterator = (data as Iterable<Uint8Array>)[Symbol.iterator]();
    return new ReadableStream<Uint8Array>({
      pull(controller) {
        const next = iterator.next();
        if (next.done) controller.close();
        else controller.enqueue(chunk(next.value));
      },
    });
  }
  throw new TypeError(`writeFile takes a Uint8Array, a string, a ReadableStream or an iterable of Uint8Array`);
}

/**
 * A live sandbox, returned by `SandboxClient.createAndConnect()` and `connect()`.
 *
 * A handle from `createAndConnect()` deletes its sandbox when disposed (`await using`); a handle
 * from `connect()` leaves the sandbox running. `terminate()` deletes it either way.
 */
export class Sandbox {
  readonly #client: SandboxClient;
  #info: SandboxInfo;
  #target: ProxyTarget;
  #owned: boolean;
  readonly #bindOutcome: BindOutcome | null;

  /** @internal Use `SandboxClient.createAndConnect()` or `SandboxClient.connect()`. */
  constructor(client: SandboxClient, info: SandboxInfo, owned = false, bindOutcome: BindOutcome | null = null) {
    if (!info.sandboxUrl) {
      throw new SandboxNotRoutableError(
        `sandbox ${info.sandboxId} (${info.status}): the server gave no sandbox_url, so its processes and files cannot be reached`,
      );
    }
    this.#client = client;
    this.#info = info;
    this.#target = proxyTarget(info.sandboxUrl, info.sandboxId, info.routingHint);
    this.#owned = owned;
    this.#bindOutcome = bindOutcome;
  }

  /**
   * What {@link SandboxClient.getOrCreate} did to hand out this handle (`"created"`,
   * `"attached"` or `"resumed"`); `null` for a handle from elsewhere.
   */
  get bindOutcome(): BindOutcome | null {
    return this.#bindOutcome;
  }

  /** The server-assigned id (even when connected by name). */
  get sandboxId(): string {
    return this.#info.sandboxId;
  }

  /** The sandbox's name, or `null` for an ephemeral sandbox (as of the last {@link info}). */
  get name(): string | null {
    return this.#info.name;
  }

  toString(): string {
    return `Sandbox(sandboxId=${this.sandboxId}, name=${this.name})`;
  }

  /** @internal */
  _transport(): HttpTransport {
    return this.#client._transport();
  }

  /** @internal */
  _target(): ProxyTarget {
    return this.#target;
  }

  /** @internal */
  _sandboxUrl(): string {
    return this.#info.sandboxUrl ?? "";
  }

  /** Fetch the sandbox's current description from the control plane. */
  async info(): Promise<SandboxInfo> {
    const info = await this.#client.get(this.sandboxId);
    this.#info = info;
    if (info.sandboxUrl) this.#target = proxyTarget(info.sandboxUrl, info.sandboxId, info.routingHint);
    return info;
  }

  /** Mount a volume into this sandbox, live (see `SandboxClient.attachFileSystem`). */
  async attachFileSystem(mount: FileSystemMount): Promise<SandboxInfo> {
    return this.#remember(await this.#client.attachFileSystem(this.sandboxId, mount));
  }

  /** Unmount the volume at `mountPath` (see `SandboxClient.detachFileSystem`). */
  async detachFileSystem(mountPath: string): Promise<SandboxInfo> {
    return this.#remember(await this.#client.detachFileSystem(this.sandboxId, mountPath));
  }

  /** The volumes mounted in this sandbox now. */
  async fileSystems(): Promise<FileSystemMount[]> {
    return (await this.info()).fileSystems;
  }

  /** Resize this sandbox live (see `SandboxClient.update`). */
  async update(options: UpdateResourcesOptions): Promise<SandboxInfo> {
    return this.#remember(await this.#client.update(this.sandboxId, options));
  }

  /** Wait for resize `generation` of this sandbox (see `SandboxClient.waitForResourceResize`). */
  async waitForResourceResize(generation: number, options: WaitForResourceResizeOptions = {}): Promise<SandboxInfo> {
    return this.#remember(await this.#client.waitForResourceResize(this.sandboxId, generation, options));
  }

  #remember(info: SandboxInfo): SandboxInfo {
    this.#info = info;
    if (info.sandboxUrl) this.#target = proxyTarget(info.sandboxUrl, info.sandboxId, info.routingHint);
    return info;
  }

  /** Delete the sandbox (same as `client.delete(sandbox.sandboxId)`). */
  /** A URL, valid for an hour, of a noVNC page showing this sandbox's desktop (see `SandboxClient.desktopUrl`). */
  desktopUrl(options: { port?: number } = {}): Promise<string> {
    return this.#client.desktopUrl(this.sandboxId, options);
  }

  /** What this sandbox uses now against its limits (it must be running). */
  metrics(): Promise<SandboxMetrics> {
    return this.#client.metrics(this.sandboxId);
  }

  /**
   * Copy this running sandbox `times` ways (1 to 16) and return handles to the copies: each its
   * own sandbox (id, address, files) that starts with this one's processes, memory and files. All
   * or nothing (see `SandboxClient.copyAndConnect`).
   */
  async copy(options: { times?: number } = {}): Promise<Sandbox[]> {
    return this.#client.copyAndConnect(this.sandboxId, options);
  }

  async terminate(): Promise<void> {
    await this.#client.delete(this.sandboxId);
    this.#owned = false;
  }

  /** Deletes the sandbox when this handle came from `createAndConnect()` (a sandbox already gone is fine). */
  async [Symbol.asyncDispose](): Promise<void> {
    if (!this.#owned) return;
    try {
      await this.terminate();
    } catch (error) {
      if (!(error instanceof SandboxNotFoundError)) throw error;
    }
  }

  // -- requests --------------------------------------------------------------------------------

  async #request(spec: Omit<RequestSpec, "url"> & { path: string }): Promise<HttpResponse> {
    const target = this.#target;
    const { path, ...rest } = spec;
    const response = await this._transport().send({
      ...rest,
      url: target.baseUrl + path,
      headers: { ...target.headers, ...(spec.headers ?? {}) },
    });
    checkProxy(response, target);
    return response;
  }

  // -- commands --------------------------------------------------------------------------------

  /**
   * Run a command to completion and return its output and exit code.
   * `run("python", ["-c", "print(1)"], { timeoutSecs: 30 })` and
   * `run("python", { args: ["-c", "print(1)"], timeoutSecs: 30 })` are the same.
   *
   * `exitCode` is negative (`-signal`) when the command was killed by a signal, e.g. on
   * `timeoutSecs` expiry (the sandbox kills the command then). A silent command may run as long
   * as it likes: the agent keeps the stream alive. If the agent stops answering (the sandbox is
   * frozen, the host is gone), {@link SandboxTimeoutError} is thrown after the client's
   * `streamIdleTimeoutSecs` (default 120) without data.
   */
  async run(command: string, args?: string[] | RunOptions, options?: RunOptions): Promise<CommandResult> {
    const body = runBody(command, withArgs(args, options));
    const response = await this.#request({
      method: "POST",
      path: "/api/v1/processes/run",
      json: body,
      headers: { Accept: "text/event-stream" },
      stream: true,
      events: true,
    });
    const contentType = response.headers.get("content-type") ?? "";
    if (!contentType.toLowerCase().startsWith("text/event-stream")) {
      await response.stream?.cancel().catch(() => undefined);
      throw new SandboxError(`expected an event stream from /api/v1/processes/run, got content-type ${JSON.stringify(contentType)}`);
    }
    return collectRun(readChunks(response));
  }

  // -- processes -------------------------------------------------------------------------------

  /**
   * Start a background process. Its stdin is a pipe by default: write to it with
   * {@link writeStdin} and end it with {@link closeStdin} (a program reading stdin waits until
   * then); pass `stdinMode: "closed"` for a stdin at end-of-file from the start.
   *
   * `name`, `restart` or `healthCheck` make it a managed process, watched by the sandbox's
   * supervisor (see `ProcessInfo.managed`): `startProcess("server", [], { name: "web", restart:
   * { policy: "always" }, healthCheck: { type: "http", port: 8000 } })`. Every process method
   * takes its name instead of a pid; {@link killProcess} stops its supervision too.
   */
  async startProcess(
    command: string,
    args?: string[] | StartProcessOptions,
    options?: StartProcessOptions,
  ): Promise<ProcessInfo> {
    const body = startProcessBody(command, withArgs(args, options));
    const response = await this.#request({ method: "POST", path: "/api/v1/processes", json: body });
    return processInfoFromWire(responseJson(response, "process"));
  }

  /**
   * Restart a managed process, by pid or name, at once (any back-off is skipped): its current
   * run is stopped and a new one started. Resolves to the new run (a new pid).
   */
  async restartProcess(process: number | string): Promise<ProcessInfo> {
    const response = await this.#request({ method: "POST", path: `/api/v1/processes/${pidSegment(process)}/restart` });
    return processInfoFromWire(responseJson(response, "process"));
  }

  /** Every process started in the sandbox. */
  async listProcesses(): Promise<ProcessInfo[]> {
    const response = await this.#request({ method: "GET", path: "/api/v1/processes" });
    return listFromWire(responseJson(response, "process list"), "processes", processInfoFromWire, "process list");
  }

  /** Describe one process, by pid or managed-process name (as every process method here). */
  async getProcess(pid: number | string): Promise<ProcessInfo> {
    const response = await this.#request({ method: "GET", path: `/api/v1/processes/${pidSegment(pid)}` });
    return processInfoFromWire(responseJson(response, "process"));
  }

  /** Kill a process (SIGKILL to its process group); a managed one is not restarted. */
  async killProcess(pid: number | string): Promise<void> {
    await this.#request({ method: "DELETE", path: `/api/v1/processes/${pidSegment(pid)}` });
  }

  /**
   * Kill every process in the sandbox except the agent and the image's services (a desktop's
   * display, say); resolves to how many were killed. The way back from a fork bomb or a runaway
   * process tree.
   */
  async stopAllProcesses(): Promise<number> {
    const response = await this.#request({ method: "DELETE", path: "/api/v1/processes" });
    const data = responseJson(response, "stop-all answer") as { killed?: unknown } | null;
    if (!data || typeof data.killed !== "number") {
      throw new SandboxError("the agent answered stop-all without a count");
    }
    return data.killed;
  }

  /** Send a signal (a number, or a name such as `"SIGTERM"`) to a process. */
  async sendSignal(pid: number | string, signal: number | NodeJS.Signals): Promise<void> {
    const number = signalNumber(signal);
    await this.#request({ method: "POST", path: `/api/v1/processes/${pidSegment(pid)}/signal`, json: { signal: number } });
  }

  /** Write raw bytes (or text, as UTF-8) to a process's stdin (a pipe unless it was started with `stdinMode: "closed"`). */
  async writeStdin(pid: number | string, data: Uint8Array | string): Promise<void> {
    let bytes: Uint8Array;
    if (typeof data === "string") bytes = Buffer.from(data, "utf8");
    else if (data instanceof Uint8Array) bytes = data;
    else throw new TypeError(`writeStdin takes a Uint8Array or a string, got ${typeof data}`);
    await this.#request({ method: "POST", path: `/api/v1/processes/${pidSegment(pid)}/stdin`, body: bytes });
  }

  /** Close a process's stdin (it then reads end-of-file). */
  async closeStdin(pid: number | string): Promise<void> {
    await this.#request({ method: "POST", path: `/api/v1/processes/${pidSegment(pid)}/stdin/close` });
  }

  async #output(pid: number | string, stream: string): Promise<OutputResponse> {
    const response = await this.#request({ method: "GET", path: `/api/v1/processes/${pidSegment(pid)}/${stream}` });
    return outputResponseFromWire(responseJson(response, `process ${stream}`), `process ${stream}`);
  }

  /** All stdout lines captured so far. */
  getStdout(pid: number | string): Promise<OutputResponse> {
    return this.#output(pid, "stdout");
  }

  /** All stderr lines captured so far. */
  getStderr(pid: number | string): Promise<OutputResponse> {
    return this.#output(pid, "stderr");
  }

  /** All stdout and stderr lines captured so far, interleaved. */
  getOutput(pid: number | string): Promise<OutputResponse> {
    return this.#output(pid, "output");
  }

  /**
   * Output lines (stdout and stderr): past ones first, then live ones until the process exits.
   *
   * A connection that breaks meanwhile (the sandbox suspended and resumed, a proxy that drops
   * it) is opened again, and the lines come on where they stopped: each once, in order. After
   * five connections in a row that broke without a new line the last `SandboxConnectionError`
   * is thrown; a process that is no longer known or a sandbox that is gone throw their error at
   * once (`RemoteAPIError` 404).
   *
   * A follower that falls behind by more than the process's output buffer (its last 16 MiB) misses
   * the lines the buffer let go: the follow then emits a process warning (`process.emitWarning`,
   * code `ALCOVE_OUTPUT_DROPPED`) saying how many, and goes on with the lines still there.
   * {@link followOutputBatches} gives the count with each batch instead.
   */
  followOutput(pid: number | string): AsyncIterable<OutputEvent> {
    return this.#follow(pid, "output");
  }

  /** Stdout lines until the process exits (across broken connections, as {@link followOutput}). */
  followStdout(pid: number | string): AsyncIterable<OutputEvent> {
    return this.#follow(pid, "stdout");
  }

  /** Stderr lines until the process exits (across broken connections, as {@link followOutput}). */
  followStderr(pid: number | string): AsyncIterable<OutputEvent> {
    return this.#follow(pid, "stderr");
  }

  /**
   * Output (stdout and stderr) a read at a time, as `followOutput` gives it line by line: each
   * {@link OutputBatch} holds the lines of one read of one stream, with its `stream` and
   * `timestamp`. No object per line, for followers that take many. A batch's `dropped` counts the
   * lines the process's output buffer let go before it, which this follower never saw (no
   * warning, unlike {@link followOutput}).
   */
  followOutputBatches(pid: number | string): AsyncIterable<OutputBatch> {
    return followOutputBatches(this.#openFollow(pid, "output"), null);
  }

  #follow(pid: number | string, stream: "output" | "stdout" | "stderr"): AsyncIterable<OutputEvent> {
    // Not an async generator over events: that would cost more per line than decoding it.
    return followOutputEvents(this.#openFollow(pid, stream), FOLLOW_STREAMS[stream], pid);
  }

  /** Opens the follow (again, when its connection broke): made (and the pid checked) at the first `next()`. */
  #openFollow(pid: number | string, stream: "output" | "stdout" | "stderr"): OpenFollow {
    return async (lastEventId) => {
      const path = `/api/v1/processes/${pidSegment(pid)}/${stream}/follow`;
      // `batch`: Alcove's own, the lines of one read as one `output_batch` event (a server that does
      // not know it sends `output` events; the decoders read both).
      const query = { batch: "true" };
      const headers: Record<string, string> = { Accept: "text/event-stream" };
      // Opened again: the agent goes on after the last batch taken.
      if (lastEventId !== null) headers["Last-Event-ID"] = lastEventId;
      return readChunks(await this.#request({ method: "GET", path, query, headers, stream: true, events: true }));
    };
  }

  // -- logs ------------------------------------------------------------------------------------

  /** One page of this sandbox's persisted logs (see `SandboxClient.getLogs`). */
  getLogs(options: GetLogsOptions = {}): Promise<SandboxLogsResponse> {
    return this.#client.getLogs(this.sandboxId, options);
  }

  /** Every record of this sandbox's persisted logs that passes the filters, page after page (see `SandboxClient.iterLogs`). */
  iterLogs(options: Pick<GetLogsOptions, "levels" | "processIds" | "body"> = {}): AsyncGenerator<SandboxLogSignal, void, undefined> {
    return this.#client.iterLogs(this.sandboxId, options);
  }

  /** The processes that have records in this sandbox's persisted logs. */
  listLogProcesses(): Promise<SandboxProcessLogFiltersResponse> {
    return this.#client.listLogProcesses(this.sandboxId);
  }

  // -- files -----------------------------------------------------------------------------------

  /**
   * Write a file (parents are created, an existing file is replaced whole: readers see the old
   * content or the new, and an upload that fails leaves the old file as it was). `data` is bytes, text
   * (written as UTF-8), a `ReadableStream` or an (async) iterable of byte chunks, such as a
   * `fs.createReadStream()`; streams are sent as they are read, never held whole.
   */
  async writeFile(path: string, data: FileData): Promise<void> {
    const query = pathQuery(path);
    const body = uploadBody(data);
    await this.#request({ method: "PUT", path: "/api/v1/files", query, body, replayable: body instanceof Uint8Array });
  }

  /** Read a whole file into memory (see {@link readFileStream} for big files). */
  async readFile(path: string): Promise<Buffer> {
    const response = await this.#request({ method: "GET", path: "/api/v1/files", query: pathQuery(path) });
    return Buffer.from(response.body.buffer, response.body.byteOffset, response.body.byteLength);
  }

  /** A file's content in chunks, without holding it in memory. */
  async *readFileStream(path: string): AsyncGenerator<Uint8Array, void, undefined> {
    const query = pathQuery(path);
    const response = await this.#request({ method: "GET", path: "/api/v1/files", query, stream: true });
    yield* readChunks(response);
  }

  /** Stream a sandbox file to `localPath`; returns the number of bytes written. */
  async downloadFile(path: string, localPath: string): Promise<number> {
    const query = pathQuery(path);
    const response = await this.#request({ method: "GET", path: "/api/v1/files", query, stream: true });
    const out = createWriteStream(localPath);
    let written = 0;
    try {
      for await (const chunk of readChunks(response)) {
        written += chunk.length;
        if (!out.write(chunk)) await once(out, "drain");
      }
    } finally {
      out.end();
      await once(out, "close").catch(() => undefined);
    }
    return written;
  }

  /** The entries of a directory. */
  async listDirectory(path: string): Promise<DirectoryEntry[]> {
    const response = await this.#request({ method: "GET", path: "/api/v1/files/list", query: pathQuery(path) });
    return listFromWire(responseJson(response, "directory listing"), "entries", directoryEntryFromWire, "directory listing");
  }

  /** Delete a file. */
  async deleteFile(path: string): Promise<void> {
    await this.#request({ method: "DELETE", path: "/api/v1/files", query: pathQuery(path) });
  }

  // -- terminals and tunnels -------------------------------------------------------------------

  /**
   * Start a command (default `bash`) on a new terminal of `cols` x `rows` (default 80 x 24) and
   * return its session, not connected yet: call `connect()` to drive it from here, or hand its
   * `websocketUrl` to another client.
   */
  async createPty(options: CreatePtyOptions = {}): Promise<PtySession> {
    const body = ptyBody(options);
    const response = await this.#request({ method: "POST", path: "/api/v1/pty", json: body });
    const info = ptySessionInfoFromWire(responseJson(response, "PTY session"));
    return new PtySession(this, info.sessionId, info.token);
  }

  /** Reattach to an existing PTY session: returns it connected (READY sent). */
  async connectPty(sessionId: string, token: string): Promise<PtySession> {
    return new PtySession(this, sessionId, token).connect();
  }

  /**
   * Listen on `localHost:localPort` (default `127.0.0.1`, a free port) and relay each connection
   * to `remotePort` in the sandbox. Close the tunnel to stop listening.
   */
  async createTunnel(remotePort: number, options: CreateTunnelOptions = {}): Promise<Tunnel> {
    const config = this._transport().config;
    return Tunnel.open(
      {
        url: tunnelWebsocketUrl(this._sandboxUrl(), this.sandboxId, remotePort),
        headers: websocketHeaders(config, this.#target),
        remotePort,
        connectTimeoutMs: connectTimeoutMs(config),
        sandboxId: this.sandboxId,
      },
      options,
    );
  }

  /**
   * Connect to the VNC server on `port` (default 5901) in the sandbox and return a
   * {@link Desktop}: screenshots, mouse and keyboard.
   *
   * It first waits, up to `connectTimeoutSecs` (default 10), until something accepts connections on
   * the port (probing it with a short command every 250 ms), then opens the sandbox's TCP-tunnel
   * WebSocket to it and runs the RFB handshake (security None, or VNC authentication with
   * `password`; `shared` keeps other viewers connected, default true). Nothing listens locally.
   * Close the desktop when done (or use `await using`).
   */
  async connectDesktop(options: ConnectDesktopOptions = {}): Promise<Desktop> {
    const config = this._transport().config;
    return connectDesktop(
      {
        sandboxId: this.sandboxId,
        headers: websocketHeaders(config, this.#target),
        tunnelUrl: (port) => tunnelWebsocketUrl(this._sandboxUrl(), this.sandboxId, port),
        probe: async (port) => {
          const result = await this.run("/bin/bash", ["-c", `exec 3<>/dev/tcp/127.0.0.1/${port}`], {
            timeoutSecs: PROBE_TIMEOUT_SECS,
          });
          return result.exitCode === 0;
        },
      },
      options,
    );
  }
}
