/**
 * TCP tunnels: a local port that leads to a port inside a sandbox (docs/protocol/sandbox-api.md).
 *
 * A `net.Server` accepts local connections; each one gets its own WebSocket to
 * `/sandboxes/<id>/api/v1/tunnels/tcp?port=N` and relays raw bytes both ways as binary frames.
 */

import { EventEmitter } from "node:events";
import net from "node:net";

import WebSocket from "ws";

import { SandboxConnectionError, SandboxException } from "./errors.js";
import { closeWebSocket, openWebSocket, validatePort } from "./websocket.js";

/** Pause reading the local socket while this much is queued on the WebSocket. */
const HIGH_WATER_BYTES = 1024 * 1024;

/** Options of `Sandbox.createTunnel()`. */
export interface CreateTunnelOptions {
  /** Local port to listen on; 0 or absent picks a free one (read it from `tunnel.localPort`). */
  localPort?: number;
  /** Local address to listen on (default `127.0.0.1`). */
  localHost?: string;
}

/** Where a tunnel listens: pass it to `net.connect()` as is. */
export interface TunnelAddress {
  host: string;
  port: number;
}

/** How a tunnel opens its WebSockets (made by the sandbox). */
export interface TunnelSettings {
  url: string;
  headers: Record<string, string>;
  remotePort: number;
  connectTimeoutMs: number;
  sandboxId: string;
}

/**
 * A local TCP listener whose connections are relayed to `remotePort` in the sandbox.
 *
 * Made by `Sandbox.createTunnel()`; it listens from the start. Each local connection opens its
 * own WebSocket; when the sandbox refuses it (nothing listens on the port) that connection is
 * closed, a `connectionError` event is emitted, and the tunnel keeps listening. Call
 * {@link close} (or use `await using`) to stop listening.
 *
 * ```ts
 * const tunnel = await sandbox.createTunnel(8080);
 * const res = await fetch(`http://${tunnel.localHost}:${tunnel.localPort}/`);
 * await tunnel.close();
 * ```
 */
export class Tunnel extends EventEmitter {
  readonly #settings: TunnelSettings;
  readonly #server: net.Server;
  readonly #localHost: string;
  #localPort = 0;
  #closed = false;
  readonly #relays = new Set<{ local: net.Socket; ws: WebSocket | null }>();

  private constructor(settings: TunnelSettings, localHost: string) {
    super();
    this.#settings = settings;
    this.#localHost = localHost;
    this.#server = net.createServer({ noDelay: true }, (local) => this.#serve(local));
  }

  /** @internal Bind and listen; used by `Sandbox.createTunnel()`. */
  static async open(settings: TunnelSettings, options: CreateTunnelOptions = {}): Promise<Tunnel> {
    const localHost = options.localHost ?? "127.0.0.1";
    if (typeof localHost !== "string" || !localHost) {
      throw new TypeError(`localHost must be a non-empty string, got ${JSON.stringify(localHost)}`);
    }
    const localPort = validatePort(options.localPort ?? 0, "localPort", true);
    validatePort(settings.remotePort, "remotePort");
    const tunnel = new Tunnel(settings, localHost);
    await new Promise<void>((resolve, reject) => {
      const onError = (error: Error): void => {
        reject(new SandboxConnectionError(`binding the tunnel listener on ${localHost}:${localPort}: ${error.message}`));
      };
      tunnel.#server.once("error", onError);
      tunnel.#server.listen({ host: localHost, port: localPort }, () => {
        tunnel.#server.off("error", onError);
        resolve();
      });
    });
    tunnel.#server.on("error", (error) => tunnel.emit("connectionError", error));
    tunnel.#localPort = (tunnel.#server.address() as net.AddressInfo).port;
    return tunnel;
  }

  /** The port inside the sandbox. */
  get remotePort(): number {
    return this.#settings.remotePort;
  }

  get localHost(): string {
    return this.#localHost;
  }

  /** The local port (the one picked by the system when 0 was asked for). */
  get localPort(): number {
    return this.#localPort;
  }

  /** `{host, port}`, ready for `net.connect()`. */
  get localAddress(): TunnelAddress {
    return { host: this.#localHost, port: this.#localPort };
  }

  /** The WebSocket URL each local connection opens. */
  get websocketUrl(): string {
    return this.#settings.url;
  }

  get closed(): boolean {
    return this.#closed;
  }

  override toString(): string {
    return `Tunnel(${this.#localHost}:${this.#localPort} -> sandbox port ${this.remotePort}, closed=${this.#closed})`;
  }

  /** Stop listening and close every relayed connection. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    const stopped = new Promise<void>((resolve) => this.#server.close(() => resolve()));
    const relays = [...this.#relays];
    for (const relay of relays) relay.local.destroy();
    await Promise.all(relays.map((relay) => (relay.ws ? closeWebSocket(relay.ws) : undefined)));
    await stopped;
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }

  // -- internals -------------------------------------------------------------------------------

  #serve(local: net.Socket): void {
    const relay: { local: net.Socket; ws: WebSocket | null } = { local, ws: null };
    if (this.#closed) {
      local.destroy();
      return;
    }
    this.#relays.add(relay);
    local.pause();
    const pending: Buffer[] = [];
    let localEnded = false;
    const cleanup = (): void => {
      this.#relays.delete(relay);
    };
    local.on("data", (chunk: Buffer) => pending.push(chunk));
    local.once("end", () => {
      localEnded = true;
    });
    local.on("error", () => undefined);
    local.once("close", () => {
      localEnded = true;
      if (relay.ws) void closeWebSocket(relay.ws);
      cleanup();
    });

    const settings = this.#settings;
    // What the sandbox side sends at once (a server's banner) may come before the socket is
    // handed over below: it waits here until then.
    const early: [Buffer, boolean][] = [];
    let deliver: ((data: Buffer, isBinary: boolean) => void) | null = null;
    openWebSocket(settings.url, settings.headers, {
      timeoutMs: settings.connectTimeoutMs,
      compression: false,
      what: `tunnel to sandbox port ${settings.remotePort}`,
      sandboxId: settings.sandboxId,
      attach: (ws) =>
        ws.on("message", (data: Buffer, isBinary: boolean) => (deliver ? deliver(data, isBinary) : early.push([data, isBinary]))),
    }).then(
      (ws) => {
        if (local.destroyed || this.#closed) {
          void closeWebSocket(ws);
          cleanup();
          return;
        }
        relay.ws = ws;
        deliver = (data: Buffer, isBinary: boolean) => {
          if (!isBinary) {
            this.emit(
              "connectionError",
              new SandboxConnectionError(`${this}: unexpected text frame from the sandbox, closing the connection`),
            );
            ws.terminate();
            return;
          }
          if (!local.write(data)) {
            ws.pause();
            local.once("drain", () => ws.resume());
          }
        };
        for (const [data, isBinary] of early.splice(0)) deliver(data, isBinary);
        const sandboxEnded = (): void => {
          // The sandbox side ended: end the local side once what was written is flushed.
          local.end();
          cleanup();
        };
        if (ws.readyState === WebSocket.CLOSED) sandboxEnded(); // it may close right after its banner
        else ws.once("close", sandboxEnded);
        const forward = (chunk: Buffer): void => {
          if (ws.readyState !== WebSocket.OPEN) return;
          ws.send(chunk, { binary: true }, () => {
            if (local.isPaused() && ws.bufferedAmount < HIGH_WATER_BYTES && !local.destroyed) local.resume();
          });
          if (ws.bufferedAmount >= HIGH_WATER_BYTES) local.pause();
        };
        local.removeAllListeners("data");
        for (const chunk of pending.splice(0)) forward(chunk);
        local.on("data", forward);
        const finish = (): void => {
          // The local side ended: so does the connection in the sandbox.
          void closeWebSocket(ws);
        };
        if (localEnded) finish();
        else local.once("end", finish);
        local.resume();
      },
      (error: unknown) => {
        const wrapped =
          error instanceof SandboxException ? error : new SandboxConnectionError(String(error), { cause: error });
        this.emit("connectionError", wrapped);
        local.destroy();
        cleanup();
      },
    );
  }
}
