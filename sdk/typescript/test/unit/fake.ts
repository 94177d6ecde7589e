/**
 * A tiny in-test HTTP (and WebSocket) server that records requests and answers from a handler.
 */

import http from "node:http";
import type { AddressInfo } from "node:net";

import { WebSocketServer, type WebSocket } from "ws";

import { clock } from "../../src/http.js";

/** A request as the fake server saw it. */
export interface Recorded {
  method: string;
  /** Path and query, as sent. */
  url: string;
  path: string;
  query: URLSearchParams;
  headers: http.IncomingHttpHeaders;
  body: Buffer;
}

export interface Answer {
  status?: number;
  headers?: Record<string, string>;
  /** An object is sent as JSON. */
  json?: unknown;
  body?: string | Buffer;
  /** Chunks written one by one (with a flush between them), e.g. SSE. */
  chunks?: (string | Buffer)[];
}

export type Handler = (req: Recorded) => Answer | Promise<Answer>;
export type UpgradeHandler = (ws: WebSocket, req: Recorded) => void;

export interface Fake {
  url: string;
  port: number;
  requests: Recorded[];
  close(): Promise<void>;
}

/** Start a fake on 127.0.0.1 (reach it as `localhost`, so proxy URLs use self-routing paths). */
export async function startFake(handler: Handler, onUpgrade?: UpgradeHandler): Promise<Fake> {
  const requests: Recorded[] = [];
  const record = (req: http.IncomingMessage, body: Buffer): Recorded => {
    const parsed = new URL(req.url ?? "/", "http://fake");
    return { method: req.method ?? "", url: req.url ?? "", path: parsed.pathname, query: parsed.searchParams, headers: req.headers, body };
  };
  const server = http.createServer(async (req, res) => {
    const chunks: Buffer[] = [];
    for await (const chunk of req) chunks.push(chunk as Buffer);
    const recorded = record(req, Buffer.concat(chunks));
    requests.push(recorded);
    let answer: Answer;
    try {
      answer = await handler(recorded);
    } catch (error) {
      answer = { status: 500, json: { message: String(error) } };
    }
    const headers: Record<string, string> = { ...(answer.headers ?? {}) };
    if (answer.json !== undefined) headers["content-type"] ??= "application/json";
    res.writeHead(answer.status ?? 200, headers);
    if (answer.chunks) {
      for (const chunk of answer.chunks) {
        res.write(chunk);
        await new Promise((resolve) => setTimeout(resolve, 5));
      }
      res.end();
    } else if (answer.json !== undefined) {
      res.end(JSON.stringify(answer.json));
    } else {
      res.end(answer.body ?? "");
    }
  });
  const wss = new WebSocketServer({ noServer: true });
  server.on("upgrade", (req, socket, head) => {
    const recorded = record(req, Buffer.alloc(0));
    requests.push(recorded);
    if (!onUpgrade) {
      socket.destroy();
      return;
    }
    wss.handleUpgrade(req, socket, head, (ws) => onUpgrade(ws, recorded));
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const port = (server.address() as AddressInfo).port;
  return {
    url: `http://localhost:${port}`,
    port,
    requests,
    async close() {
      for (const client of wss.clients) client.terminate();
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

/** A SandboxInfo wire object. */
export function sandboxJson(fields: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    id: "sbx1",
    namespace: "default",
    status: "running",
    resources: { cpus: 1.0, memory_mb: 1024, disk_mb: 10240, ephemeral_disk_mb: 10240 },
    ...fields,
  };
}

/** Make every wait of the SDK instant; returns the function that restores them. */
export function instantSleeps(): () => void {
  const original = clock.sleep;
  clock.sleep = async () => undefined;
  return () => {
    clock.sleep = original;
  };
}

/** Node selectors every client-side check refuses (create's and pools' alike), with the error each throws. */
export const BAD_NODE_SELECTORS: [unknown, typeof TypeError | typeof RangeError][] = [
  [{ zone: 1 }, TypeError],
  [{ zone: null }, TypeError],
  [{ "": "b" }, TypeError],
  [[["zone", "b"]], TypeError],
  ["zone=b", TypeError],
  [null, TypeError],
  [new Map([["zone", "b"]]), TypeError],
  [Object.fromEntries(Array.from({ length: 17 }, (_, i) => [`k${i}`, "v"])), RangeError],
];
