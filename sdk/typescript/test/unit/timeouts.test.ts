/**
 * Client-side deadlines: no call waits forever on a stopped agent.
 *
 * Small servers on 127.0.0.1 play a stopped agent (accepts, never answers), an agent that stops
 * mid-stream, and a healthy agent running a silent command (keep-alive comments only), so the
 * deadlines are checked as they really fire, not by reading the code's numbers.
 */

import assert from "node:assert/strict";
import http from "node:http";
import type { AddressInfo } from "node:net";
import { after, before, describe, it } from "node:test";

import { DEFAULT_STREAM_IDLE_TIMEOUT_SECS, resolveConfig, SandboxClient, SandboxTimeoutError, type Sandbox } from "../../src/index.js";
import { instantSleeps, sandboxJson } from "./fake.js";


type Behaviour = (req: http.IncomingMessage, res: http.ServerResponse) => void;

/** An agent behind a control plane: `GET` of the sandbox answers, the rest goes to `behaviour`. */
async function startAgent(behaviour: Behaviour): Promise<{ url: string; close(): Promise<void> }> {
  let url = "";
  const server = http.createServer((req, res) => {
    if (req.url?.startsWith("/v1/namespaces/default/sandboxes/")) {
      res.writeHead(200, { "content-type": "application/json" });
      res.end(JSON.stringify(sandboxJson({ sandbox_url: url })));
      return;
    }
    behaviour(req, res);
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  url = `http://localhost:${(server.address() as AddressInfo).port}`;
  return {
    url,
    async close() {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

/** A stopped agent: it reads the request and never answers. */
const neverAnswers: Behaviour = (req) => {
  req.resume();
};

/** An agent that starts the stream, then stops. */
const stallsAfterStart: Behaviour = (req, res) => {
  req.resume();
  res.writeHead(200, { "content-type": "text/event-stream" });
  res.write('data: {"pid": 7}\n\n');
};

/** A healthy agent running a silent command: ten keep-alives 100 ms apart, then the exit. */
const keepsAliveThenExits: Behaviour = (req, res) => {
  req.resume();
  res.writeHead(200, { "content-type": "text/event-stream" });
  res.write('data: {"pid": 7}\n\n');
  let sent = 0;
  const tick = setInterval(() => {
    if (++sent <= 10) {
      res.write(": keep-alive\n\n");
      return;
    }
    clearInterval(tick);
    res.end('data: {"exit_code": 0, "signal": null}\n\n');
  }, 100);
};

async function connect(url: string, options: { timeoutSecs?: number; streamIdleTimeoutSecs?: number | null }): Promise<Sandbox> {
  return new SandboxClient({ apiUrl: url, ...options }).connect("sbx1");
}

describe("client-side deadlines", () => {
  let restoreSleeps: () => void;
  before(() => {
    restoreSleeps = instantSleeps();
  });
  after(() => restoreSleeps());

  it("has a stream idle bound by default, null to disable, and refuses nonsense", () => {
    assert.equal(DEFAULT_STREAM_IDLE_TIMEOUT_SECS, 120);
    assert.equal(resolveConfig({}, {}).streamIdleTimeoutSecs, 120);
    assert.equal(resolveConfig({ streamIdleTimeoutSecs: null }, {}).streamIdleTimeoutSecs, null);
    for (const bad of [0, -1, Number.NaN, "5" as unknown as number]) {
      assert.throws(() => resolveConfig({ streamIdleTimeoutSecs: bad }, {}), RangeError);
    }
  });

  it("times out run and ordinary calls against a stopped agent, naming the option", async () => {
    const agent = await startAgent(neverAnswers);
    try {
      const sandbox = await connect(agent.url, { timeoutSecs: 0.3, streamIdleTimeoutSecs: 0.3 });
      await assert.rejects(
        sandbox.run("true"),
        (error: unknown) =>
          error instanceof SandboxTimeoutError && error.option === "streamIdleTimeoutSecs" && /streamIdleTimeoutSecs/.test(error.message),
      );
      await assert.rejects(
        sandbox.listProcesses(),
        (error: unknown) => error instanceof SandboxTimeoutError && error.option === "timeoutSecs",
      );
    } finally {
      await agent.close();
    }
  });

  it("times out a stream that stops mid-way", async () => {
    const agent = await startAgent(stallsAfterStart);
    try {
      const sandbox = await connect(agent.url, { streamIdleTimeoutSecs: 0.3 });
      await assert.rejects(
        sandbox.run("sleep", ["1000"]),
        (error: unknown) => error instanceof SandboxTimeoutError && error.option === "streamIdleTimeoutSecs",
      );
      const events = async () => {
        for await (const _ of sandbox.followOutput(7)) void _;
      };
      await assert.rejects(events(), SandboxTimeoutError);
    } finally {
      await agent.close();
    }
  });

  it("keeps a silent stream open while keep-alives arrive", async () => {
    const agent = await startAgent(keepsAliveThenExits);
    try {
      const sandbox = await connect(agent.url, { streamIdleTimeoutSecs: 0.5 });
      const result = await sandbox.run("sleep", ["1"]);
      assert.equal(result.exitCode, 0);
      assert.equal(result.pid, 7);
    } finally {
      await agent.close();
    }
  });

  it("times out a streamed upload whose answer never comes", async () => {
    const agent = await startAgent(neverAnswers);
    try {
      const sandbox = await connect(agent.url, { timeoutSecs: 0.3 });
      async function* chunks() {
        yield new Uint8Array([1, 2, 3]);
        yield new Uint8Array([4, 5, 6]);
      }
      await assert.rejects(
        sandbox.writeFile("/tmp/x", chunks()),
        (error: unknown) => error instanceof SandboxTimeoutError && error.option === "timeoutSecs",
      );
    } finally {
      await agent.close();
    }
  });
});

