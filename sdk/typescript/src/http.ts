/**
 * HTTP for the Alcove SDK: URLs, proxy addressing, `fetch` with retries, and the mapping of error
 * answers to {@link SandboxException}s (docs/protocol/errors.md).
 */

import type { ClientConfig } from "./config.js";
import {
  AuthenticationError,
  ImageBuildError,
  ImageInUseError,
  ImageNotFoundError,
  PoolAtCapacityError,
  PoolInUseError,
  PoolNotFoundError,
  RegistryAuthenticationError,
  RegistryError,
  RemoteAPIError,
  SandboxConnectionError,
  SandboxError,
  SandboxException,
  SandboxNameConflictError,
  SandboxNotFoundError,
  SandboxNotRoutableError,
  SandboxTimeoutError,
  SnapshotNotFoundError,
} from "./errors.js";
import { VERSION } from "./version.js";

export const USER_AGENT = `alcove-typescript-sdk/${VERSION}`;

export const GET_ATTEMPTS = 3;
export const RETRYABLE_GET_STATUSES: ReadonlySet<number> = new Set([429, 502, 503, 504]);
/**
 * Codes of a proxy's 503 that means "the request did not reach the sandbox": any request whose
 * body can be sent again is replayed. (A 502 `SANDBOX_UNREACHABLE` may have reached it: only GETs
 * retry that.)
 */
export const NOT_READY_CODES: ReadonlySet<string> = new Set(["SANDBOX_NOT_READY", "SANDBOX_UNREACHABLE"]);
export const NOT_READY_ATTEMPTS = 12;
/** Codes of an answer that means "refused before anything was done": any request may be sent again. */
export const BUSY_CODES: ReadonlySet<string> = new Set(["TOO_MANY_REQUESTS", "SERVER_BUSY"]);
export const BUSY_ATTEMPTS = 10;
/** Longest `Retry-After` honoured before a retry, in ms (a longer one is capped). */
export const MAX_RETRY_AFTER_MS = 4000;

/** Waits of the SDK go through here, so tests can skip them. */
export const clock = {
  sleep(ms: number): Promise<void> {
    return new Promise((resolve) => setTimeout(resolve, ms));
  },
};

// ---------------------------------------------------------------------------------------------
// URLs

/** A path segment, percent-encoded. */
export function segment(value: string | number): string {
  return encodeURIComponent(String(value));
}

export function namespaceUrl(config: ClientConfig): string {
  return `${config.apiUrl}/v1/namespaces/${segment(config.namespace)}`;
}

export function sandboxesUrl(config: ClientConfig, identifier?: string, suffix = ""): string {
  let url = `${namespaceUrl(config)}/sandboxes`;
  if (identifier !== undefined) url += `/${segment(identifier)}`;
  return url + suffix;
}

export function archivedUrl(config: ClientConfig, sandboxId?: string): string {
  let url = `${namespaceUrl(config)}/archived-sandboxes`;
  if (sandboxId !== undefined) url += `/${segment(sandboxId)}`;
  return url;
}

export function snapshotsUrl(config: ClientConfig, snapshotId?: string): string {
  let url = `${namespaceUrl(config)}/snapshots`;
  if (snapshotId !== undefined) url += `/${segment(snapshotId)}`;
  return url;
}

export function poolsUrl(config: ClientConfig, poolId?: string, suffix = ""): string {
  let url = `${namespaceUrl(config)}/sandbox-pools`;
  if (poolId !== undefined) url += `/${segment(poolId)}`;
  return url + suffix;
}

/** `{apiUrl}/nodes` or `{apiUrl}/nodes/{name}` + `suffix`: a route of the server itself, in no namespace. */
export function nodesUrl(config: ClientConfig, name?: string, suffix = ""): string {
  let url = `${config.apiUrl}/nodes`;
  if (name !== undefined) url += `/${segment(name)}`;
  return url + suffix;
}

/**
 * An image reference or id checked for use in a URL path: not empty, without whitespace or `.` /
 * `..` segments (which a URL would resolve to another route).
 */
export function imageReference(value: unknown, what = "ref"): string {
  if (typeof value !== "string" || !value.trim()) {
    throw new TypeError(`${what} must be a non-empty image reference or id, got ${JSON.stringify(value)}`);
  }
  if (/\s/.test(value)) throw new TypeError(`${what} must not contain whitespace, got ${JSON.stringify(value)}`);
  if (value.split("/").some((part) => part === "." || part === "..")) {
    throw new TypeError(`${what} must not contain '.' or '..' path segments, got ${JSON.stringify(value)}`);
  }
  return value;
}

/** A reference as a URL path: percent-encoded but for `/`, `:`, `@` and the unreserved characters. */
function referencePath(reference: string): string {
  return encodeURIComponent(reference)
    .replace(/[!'()*]/g, (ch) => `%${ch.charCodeAt(0).toString(16).toUpperCase()}`)
    .replace(/%2F/g, "/")
    .replace(/%3A/g, ":")
    .replace(/%40/g, "@");
}

/** `{B}/images`, `{B}/images/{ref}` (the reference percent-encoded but for `/ : @`) or `{B}/images` + `suffix`. */
export function imagesUrl(config: ClientConfig, reference?: string, suffix = ""): string {
  let url = `${namespaceUrl(config)}/images`;
  if (reference !== undefined) url += `/${referencePath(imageReference(reference))}`;
  return url + suffix;
}

/** Where and how to reach one sandbox's agent API (`/api/v1/...`) through the proxy. */
export interface ProxyTarget {
  readonly sandboxId: string;
  /** Prefix of every agent path: `baseUrl + "/api/v1/processes"`. */
  readonly baseUrl: string;
  /** Routing headers sent with every proxied request. */
  readonly headers: Readonly<Record<string, string>>;
}

/** Parse a `sandbox_url`, or throw {@link SandboxNotRoutableError}. */
export function parseSandboxUrl(sandboxUrl: string, sandboxId: string): URL {
  let url: URL | undefined;
  try {
    url = new URL((sandboxUrl ?? "").trim());
  } catch {
    url = undefined;
  }
  if (!url || !["http:", "https:", "ws:", "wss:"].includes(url.protocol) || !url.host) {
    throw new SandboxNotRoutableError(`sandbox ${sandboxId}: unusable sandbox_url ${JSON.stringify(sandboxUrl)}`);
  }
  return url;
}

/**
 * Address a sandbox through `sandboxUrl` (docs/protocol/proxy.md).
 *
 * The official SDKs route a `localhost` proxy by `Host: <sandbox_id>.local` (which `fetch`
 * cannot send) and any other by `X-Tensorlake-Sandbox-Id`. This SDK always uses the Alcove
 * proxy's self-routing path instead, `{sandbox_url}/sandboxes/{sandbox_id}/api/v1/...` (a path
 * prefix of `sandbox_url` is kept), so a request names its sandbox by its URL alone, the same way
 * the PTY and tunnel WebSocket URLs do.
 */
export function proxyTarget(sandboxUrl: string, sandboxId: string, routingHint?: string | null): ProxyTarget {
  if (typeof sandboxId !== "string" || !sandboxId) {
    throw new TypeError(`sandboxId must be a non-empty string, got ${JSON.stringify(sandboxId)}`);
  }
  const url = parseSandboxUrl(sandboxUrl, sandboxId);
  const scheme = url.protocol === "wss:" || url.protocol === "https:" ? "https:" : "http:";
  const path = url.pathname.replace(/\/+$/, "");
  const baseUrl = `${scheme}//${url.host}${path}/sandboxes/${segment(sandboxId)}`;
  const headers: Record<string, string> = {};
  if (routingHint) headers["X-Tensorlake-Route-Hint"] = routingHint;
  return Object.freeze({ sandboxId, baseUrl, headers: Object.freeze(headers) });
}

/**
 * Query string of a request: form-urlencoded (a space travels as `+`, as the agent's file routes
 * expect). Pairs repeat a key (`[["level", "3"], ["level", "5"]]`).
 */
export function withQuery(url: string, query?: Record<string, string> | [string, string][]): string {
  if (!query || Object.keys(query).length === 0) return url;
  return `${url}${url.includes("?") ? "&" : "?"}${new URLSearchParams(query).toString()}`;
}

// ---------------------------------------------------------------------------------------------
// Errors

/** What an error answer says: the server's message, code and request id. */
export interface ErrorBody {
  message: string;
  code: string | undefined;
  requestId: string | undefined;
}

function jsonOrUndefined(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}

function describe(value: unknown): string {
  return typeof value === "string" ? value : JSON.stringify(value);
}

/** Read an error body: `{"message","code"}` (control plane), `{"error","code"}` (agent) or text. */
export function parseErrorBody(status: number, text: string): ErrorBody {
  const body = jsonOrUndefined(text);
  if (typeof body !== "object" || body === null || Array.isArray(body)) {
    return { message: text.trim() || `HTTP ${status}`, code: undefined, requestId: undefined };
  }
  const data = body as Record<string, unknown>;
  const code = typeof data.code === "string" ? data.code : undefined;
  const requestId = typeof data.request_id === "string" ? data.request_id : undefined;
  if (data.sandbox_id && (data.status === "failed" || data.status === "terminated")) {
    const reason = data.reason || data.termination_reason;
    let message = `Sandbox ${String(data.sandbox_id)} ${data.status}`;
    if (reason) message += ` (${String(reason)})`;
    if (data.error_details !== undefined && data.error_details !== null) message += `: ${describe(data.error_details)}`;
    return { message, code, requestId };
  }
  for (const key of ["message", "error"]) {
    const value = data[key];
    if (typeof value === "string" && value) return { message: value, code, requestId };
    if (typeof value === "object" && value !== null && typeof (value as { message?: unknown }).message === "string") {
      return { message: (value as { message: string }).message, code, requestId };
    }
  }
  return { message: text.trim(), code, requestId };
}

/** Which call an error answer belongs to (it picks the error class). */
export interface ErrorScope {
  /** The sandbox of a sandbox-scoped lifecycle call: its 404 becomes {@link SandboxNotFoundError}. */
  sandbox?: string;
  /** A snapshot call: its 404 becomes {@link SnapshotNotFoundError}. */
  snapshot?: boolean;
  /** Create and claims: their 409 becomes {@link SandboxNameConflictError} (unless its code is about something else). */
  create?: boolean;
  /** An image call, and pool creation: its 404 becomes {@link ImageNotFoundError}. */
  image?: boolean;
  /**
   * A call on one pool: its 404 becomes {@link PoolNotFoundError}, or {@link ImageNotFoundError}
   * when the server names the image it lacks.
   */
  pool?: boolean;
}

/** Codes only the image routes answer, whatever the status (docs/images.md). */
export const IMAGE_ERRORS: Readonly<Record<string, typeof RemoteAPIError>> = Object.freeze({
  IMAGE_IN_USE: ImageInUseError,
  BUILD_FAILED: ImageBuildError,
  REGISTRY_ERROR: RegistryError,
  REGISTRY_UNAUTHORIZED: RegistryAuthenticationError,
});

/**
 * 403 codes of a sandbox's agent that refuse what a call asks of the sandbox's files or users,
 * not the caller's credentials: plain RemoteAPIError, not AuthenticationError.
 */
export const SANDBOX_REFUSALS: ReadonlySet<string> = new Set(["PATH_TRAVERSAL", "PERMISSION_DENIED"]);

/** Codes only the pool routes answer, whatever the status (the pool routes of docs/protocol/openapi.json). */
export const POOL_ERRORS: Readonly<Record<string, typeof RemoteAPIError>> = Object.freeze({
  POOL_IN_USE: PoolInUseError,
  POOL_AT_CAPACITY: PoolAtCapacityError,
});

/** Map a non-2xx answer to the right error. */
export function errorFromResponse(status: number, text: string, scope: ErrorScope = {}): SandboxException {
  return apiError(status, parseErrorBody(status, text), scope);
}

/**
 * Codes of a 409 to a create or claim that is not about the name (a volume held elsewhere, a
 * snapshot's source busy): any other 409 there, a server's own code included, is a held name.
 */
const OTHER_CONFLICTS: ReadonlySet<string> = new Set(["INVALID_STATE", "FILE_SYSTEM_IN_USE", "OPERATION_REFUSED"]);

/**
 * The error of an answer with this status and error body (see {@link errorFromResponse}); also
 * used for the `error` event of an image event stream.
 */
export function apiError(status: number, body: ErrorBody, scope: ErrorScope = {}): SandboxException {
  if (status === 404 && scope.sandbox !== undefined) {
    return new SandboxNotFoundError(scope.sandbox, body.message, body.code);
  }
  let Cls: typeof RemoteAPIError = RemoteAPIError;
  if (body.code !== undefined && Object.hasOwn(IMAGE_ERRORS, body.code)) Cls = IMAGE_ERRORS[body.code]!;
  else if (body.code !== undefined && Object.hasOwn(POOL_ERRORS, body.code)) Cls = POOL_ERRORS[body.code]!;
  // An update naming an unknown image is a 404 too; the server's message names the image.
  else if (status === 404 && scope.pool && body.message.startsWith("image ")) Cls = ImageNotFoundError;
  // A claim naming an unknown volume is a 404 too: a plain RemoteAPIError.
  else if (status === 404 && scope.pool && !body.message.startsWith("file system ")) Cls = PoolNotFoundError;
  else if (status === 404 && scope.snapshot) Cls = SnapshotNotFoundError;
  else if (status === 404 && scope.image) Cls = ImageNotFoundError;
  else if (status === 409 && scope.create && !OTHER_CONFLICTS.has(body.code ?? "")) Cls = SandboxNameConflictError;
  else if (status === 401 || (status === 403 && !SANDBOX_REFUSALS.has(body.code ?? ""))) Cls = AuthenticationError;
  return new Cls(status, body.message, body.code, body.requestId);
}

/** Map a non-2xx proxy answer: the proxy's `SANDBOX_NOT_FOUND` becomes {@link SandboxNotFoundError}. */
export function proxyError(status: number, text: string, sandboxId: string): SandboxException {
  const error = errorFromResponse(status, text);
  if (error instanceof RemoteAPIError && error.code === "SANDBOX_NOT_FOUND") {
    return new SandboxNotFoundError(sandboxId, error.serverMessage, error.code);
  }
  return error;
}

// ---------------------------------------------------------------------------------------------
// Requests

/** A request body that is streamed, never held whole in memory. */
export type StreamBody = ReadableStream<Uint8Array>;

/** One HTTP request to send. */
export interface RequestSpec {
  method: string;
  url: string;
  headers?: Record<string, string>;
  /** The query: a record, or pairs for a key that repeats. */
  query?: Record<string, string> | [string, string][];
  /** A JSON body (sent with `Content-Type: application/json`). */
  json?: unknown;
  /** A raw body (sent without Content-Type). */
  body?: Uint8Array | StreamBody;
  /**
   * Return the 2xx response with its body unread; each read of the body then waits at most
   * `timeoutSecs` (a transfer may take longer as long as bytes keep moving).
   */
  stream?: boolean;
  /**
   * An event stream (`run`, `follow*`): the agent sends keep-alives, so the wait for its headers
   * and every silence after are bounded by `streamIdleTimeoutSecs` instead of `timeoutSecs`.
   */
  events?: boolean;
  /** Whether the request may be sent again when the proxy says the sandbox is not ready (default true). */
  replayable?: boolean;
}

/** An answer: either read whole (`body`) or, for a 2xx streamed request, unread (`stream`). */
export interface HttpResponse {
  status: number;
  ok: boolean;
  headers: Headers;
  url: string;
  method: string;
  body: Uint8Array;
  stream: ReadableStream<Uint8Array> | null;
  /** Longest wait for each read of `stream`, in ms (`undefined` = none), and the option behind it. */
  idle?: { ms: number | undefined; option: string };
}

export function responseText(response: HttpResponse): string {
  return new TextDecoder().decode(response.body);
}

/** The JSON body of a response, or {@link SandboxError} naming `what`. */
export function responseJson(response: HttpResponse, what: string): unknown {
  try {
    return JSON.parse(responseText(response));
  } catch {
    throw new SandboxError(`decoding ${what}: the server answered ${response.status} without valid JSON`);
  }
}

/** A `fetch`-compatible function (the global one by default). */
export type FetchLike = (input: string, init?: RequestInit) => Promise<Response>;

/**
 * A 429 `TOO_MANY_REQUESTS` or 503 `SERVER_BUSY`: a burst past the server's per-client or
 * connection limit, refused before the request was read (a pool's 429 `POOL_AT_CAPACITY` is an
 * answer, not this).
 */
function isRefusedUnread(response: HttpResponse): boolean {
  return answered(response, [429, 503], BUSY_CODES);
}

function isNotReady(response: HttpResponse): boolean {
  return answered(response, [503], NOT_READY_CODES);
}

/** Whether `response` has one of `statuses` and its error body one of `codes` (read only for those statuses). */
function answered(response: HttpResponse, statuses: readonly number[], codes: ReadonlySet<string>): boolean {
  if (!statuses.includes(response.status)) return false;
  const code = parseErrorBody(response.status, responseText(response)).code;
  return code !== undefined && codes.has(code);
}

/** The answer's `Retry-After` in ms (whole seconds; 0 when absent or a date), capped at {@link MAX_RETRY_AFTER_MS}. */
export function retryAfterMs(response: Pick<HttpResponse, "headers">): number {
  const value = (response.headers.get("retry-after") ?? "").trim();
  return /^\d+$/.test(value) ? Math.min(Number(value) * 1000, MAX_RETRY_AFTER_MS) : 0;
}

function causeText(error: unknown): string {
  if (!(error instanceof Error)) return String(error);
  const cause = (error as { cause?: unknown }).cause;
  if (cause instanceof Error && cause.message) return `${error.message}: ${cause.message}`;
  return error.message || error.name;
}

/** Sends requests for one client, with its configuration, headers and retries. */
export class HttpTransport {
  readonly config: ClientConfig;
  private readonly fetchImpl: FetchLike;

  constructor(config: ClientConfig, fetchImpl?: FetchLike) {
    this.config = config;
    this.fetchImpl = fetchImpl ?? ((input, init) => fetch(input, init));
  }

  /** `User-Agent` and, when a key is set, `Authorization: Bearer …`. */
  baseHeaders(): Record<string, string> {
    const headers: Record<string, string> = { "User-Agent": USER_AGENT };
    if (this.config.apiKey) headers.Authorization = `Bearer ${this.config.apiKey}`;
    return headers;
  }

  /**
   * Send with the retries of docs/protocol/errors.md (Retrying): any request but a streamed
   * upload is sent again, up to ten times, when the server refused it before doing anything
   * (429 `TOO_MANY_REQUESTS`, 503 `SERVER_BUSY`: a burst past its limits); GETs are retried on
   * connection failures and on 429/502/503/504 (`STORE_UNAVAILABLE`, …); any replayable
   * request is replayed while the proxy answers 503 `SANDBOX_NOT_READY` /
   * `SANDBOX_UNREACHABLE` (a 502 may have reached the sandbox: a run is not sent twice). A retry waits at least what the answer's `Retry-After` asks (at most
   * 4 s). A request that is not retried returns its answer at once, e.g. a POST answered 503
   * `NODE_DRAINING` or `STORE_UNAVAILABLE`.
   */
  async send(spec: RequestSpec): Promise<HttpResponse> {
    const replayable = spec.replayable ?? true;
    for (let attempt = 1; ; attempt++) {
      let response: HttpResponse;
      try {
        response = await this.sendOnce(spec);
      } catch (error) {
        if (error instanceof SandboxConnectionError && spec.method === "GET" && attempt < GET_ATTEMPTS) {
          await clock.sleep(200 * 2 ** (attempt - 1));
          continue;
        }
        throw error;
      }
      const resendable = spec.body === undefined || spec.body instanceof Uint8Array; // a stream is read once
      if (resendable && attempt < BUSY_ATTEMPTS && isRefusedUnread(response)) {
        await clock.sleep(Math.max(Math.min(200 * 2 ** (attempt - 1), 2000), retryAfterMs(response)));
        continue;
      }
      if (replayable && attempt < NOT_READY_ATTEMPTS && isNotReady(response)) {
        await clock.sleep(Math.max(Math.min(250 * 2 ** (attempt - 1), 4000), retryAfterMs(response)));
        continue;
      }
      if (spec.method === "GET" && attempt < GET_ATTEMPTS && RETRYABLE_GET_STATUSES.has(response.status)) {
        await clock.sleep(Math.max(200 * 2 ** (attempt - 1), retryAfterMs(response)));
        continue;
      }
      return response;
    }
  }

  /** One attempt. Non-2xx answers are always read whole (their text makes the error). */
  private async sendOnce(spec: RequestSpec): Promise<HttpResponse> {
    const headers: Record<string, string> = { ...this.baseHeaders(), ...(spec.headers ?? {}) };
    const init: RequestInit & { duplex?: "half" } = { method: spec.method, headers, redirect: "manual" };
    let streamedBody = false;
    if (spec.json !== undefined) {
      headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(spec.json);
    } else if (spec.body instanceof Uint8Array) {
      init.body = spec.body;
    } else if (spec.body !== undefined) {
      init.body = spec.body as unknown as RequestInit["body"];
      init.duplex = "half";
      streamedBody = true;
    } else if (spec.method === "POST" || spec.method === "PUT" || spec.method === "PATCH") {
      init.body = new Uint8Array(0);
    }
    const url = withQuery(spec.url, spec.query);
    const controller = new AbortController();
    init.signal = controller.signal;
    const idle = this.idleOf(spec);
    let timedOut = false;
    let settled = false;
    let timer: ReturnType<typeof setTimeout> | undefined;
    const disarm = (): void => {
      clearTimeout(timer);
      timer = undefined;
    };
    const arm = (ms: number | undefined): void => {
      disarm();
      // An upload may still ask for chunks after the server answered (early error answers).
      if (ms === undefined || settled) return;
      timer = setTimeout(() => {
        timedOut = true;
        controller.abort();
      }, ms);
    };
    const timeoutMs = this.config.timeoutSecs * 1000;
    if (streamedBody) {
      // An upload may take as long as it takes while it moves: the clock runs only while the
      // server is not taking chunks, and, once all is sent, while its answer is awaited.
      init.body = watchUpload(spec.body as StreamBody, disarm, () => arm(timeoutMs)) as unknown as RequestInit["body"];
      arm(timeoutMs);
    } else {
      arm(spec.events ? idle.ms : timeoutMs);
    }
    const fail = (error: unknown): SandboxException => {
      if (error instanceof SandboxException) return error;
      if (timedOut) {
        const waited = streamedBody || !spec.events ? { ms: timeoutMs, option: "timeoutSecs" } : idle;
        return timeoutError(spec.method, url, waited);
      }
      return new SandboxConnectionError(`${spec.method} ${url}: ${causeText(error)}`, { cause: error });
    };
    try {
      const response = await this.fetchImpl(url, init);
      const base = { status: response.status, ok: response.ok, headers: response.headers, url, method: spec.method };
      if (spec.stream && response.ok) {
        disarm();
        return { ...base, body: new Uint8Array(0), stream: response.body, idle };
      }
      const body = new Uint8Array(await response.arrayBuffer());
      return { ...base, body, stream: null };
    } catch (error) {
      throw fail(error);
    } finally {
      settled = true;
      disarm();
    }
  }

  /** The bound on each read of a streamed answer to `spec`. */
  private idleOf(spec: RequestSpec): { ms: number | undefined; option: string } {
    if (spec.events) {
      const secs = this.config.streamIdleTimeoutSecs;
      return { ms: secs === null ? undefined : secs * 1000, option: "streamIdleTimeoutSecs" };
    }
    return { ms: this.config.timeoutSecs * 1000, option: "timeoutSecs" };
  }
}

/** The error of a deadline that passed, naming the client option to raise. */
function timeoutError(method: string, url: string, waited: { ms: number | undefined; option: string }): SandboxTimeoutError {
  const secs = waited.ms === undefined ? "too long" : `${waited.ms / 1000}s`;
  if (waited.option === "streamIdleTimeoutSecs") {
    return new SandboxTimeoutError(
      `${method} ${url}: the sandbox sent nothing for ${secs} (its agent sends a keep-alive every 15s, ` +
        "so it is stopped or unreachable); raise the client's streamIdleTimeoutSecs to wait longer, " +
        "or set it to null to wait forever",
      waited.option,
    );
  }
  return new SandboxTimeoutError(
    `${method} ${url}: timed out after ${secs} (raise the client's timeoutSecs)`,
    waited.option,
  );
}

/**
 * An upload body that reports its progress: `waiting` when it is asked for the next chunk
 * (the server is taking data), `sent` after each chunk and at the end (the server must now act).
 */
function watchUpload(body: StreamBody, waiting: () => void, sent: () => void): StreamBody {
  const reader = body.getReader();
  return new ReadableStream<Uint8Array>({
    async pull(controller) {
      waiting();
      const { done, value } = await reader.read();
      if (done) controller.close();
      else controller.enqueue(value);
      sent();
    },
    cancel(reason) {
      return reader.cancel(reason);
    },
  });
}

/** Throw the mapped error unless the answer is 2xx. */
export function check(response: HttpResponse, scope: ErrorScope = {}): void {
  if (!response.ok) throw errorFromResponse(response.status, responseText(response), scope);
}

/** Throw the mapped error of a proxied call unless the answer is 2xx. */
export function checkProxy(response: HttpResponse, target: ProxyTarget): void {
  if (!response.ok) throw proxyError(response.status, responseText(response), target.sandboxId);
}

/** Map an error thrown while reading a response body to {@link SandboxConnectionError}. */
export function streamError(error: unknown, response: Pick<HttpResponse, "method" | "url">): SandboxException {
  if (error instanceof SandboxException) return error;
  return new SandboxConnectionError(`${response.method} ${response.url}: ${causeText(error)}`, { cause: error });
}

/**
 * The body of a streamed response as chunks. Read errors become {@link SandboxConnectionError};
 * a read that waits longer than the response's bound becomes {@link SandboxTimeoutError}; stopping
 * early (a `break` in `for await`) cancels the response.
 */
export async function* readChunks(response: HttpResponse): AsyncGenerator<Uint8Array, void, undefined> {
  if (response.stream === null) {
    if (response.body.length > 0) yield response.body;
    return;
  }
  const reader = response.stream.getReader();
  let done = false;
  try {
    for (;;) {
      let result: Awaited<ReturnType<typeof reader.read>>;
      let timer: ReturnType<typeof setTimeout> | undefined;
      try {
        const read = reader.read();
        const ms = response.idle?.ms;
        if (ms === undefined) {
          result = await read;
        } else {
          // A read left behind by a timeout settles when the reader is cancelled below.
          read.catch(() => undefined);
          const expired = new Promise<never>((_, reject) => {
            timer = setTimeout(() => reject(timeoutError(response.method, response.url, response.idle ?? { ms, option: "timeoutSecs" })), ms);
          });
          result = await Promise.race([read, expired]);
        }
      } catch (error) {
        if (!(error instanceof SandboxTimeoutError)) done = true;
        throw streamError(error, response);
      } finally {
        clearTimeout(timer);
      }
      if (result.done) {
        done = true;
        return;
      }
      yield result.value;
    }
  } finally {
    if (!done) await reader.cancel().catch(() => undefined);
    reader.releaseLock();
  }
}
