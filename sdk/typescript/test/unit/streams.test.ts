/**
 * `run()` and `follow*()` over a real HTTP server on 127.0.0.1 whose body arrives in awkward
 * pieces, goes silent, breaks, or is left early. (The decoders themselves: sse.test.ts.)
 */

import assert from "node:assert/strict";
import http from "node:http";
import type { AddressInfo } from "node:net";
import { after, before, describe, it } from "node:test";

import { SandboxClient, SandboxConnectionError, SandboxTimeoutError, type Sandbox } from "../../src/index.js";
import { instantSleeps, sandboxJson } from "./fake.js";

type Behaviour = (req: http.IncomingMessage, res: http.ServerResponse) => void | Promise<void>;

/** An agent behind a control plane: `GET` of the sandbox answers, the rest goes to `behaviour`. */
async function startAgent(behaviour: Behaviour): Promise<{ sandbox: Sandbox; close(): Promise<void> }> {
  let url = "";
  const server = http.createServer((req, res) => {
    if (req.url?.startsWith("/v1/namespaces/default/sandboxes/")) {
      res.writeHead(200, { "content-type": "application/json" });
      res.end(JSON.stringify(sandboxJson({ sandbox_url: url })));
      return;
    }
    req.resume();
    void behaviour(req, res);
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  url = `http://localhost:${(server.address() as AddressInfo).port}`;
  const sandbox = await new SandboxClient({ apiUrl: url, streamIdleTimeoutSecs: 0.5 }).connect("sbx1");
  return {
    sandbox,
    async close() {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

const pause = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

function event(name: string, data: object): string {
  return `event: ${name}\ndata: ${JSON.stringify(data)}\n\n`;
}

const LINES = ["first", "", "é😀 split anywhere", "tab\there", "last"];

function body(crlf: boolean): Buffer {
  const events = [event("started", { pid: 7, started_at: 1767225600123 })];
  LINES.forEach((line, i) => {
    events.push(event("output", { line, timestamp: 1767225600131, stream: i === 3 ? "stderr" : "stdout" }), ": keep-alive\n\n");
  });
  events.push(event("exit", { exit_code: 0, signal: null, oom_killed: false, reason: "exited" }));
  const text = events.join("");
  return Buffer.from(crlf ? text.replaceAll("\n", "\r\n") : text);
}

/** Writes the body in pieces of `size` bytes, each flushed on its own. */
function inPieces(data: Buffer, size: number): Behaviour {
  return async (_req, res) => {
    res.writeHead(200, { "content-type": "text/event-stream" });
    for (let i = 0; i < data.length; i += size) {
      res.write(data.subarray(i, i + size));
      await pause(1);
    }
    res.end();
  };
}

describe("event streams over HTTP", () => {
  let restoreSleeps: () => void;
  before(() => {
    restoreSleeps = instantSleeps();
  });
  after(() => restoreSleeps());

  for (const crlf of [false, true]) {
    for (const size of [1, 3, 7, 64]) {
      it(`run and follow read a body sent ${size} bytes at a time${crlf ? " with CRLF" : ""}`, async () => {
        const agent = await startAgent(inPieces(body(crlf), size));
        try {
          const result = await agent.sandbox.run("x");
          assert.deepEqual(
            [result.stdout, result.stderr, result.exitCode, result.pid],
            [LINES.filter((_, i) => i !== 3).join("\n"), "tab\there", 0, 7],
          );
          const events = [];
          for await (const e of agent.sandbox.followOutput(7)) events.push([e.line, e.stream]);
          assert.deepEqual(events, LINES.map((line, i) => [line, i === 3 ? "stderr" : "stdout"]));
        } finally {
          await agent.close();
        }
      });
    }
  }

  it("delivers lines as they arrive, then times out a silent stream", async () => {
    const second = Buffer.from(event("output", { line: "é", timestamp: 1, stream: "stdout" }));
    const cut = second.indexOf(Buffer.from("é")) + 1; // inside the character
    const agent = await startAgent(async (_req, res) => {
      res.writeHead(200, { "content-type": "text/event-stream" });
      res.write(Buffer.concat([Buffer.from(event("output", { line: "one", timestamp: 1, stream: "stdout" })), second.subarray(0, cut)]));
      await pause(50);
      res.write(second.subarray(cut)); // then nothing
    });
    try {
      const received: string[] = [];
      await assert.rejects(
        (async () => {
          for await (const e of agent.sandbox.followOutput(7)) received.push(e.line);
        })(),
        (error: unknown) => error instanceof SandboxTimeoutError && error.option === "streamIdleTimeoutSecs",
      );
      assert.deepEqual(received, ["one", "é"]);
    } finally {
      await agent.close();
    }
  });

  it("raises a connection error when the connection breaks midway, after the lines before it", async () => {
    const agent = await startAgent(async (_req, res) => {
      res.writeHead(200, { "content-type": "text/event-stream" });
      res.write(event("output", { line: "one", timestamp: 1, stream: "stdout" }) + "event: out");
      await pause(20);
      res.destroy();
    });
    try {
      await assert.rejects(agent.sandbox.run("x"), SandboxConnectionError);
      const received: string[] = [];
      await assert.rejects(
        (async () => {
          for await (const e of agent.sandbox.followOutput(7)) received.push(e.line);
        })(),
        SandboxConnectionError,
      );
      assert.deepEqual(received, ["one"]);
    } finally {
      await agent.close();
    }
  });

  it("closes the connection when the caller stops following", async () => {
    let closed: () => void = () => undefined;
    const connectionClosed = new Promise<void>((resolve) => {
      closed = resolve;
    });
    const agent = await startAgent(async (_req, res) => {
      res.writeHead(200, { "content-type": "text/event-stream" });
      res.on("close", closed);
      for (let i = 0; !res.destroyed && i < 1000; i++) {
        res.write(event("output", { line: String(i), timestamp: 1, stream: "stdout" }));
        await pause(5);
      }
    });
    try {
      for await (const e of agent.sandbox.followOutput(7)) if (e.line === "2") break;
      await connectionClosed;
    } finally {
      await agent.close();
    }
  });
});
