/**
 * Byte transports: an ordered byte stream in both directions, read a given number of bytes at a
 * time. The RFB client (`rfb.ts`) speaks over one; the SDK gives it the sandbox's TCP-tunnel
 * WebSocket (binary frames), and tests a plain TCP socket.
 */

import type net from "node:net";

import WebSocket from "ws";

import { SandboxConnectionError, SandboxError } from "./errors.js";
import { closeWebSocket } from "./websocket.js";

/** A byte stream both ways. */
export interface ByteTransport {
  /** Queue `data`; resolves once it is handed to the connection. */
  send(data: Uint8Array): Promise<void>;
  /**
   * Exactly `n` bytes, in order, waiting for them. Rejects once the stream ended or broke before
   * `n` bytes came. One read at a time.
   */
  read(n: number): Promise<Uint8Array>;
  /** Close the connection (idempotent); pending and later reads reject. */
  close(): Promise<void>;
}

/**
 * Bytes received and not read yet, and the one read waiting for them. Transports push what they
 * receive and call {@link end} when the stream stops.
 */
export class ByteQueue {
  #chunks: Uint8Array[] = [];
  /** Bytes already taken from `#chunks[0]`. */
  #offset = 0;
  #length = 0;
  #waiting: { n: number; resolve: (bytes: Uint8Array) => void; reject: (error: Error) => void } | null = null;
  #ended: Error | null = null;

  /** Bytes buffered and not read yet. */
  get length(): number {
    return this.#length;
  }

  /** Why the stream ended, once it did. */
  get ended(): Error | null {
    return this.#ended;
  }

  push(chunk: Uint8Array): void {
    if (this.#ended || chunk.length === 0) return;
    this.#chunks.push(chunk);
    this.#length += chunk.length;
    const waiting = this.#waiting;
    if (waiting && this.#length >= waiting.n) {
      this.#waiting = null;
      waiting.resolve(this.#take(waiting.n));
    }
  }

  /** No more bytes will come: the read waiting and later ones reject with `error`. */
  end(error: Error): void {
    if (this.#ended) return;
    this.#ended = error;
    const waiting = this.#waiting;
    this.#waiting = null;
    waiting?.reject(error);
  }

  read(n: number): Promise<Uint8Array> {
    if (!Number.isInteger(n) || n < 0) return Promise.reject(new RangeError(`cannot read ${String(n)} bytes`));
    if (this.#waiting) return Promise.reject(new SandboxError("a read is already waiting on this stream"));
    if (this.#length >= n) return Promise.resolve(this.#take(n));
    if (this.#ended) return Promise.reject(this.#ended);
    return new Promise((resolve, reject) => {
      this.#waiting = { n, resolve, reject };
    });
  }

  #take(n: number): Uint8Array {
    this.#length -= n;
    const first = this.#chunks[0];
    if (n === 0) return new Uint8Array(0);
    if (first && first.length - this.#offset >= n) {
      const out = first.subarray(this.#offset, this.#offset + n);
      this.#offset += n;
      if (this.#offset === first.length) {
        this.#chunks.shift();
        this.#offset = 0;
      }
      return out;
    }
    const out = new Uint8Array(n);
    let filled = 0;
    while (filled < n) {
      const head = this.#chunks[0]!;
      const count = Math.min(n - filled, head.length - this.#offset);
      out.set(head.subarray(this.#offset, this.#offset + count), filled);
      filled += count;
      this.#offset += count;
      if (this.#offset === head.length) {
        this.#chunks.shift();
        this.#offset = 0;
      }
    }
    return out;
  }
}

/** A transport over a connected TCP socket (`net.connect()`). */
export function socketTransport(socket: net.Socket, what = "the TCP connection"): ByteTransport {
  const queue = new ByteQueue();
  socket.setNoDelay(true);
  socket.on("data", (chunk: Buffer) => queue.push(chunk));
  socket.on("error", (error) => queue.end(new SandboxConnectionError(`${what} broke: ${error.message}`, { cause: error })));
  socket.on("end", () => queue.end(new SandboxConnectionError(`${what} was closed by the other side`)));
  socket.on("close", () => queue.end(new SandboxConnectionError(`${what} is closed`)));
  return {
    send(data) {
      if (queue.ended || socket.destroyed) return Promise.reject(queue.ended ?? new SandboxConnectionError(`${what} is closed`));
      return new Promise((resolve, reject) => {
        socket.write(data, (error) => (error ? reject(new SandboxConnectionError(`${what} broke: ${error.message}`)) : resolve()));
      });
    },
    read: (n) => queue.read(n),
    async close() {
      queue.end(new SandboxConnectionError(`${what} is closed`));
      if (socket.destroyed) return;
      const closed = new Promise<void>((resolve) => socket.once("close", () => resolve()));
      socket.destroy();
      await closed;
    },
  };
}

/**
 * A transport over an open WebSocket carrying a byte stream in binary frames, such as a sandbox's
 * TCP tunnel (`/api/v1/tunnels/tcp`). A text frame breaks the stream.
 */
export function webSocketTransport(ws: WebSocket, what = "the tunnel"): ByteTransport {
  const queue = new ByteQueue();
  ws.on("message", (data: Buffer | ArrayBuffer | Buffer[], isBinary: boolean) => {
    if (!isBinary) {
      queue.end(new SandboxConnectionError(`${what}: unexpected text frame, the stream carries binary frames only`));
      ws.terminate();
      return;
    }
    if (Array.isArray(data)) for (const part of data) queue.push(part);
    else queue.push(data instanceof ArrayBuffer ? new Uint8Array(data) : data);
  });
  ws.on("close", (code: number, reason: Buffer) => {
    const detail = reason.length > 0 ? `: ${reason.toString("utf8")}` : code && code !== 1000 && code !== 1005 ? ` (code ${code})` : "";
    queue.end(new SandboxConnectionError(`${what} was closed by the other side${detail}`));
  });
  return {
    send(data) {
      if (queue.ended || ws.readyState !== WebSocket.OPEN) {
        return Promise.reject(queue.ended ?? new SandboxConnectionError(`${what} is closed`));
      }
      return new Promise((resolve, reject) => {
        ws.send(data, { binary: true }, (error) => (error ? reject(new SandboxConnectionError(`${what} broke: ${error.message}`)) : resolve()));
      });
    },
    read: (n) => queue.read(n),
    async close() {
      queue.end(new SandboxConnectionError(`${what} is closed`));
      await closeWebSocket(ws);
    },
  };
}
