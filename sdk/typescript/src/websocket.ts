/**
 * WebSocket addressing and opening for PTY sessions and TCP tunnels.
 *
 * URLs use the proxy's **self-routing** form, `{sandbox_url}/sandboxes/{sandbox_id}/api/v1/...`
 * with `http→ws` / `https→wss`: the sandbox is named in the path, so the URL works with any plain
 * WebSocket client, with no `Host` override. As for the official SDKs' sockets, the PTY URL keeps a
 * path prefix of `sandbox_url` while the tunnel URL replaces the whole path (see
 * docs/protocol/proxy.md, Addressing a sandbox).
 */

import WebSocket from "ws";

import type { ClientConfig } from "./config.js";
import {
  RemoteAPIError,
  SandboxConnectionError,
  SandboxException,
  SandboxNotFoundError,
  SandboxTimeoutError,
} from "./errors.js";
import { errorFromResponse, parseSandboxUrl, segment, USER_AGENT, type ProxyTarget } from "./http.js";

/** Longest wait for the peer to answer a close frame. */
export const CLOSE_TIMEOUT_MS = 5000;

/** `ws(s)://host[:port][/prefix]/sandboxes/<sandbox_id>`: the sandbox's API, routed by path. */
export function selfRoutingBase(sandboxUrl: string, sandboxId: string, keepPath = true): string {
  if (typeof sandboxId !== "string" || !sandboxId) {
    throw new TypeError(`sandboxId must be a non-empty string, got ${JSON.stringify(sandboxId)}`);
  }
  const url = parseSandboxUrl(sandboxUrl, sandboxId);
  const scheme = url.protocol === "https:" || url.protocol === "wss:" ? "wss:" : "ws:";
  const path = keepPath ? url.pathname.replace(/\/+$/, "") : "";
  return `${scheme}//${url.host}${path}/sandboxes/${segment(sandboxId)}`;
}

/** The self-routing URL of a PTY session's socket, token in the query (docs/protocol/streaming.md). */
export function ptyWebsocketUrl(sandboxUrl: string, sandboxId: string, sessionId: string, token: string): string {
  const base = selfRoutingBase(sandboxUrl, sandboxId, true);
  return `${base}/api/v1/pty/${segment(sessionId)}/ws?${new URLSearchParams({ token }).toString()}`;
}

/** The self-routing URL of a TCP tunnel to `remotePort` (the path is replaced). */
export function tunnelWebsocketUrl(sandboxUrl: string, sandboxId: string, remotePort: number): string {
  const base = selfRoutingBase(sandboxUrl, sandboxId, false);
  const port = validatePort(remotePort, "remotePort");
  return `${base}/api/v1/tunnels/tcp?${new URLSearchParams({ port: String(port) }).toString()}`;
}

/**
 * Headers of a WebSocket upgrade: API key, route hint and (for a PTY) `X-PTY-Token`. No
 * `Host` / `X-Tensorlake-Sandbox-Id`: the self-routing URL names the sandbox.
 */
export function websocketHeaders(config: ClientConfig, target: ProxyTarget, token?: string): Record<string, string> {
  const headers: Record<string, string> = { "User-Agent": USER_AGENT };
  if (config.apiKey) headers.Authorization = `Bearer ${config.apiKey}`;
  const hint = target.headers["X-Tensorlake-Route-Hint"];
  if (hint) headers["X-Tensorlake-Route-Hint"] = hint;
  if (token !== undefined) headers["X-PTY-Token"] = token;
  return headers;
}

export function validatePort(port: unknown, what: string, allowZero = false): number {
  const low = allowZero ? 0 : 1;
  if (typeof port !== "number" || !Number.isInteger(port) || port < low || port > 65535) {
    throw new RangeError(`${what} must be an integer between ${low} and 65535, got ${String(port)}`);
  }
  return port;
}

export interface OpenOptions {
  /** Longest wait for the handshake, in milliseconds. */
  timeoutMs: number;
  /** Offer `permessage-deflate`. */
  compression: boolean;
  /** What is being opened, for error messages ("PTY session …"). */
  what: string;
  /** The sandbox, for {@link SandboxNotFoundError}. */
  sandboxId: string;
  /**
   * Called with the socket as soon as it exists, to add listeners: a message the peer sends right
   * after the upgrade may be emitted before the returned promise's callbacks run, and would be
   * lost to listeners added there.
   */
  attach?: (ws: WebSocket) => void;
}

function prefixed(error: SandboxException, what: string): SandboxException {
  error.message = `${what}: ${error.message}`;
  return error;
}

/**
 * Open a WebSocket. A refused upgrade is mapped like any proxy answer (`SANDBOX_NOT_FOUND` →
 * {@link SandboxNotFoundError}, 401/403 → `AuthenticationError`, else {@link RemoteAPIError}); a
 * handshake timeout → {@link SandboxTimeoutError}; anything else → {@link SandboxConnectionError}.
 *
 * The returned socket keeps a no-op `error` listener: callers watch `close`.
 */
export function openWebSocket(url: string, headers: Record<string, string>, options: OpenOptions): Promise<WebSocket> {
  return new Promise((resolve, reject) => {
    let settled = false;
    const settle = (error?: SandboxException): void => {
      if (settled) return;
      settled = true;
      if (error) reject(error);
      else resolve(ws);
    };
    const ws = new WebSocket(url, {
      headers,
      perMessageDeflate: options.compression,
      handshakeTimeout: options.timeoutMs,
    });
    options.attach?.(ws);
    ws.on("error", (error: Error) => {
      if (/handshake has timed out/i.test(error.message)) {
        settle(new SandboxTimeoutError(`${options.what}: timed out opening the WebSocket`));
      } else {
        settle(new SandboxConnectionError(`${options.what}: ${error.message || error.name}`, { cause: error }));
      }
    });
    ws.once("unexpected-response", (request, response) => {
      const chunks: Buffer[] = [];
      const done = (): void => {
        const status = response.statusCode ?? 0;
        let error = errorFromResponse(status, Buffer.concat(chunks).toString("utf8"));
        if (error instanceof RemoteAPIError && error.code === "SANDBOX_NOT_FOUND") {
          error = new SandboxNotFoundError(options.sandboxId, error.serverMessage, error.code);
        }
        settle(prefixed(error, options.what));
        request.destroy();
        ws.terminate();
      };
      response.on("data", (chunk: Buffer) => chunks.push(chunk));
      response.once("end", done);
      response.once("error", done);
    });
    ws.once("open", () => settle());
  });
}

/**
 * Close a socket (code 1000) and wait for the peer's close frame, or terminate it after
 * {@link CLOSE_TIMEOUT_MS}. Messages that arrive meanwhile still reach the socket's listeners.
 */
export function closeWebSocket(ws: WebSocket): Promise<void> {
  if (ws.readyState === WebSocket.CLOSED) return Promise.resolve();
  return new Promise((resolve) => {
    const timer = setTimeout(() => {
      ws.terminate();
      resolve();
    }, CLOSE_TIMEOUT_MS);
    ws.once("close", () => {
      clearTimeout(timer);
      resolve();
    });
    if (ws.readyState === WebSocket.OPEN) ws.close(1000);
    else if (ws.readyState === WebSocket.CONNECTING) ws.terminate();
  });
}
