/**
 * Client configuration: explicit options first, then the environment, then defaults.
 *
 * The environment is read when a client is built (never at import), so a program may set
 * `ALCOVE_API_URL` / `ALCOVE_API_KEY` after importing the SDK.
 */

export const API_URL_ENV = "ALCOVE_API_URL";
export const API_KEY_ENV = "ALCOVE_API_KEY";

export const DEFAULT_API_URL = "http://localhost:8900";
export const DEFAULT_NAMESPACE = "default";
/** What the server takes as a namespace: an identifier, never a path. */
const NAMESPACE = /^[A-Za-z0-9_-][A-Za-z0-9._-]{0,127}$/;
/** Default per-request timeout, also the deadline of waits (create, suspend, snapshot). */
export const DEFAULT_TIMEOUT_SECS = 300;
/**
 * Default longest silence on a command or output stream (`run`, `follow*`) before
 * {@link SandboxTimeoutError}. The sandbox's agent sends a keep-alive after 15 s without output,
 * so a healthy stream is never this quiet: only a stopped or unreachable agent is.
 */
export const DEFAULT_STREAM_IDLE_TIMEOUT_SECS = 120;
/** Longest wait for a WebSocket handshake (capped by the request timeout). */
export const CONNECT_TIMEOUT_SECS = 10;

/** Options of {@link SandboxClient}; each one wins over its environment variable. */
export interface ClientOptions {
  /** Server URL; else `ALCOVE_API_URL`; else `http://localhost:8900`. */
  apiUrl?: string;
  /** API key sent as `Authorization: Bearer …`; else `ALCOVE_API_KEY`; else none. */
  apiKey?: string;
  /** Namespace of the sandboxes (default `default`). */
  namespace?: string;
  /** Per-request timeout and deadline of every wait, in seconds (default 300). */
  timeoutSecs?: number;
  /**
   * Longest silence on `run` and `follow*` streams, in seconds (default 120); `null` waits
   * forever. The agent sends keep-alives every 15 s, so only a stopped agent hits it.
   */
  streamIdleTimeoutSecs?: number | null;
}

/** Resolved settings shared by a client and the sandbox handles it creates. */
export interface ClientConfig {
  readonly apiUrl: string;
  readonly apiKey: string | undefined;
  readonly namespace: string;
  readonly timeoutSecs: number;
  /** Read-inactivity bound of event streams, in seconds; `null` = none. */
  readonly streamIdleTimeoutSecs: number | null;
}

function fromEnv(env: NodeJS.ProcessEnv | Record<string, string | undefined>, name: string): string | undefined {
  const value = (env[name] ?? "").trim();
  return value || undefined;
}

/** Build a {@link ClientConfig}: explicit options win over `ALCOVE_*` variables. */
export function resolveConfig(
  options: ClientOptions = {},
  env: NodeJS.ProcessEnv | Record<string, string | undefined> = process.env,
): ClientConfig {
  let url = options.apiUrl ?? fromEnv(env, API_URL_ENV) ?? DEFAULT_API_URL;
  url = url.trim().replace(/\/+$/, "");
  if (!/^https?:\/\//.test(url)) {
    throw new TypeError(`apiUrl must start with http:// or https://, got ${JSON.stringify(url)}`);
  }
  const apiKey = options.apiKey ?? fromEnv(env, API_KEY_ENV);
  const namespace = options.namespace ?? DEFAULT_NAMESPACE;
  if (typeof namespace !== "string" || !NAMESPACE.test(namespace)) {
    throw new TypeError(
      `namespace must be 1-128 letters, digits, '-', '_' and '.', not starting with '.', got ${JSON.stringify(namespace)}`,
    );
  }
  const timeoutSecs = options.timeoutSecs ?? DEFAULT_TIMEOUT_SECS;
  if (typeof timeoutSecs !== "number" || !Number.isFinite(timeoutSecs) || timeoutSecs <= 0) {
    throw new RangeError(`timeoutSecs must be a positive number of seconds, got ${String(timeoutSecs)}`);
  }
  const idle = options.streamIdleTimeoutSecs === undefined ? DEFAULT_STREAM_IDLE_TIMEOUT_SECS : options.streamIdleTimeoutSecs;
  if (idle !== null && (typeof idle !== "number" || !Number.isFinite(idle) || idle <= 0)) {
    throw new RangeError(`streamIdleTimeoutSecs must be a positive number of seconds or null, got ${String(idle)}`);
  }
  return Object.freeze({ apiUrl: url, apiKey: apiKey || undefined, namespace, timeoutSecs, streamIdleTimeoutSecs: idle });
}

/** The longest wait for a WebSocket handshake, in milliseconds. */
export function connectTimeoutMs(config: ClientConfig): number {
  return Math.min(CONNECT_TIMEOUT_SECS, config.timeoutSecs) * 1000;
}
