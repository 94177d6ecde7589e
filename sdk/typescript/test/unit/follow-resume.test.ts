/**
 * `follow*()` across broken connections: opened again, each line handed out once, in order.
 *
 * Alcove's agent gives each `output_batch` an SSE `id` (the line after it): a follow whose
 * connection breaks (the sandbox suspended and resumed, a proxy that drops it) is opened again
 * with the last one as `Last-Event-ID`, and the agent goes on from there. A server without ids
 * answers every line still in the buffer, then the live ones, then `eof`: the follow then skips
 * the lines it already handed out (by count). Here
 * a real HTTP server on 127.0.0.1 scripts the connections: each answer is one connection, cut
 * where the test says.
 */

import assert from "node:assert/strict";
import http from "node:http";
import type { AddressInfo } from "node:net";
import { after, before, beforeEach, describe, it } from "node:test";

import { FOLLOW_BACKOFF_MS, FOLLOW_RECONNECTS, FollowResume, OUTPUT_DROPPED_WARNING } from "../../src/follow-stream.js";
import { clock, GET_ATTEMPTS } from "../../src/http.js";
import { RemoteAPIError, SandboxClient, SandboxConnectionError, SandboxNotFoundError, type Sandbox } from "../../src/index.js";
import { sandboxJson } from "./fake.js";

const TS = 1767225600131;
const EOF = "event: eof\ndata: {}\n\n";
const KEEP_ALIVE = ": keep-alive\n\n";

function batch(lines: string[], stream = "stdout", id?: number): string {
  const idLine = id === undefined ? "" : `id: ${id}\n`;
  return `event: output_batch\n${idLine}data: ${JSON.stringify({ stream, timestamp: TS, lines })}\n\n`;
}

/** A batch after lines the buffer let go, as the agent writes it: `dropped` after the lines. */
function droppedBatch(lines: string[], dropped: number, id: number): string {
  return `event: output_batch\nid: ${id}\ndata: ${JSON.stringify({ stream: "stdout", timestamp: TS, lines, dropped })}\n\n`;
}

function output(line: string, stream = "stdout"): string {
  return `event: output\ndata: ${JSON.stringify({ line, timestamp: TS, stream })}\n\n`;
}

function numbered(first: number, last: number): string[] {
  return Array.from({ length: last - first + 1 }, (_, i) => `line${first + i}`);
}

/** One scripted answer to a follow request. */
type Script =
  | { chunks: string[]; clean?: boolean } // a stream: its chunks, then a break unless `clean`
  | { status: number; json: unknown } // an error answer
  | { refuse: true }; // the connection is dropped before any answer

const pause = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

interface Agent {
  sandbox: Sandbox;
  /** The follow requests received: path and query. */
  follows: URL[];
  /** Their `Last-Event-ID` headers. */
  lastEventIds: (string | undefined)[];
  close(): Promise<void>;
}

/** A control plane and agent: `GET` of the sandbox answers, follow requests get `scripts` in order (the last repeats). */
async function startAgent(scripts: Script[]): Promise<Agent> {
  let url = "";
  const follows: URL[] = [];
  const lastEventIds: (string | undefined)[] = [];
  const queue = [...scripts];
  const server = http.createServer(async (req, res) => {
    if (req.url?.startsWith("/v1/namespaces/default/sandboxes/")) {
      res.writeHead(200, { "content-type": "application/json" });
      res.end(JSON.stringify(sandboxJson({ sandbox_url: url })));
      return;
    }
    req.resume();
    follows.push(new URL(req.url ?? "/", "http://agent"));
    lastEventIds.push(req.headers["last-event-id"] as string | undefined);
    const script = queue.length > 1 ? queue.shift()! : queue[0]!;
    if ("refuse" in script) {
      req.socket.destroy();
      return;
    }
    if ("status" in script) {
      res.writeHead(script.status, { "content-type": "application/json" });
      res.end(JSON.stringify(script.json));
      return;
    }
    res.writeHead(200, { "content-type": "text/event-stream" });
    for (const chunk of script.chunks) {
      res.write(chunk);
      await pause(2);
    }
    if (script.clean) res.end();
    else res.destroy(); // mid-body: the client sees an incomplete chunked body
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  url = `http://localhost:${(server.address() as AddressInfo).port}`;
  const sandbox = await new SandboxClient({ apiUrl: url }).connect("sbx1");
  return {
    sandbox,
    follows,
    lastEventIds,
    async close() {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

/** Follows pid 7 through `method` over `scripts`: the lines received, the error thrown (or null), the follow requests. */
async function follow(
  scripts: Script[],
  method: "followOutput" | "followStdout" | "followOutputBatches" = "followOutput",
): Promise<{ lines: string[]; error: unknown; follows: URL[]; lastEventIds: (string | undefined)[] }> {
  const agent = await startAgent(scripts);
  const lines: string[] = [];
  let error: unknown = null;
  try {
    if (method === "followOutputBatches") {
      for await (const item of agent.sandbox.followOutputBatches(7)) lines.push(...item.lines);
    } else {
      for await (const event of agent.sandbox[method](7)) lines.push(event.line);
    }
  } catch (caught) {
    error = caught;
  } finally {
    await agent.close();
  }
  return { lines, error, follows: agent.follows, lastEventIds: agent.lastEventIds };
}

describe("follow streams across broken connections", () => {
  let sleeps: number[] = [];
  let original: typeof clock.sleep;
  before(() => {
    original = clock.sleep;
    clock.sleep = async (ms: number) => {
      sleeps.push(ms);
    };
  });
  after(() => {
    clock.sleep = original;
  });
  beforeEach(() => {
    sleeps = [];
  });

  it("goes on after the last event id taken, whatever the buffer dropped meanwhile", async () => {
    // The agent dropped lines 1-5 while the follower was away: counting would skip 7 lines never
    // seen; the id says where to go on, and the agent answers only what came after it.
    for (const method of ["followOutput", "followOutputBatches"] as const) {
      const { lines, error, lastEventIds } = await follow(
        [
          { chunks: [batch(numbered(1, 3), "stdout", 3), KEEP_ALIVE, batch(numbered(4, 7), "stdout", 7) + "event: output_batch\nid: 99"] },
          { chunks: [batch(numbered(8, 12), "stdout", 12), EOF], clean: true },
        ],
        method,
      );
      assert.equal(error, null);
      assert.deepEqual(lines, numbered(1, 12), method);
      assert.deepEqual(lastEventIds, [undefined, "7"], method);
    }
  });

  it("goes on where it stopped when the connection breaks midway (a suspend and resume)", async () => {
    const { lines, error, follows } = await follow([
      { chunks: [batch(numbered(1, 3)), KEEP_ALIVE, batch(numbered(4, 5)), batch(numbered(6, 7))] },
      // The replay groups the buffer otherwise, then the live lines and eof.
      { chunks: [batch(numbered(1, 8)), batch(numbered(9, 10)), EOF], clean: true },
    ]);
    assert.equal(error, null);
    assert.deepEqual(lines, numbered(1, 10));
    assert.equal(follows.length, 2);
    for (const url of follows) {
      assert.ok(url.pathname.endsWith("/api/v1/processes/7/output/follow"), url.pathname);
      assert.equal(url.searchParams.get("batch"), "true");
    }
    assert.deepEqual(sleeps, [FOLLOW_BACKOFF_MS[0]]);
  });

  it("waits for a sandbox that is suspending (503 SANDBOX_NOT_READY) and goes on", async () => {
    const notReady: Script = { status: 503, json: { message: "sandbox sbx1 is suspending, not running", code: "SANDBOX_NOT_READY" } };
    const { lines, error, follows } = await follow([
      { chunks: [batch(numbered(1, 4))] },
      notReady,
      notReady,
      notReady,
      { chunks: [batch(numbered(1, 6)), EOF], clean: true },
    ]);
    assert.equal(error, null);
    assert.deepEqual(lines, numbered(1, 6));
    assert.equal(follows.length, 5);
    assert.equal(sleeps[0], FOLLOW_BACKOFF_MS[0]);
    assert.equal(sleeps.length, 4); // the break, then 3 not-ready replays
  });

  it("resumes per-line output events on the stdout route", async () => {
    const { lines, error, follows } = await follow(
      [{ chunks: [output("a"), output("b")] }, { chunks: [output("a"), output("b"), output("c"), EOF], clean: true }],
      "followStdout",
    );
    assert.equal(error, null);
    assert.deepEqual(lines, ["a", "b", "c"]);
    assert.equal(follows.length, 2);
    assert.ok(follows[1]!.pathname.endsWith("/api/v1/processes/7/stdout/follow"), follows[1]!.pathname);
  });

  it("resumes batches, and a batch half handed out keeps its other lines", async () => {
    const { lines, error } = await follow(
      [
        { chunks: [batch(["a", "b"]), batch(["c"], "stderr")] },
        { chunks: [batch(["a"]), batch(["b", "c", "d"]), EOF], clean: true },
      ],
      "followOutputBatches",
    );
    assert.equal(error, null);
    assert.deepEqual(lines, ["a", "b", "c", "d"]);
  });

  it("resumes batches, and a batch half handed out keeps the marks of its pieces, moved with its lines", async () => {
    // Pieces of a cut line (`continued`, indexes into the batch's lines), as the agent writes them.
    const pieces = (lines: string[], continued: number[]) =>
      `event: output_batch\ndata: ${JSON.stringify({ stream: "stdout", timestamp: TS, lines, continued })}\n\n`;
    const agent = await startAgent([
      { chunks: [pieces(["a", "b"], [0])] },
      { chunks: [pieces(["a", "b", "c", "d", "e"], [0, 2, 3]), pieces(["f"], [0]), batch(["g"]), EOF], clean: true },
    ]);
    const batches = [];
    try {
      for await (const item of agent.sandbox.followOutputBatches(7)) batches.push(item);
    } finally {
      await agent.close();
    }
    assert.deepEqual(
      batches.map((b) => [b.lines, b.continued]),
      [
        [["a", "b"], [0]],
        [["c", "d", "e"], [0, 1]],
        [["f"], [0]],
        [["g"], undefined],
      ],
    );
    assert.ok(!("continued" in batches[3]!));
    // Cut past its last piece, a batch has none left.
    const later = await startAgent([
      { chunks: [pieces(["a", "b"], [0])] },
      { chunks: [pieces(["a", "b", "c"], [0]), EOF], clean: true },
    ]);
    const rest = [];
    try {
      for await (const item of later.sandbox.followOutputBatches(7)) rest.push(item);
    } finally {
      await later.close();
    }
    assert.deepEqual(rest.map((b) => [b.lines, "continued" in b]), [[["a", "b"], true], [["c"], false]]);
  });

  it("opens again a stream cut cleanly without eof", async () => {
    const { lines, error, follows } = await follow([
      { chunks: [batch(numbered(1, 2))], clean: true },
      { chunks: [batch(numbered(1, 5)), EOF], clean: true },
    ]);
    assert.equal(error, null);
    assert.deepEqual(lines, numbered(1, 5));
    assert.equal(follows.length, 2);
  });

  it("ends after one more look when the server sends no eof", async () => {
    const { lines, error, follows } = await follow([{ chunks: [batch(numbered(1, 3))], clean: true }]);
    assert.equal(error, null);
    assert.deepEqual(lines, numbered(1, 3));
    assert.equal(follows.length, 2); // the second brought nothing new: the process is done
  });

  it("ends at eof without another request", async () => {
    const { lines, error, follows } = await follow([{ chunks: [batch(["x"]), EOF], clean: true }]);
    assert.equal(error, null);
    assert.deepEqual(lines, ["x"]);
    assert.equal(follows.length, 1);
  });

  it("throws at once when the process is unknown on reconnect", async () => {
    const { lines, error, follows } = await follow([
      { chunks: [batch(numbered(1, 3))] },
      { status: 404, json: { error: "process 7 not found", code: "NOT_FOUND" } },
    ]);
    assert.deepEqual(lines, numbered(1, 3));
    assert.ok(error instanceof RemoteAPIError && error.statusCode === 404 && /process 7 not found/.test(error.message), String(error));
    assert.equal(follows.length, 2);
  });

  it("throws at once when the sandbox is gone on reconnect", async () => {
    let { lines, error, follows } = await follow([
      { chunks: [batch(numbered(1, 3))] },
      { status: 404, json: { message: "sandbox sbx1 is terminated", code: "NOT_FOUND" } },
    ]);
    assert.deepEqual(lines, numbered(1, 3));
    assert.ok(error instanceof RemoteAPIError && /terminated/.test(error.message), String(error));
    assert.equal(follows.length, 2);
    ({ error } = await follow([
      { chunks: [batch(["a"])] },
      { status: 404, json: { message: "no sandbox sbx1", code: "SANDBOX_NOT_FOUND" } },
    ]));
    assert.ok(error instanceof SandboxNotFoundError, String(error));
  });

  it("throws the not-ready answer of a sandbox that stays suspended", async () => {
    const { lines, error } = await follow([
      { chunks: [batch(["a"])] },
      { status: 503, json: { message: "sandbox sbx1 is suspended, not running", code: "SANDBOX_NOT_READY" } },
    ]);
    assert.deepEqual(lines, ["a"]);
    assert.ok(error instanceof RemoteAPIError && error.code === "SANDBOX_NOT_READY", String(error));
  });

  it("bounds the reconnects that bring nothing new", async () => {
    const { lines, error, follows } = await follow([{ chunks: [batch(["a", "b"])] }]);
    assert.deepEqual(lines, ["a", "b"]);
    assert.ok(error instanceof SandboxConnectionError, String(error));
    assert.equal(follows.length, 1 + FOLLOW_RECONNECTS);
    assert.deepEqual(sleeps, [...FOLLOW_BACKOFF_MS]);
  });

  it("counts opens that cannot connect against the budget", async () => {
    const { lines, error, follows } = await follow([{ chunks: [batch(["a"])] }, { refuse: true }]);
    assert.deepEqual(lines, ["a"]);
    assert.ok(error instanceof SandboxConnectionError, String(error));
    // Each open tries GET_ATTEMPTS times (its own retries); each failed open spends one reconnect.
    assert.equal(follows.length, 1 + FOLLOW_RECONNECTS * GET_ATTEMPTS);
    const retries = Array.from({ length: GET_ATTEMPTS - 1 }, (_, i) => 200 * 2 ** i);
    assert.deepEqual(sleeps, FOLLOW_BACKOFF_MS.flatMap((ms) => [ms, ...retries]));
  });

  it("renews the budget with every new line", async () => {
    const total = 3 * FOLLOW_RECONNECTS;
    const scripts: Script[] = Array.from({ length: total }, (_, n) => ({ chunks: [batch(numbered(1, n + 1))] }));
    scripts.push({ chunks: [batch(numbered(1, total)), EOF], clean: true });
    const { lines, error } = await follow(scripts);
    assert.equal(error, null);
    assert.deepEqual(lines, numbered(1, total));
  });

  it("opens nothing more once the caller stops", async () => {
    const agent = await startAgent([{ chunks: [batch(numbered(1, 3))] }]);
    try {
      for await (const event of agent.sandbox.followOutput(7)) {
        assert.equal(event.line, "line1");
        break;
      }
      await pause(20);
      assert.equal(agent.follows.length, 1);
    } finally {
      await agent.close();
    }
  });
});

describe("follow streams after lines the output buffer dropped", () => {
  /** Runs `body` and answers the process warnings emitted meanwhile (and those its ticks bring). */
  async function warningsOf(body: () => Promise<void>): Promise<Error[]> {
    const warnings: Error[] = [];
    const listen = (warning: Error) => warnings.push(warning);
    process.on("warning", listen);
    try {
      await body();
      await new Promise((resolve) => setImmediate(resolve)); // emitWarning emits on a later tick
    } finally {
      process.off("warning", listen);
    }
    return warnings;
  }

  const code = (warning: Error) => (warning as Error & { code?: string }).code;

  it("warns once per batch that says so on the per-line follows, and yields every line", async () => {
    // Lines 3-122 went while the follower was behind; the block holds a batch after them too.
    const gap = droppedBatch(numbered(123, 124), 120, 124) + batch(numbered(125, 126), "stdout", 126);
    const scripts: Script[] = [{ chunks: [batch(numbered(1, 2), "stdout", 2), gap, EOF], clean: true }];
    for (const method of ["followOutput", "followStdout"] as const) {
      let result: Awaited<ReturnType<typeof follow>> | undefined;
      const warnings = await warningsOf(async () => {
        result = await follow(scripts, method);
      });
      assert.equal(result!.error, null);
      assert.deepEqual(result!.lines, [...numbered(1, 2), ...numbered(123, 126)], method);
      const ours = warnings.filter((warning) => code(warning) === OUTPUT_DROPPED_WARNING);
      assert.equal(ours.length, 1, method);
      assert.equal(ours[0]!.name, "Warning");
      assert.match(ours[0]!.message, /^follow of process 7: 120 lines of output were dropped before this follower read them/);
      assert.match(ours[0]!.message, /16 MiB/);
    }
  });

  it("warns for each connection's dropped lines", async () => {
    const warnings = await warningsOf(async () => {
      const { lines, error } = await follow([
        { chunks: [droppedBatch(["line5"], 4, 5)] },
        { chunks: [droppedBatch(["line7"], 1, 7), EOF], clean: true },
      ]);
      assert.equal(error, null);
      assert.deepEqual(lines, ["line5", "line7"]);
    });
    const messages = warnings.filter((warning) => code(warning) === OUTPUT_DROPPED_WARNING).map((warning) => warning.message);
    assert.equal(messages.length, 2);
    assert.match(messages[0]!, /: 4 lines of output were dropped/);
    assert.match(messages[1]!, /: 1 line of output was dropped/);
  });

  it("does not warn when no batch says so, nor on the batch follow, which gives the count", async () => {
    const plain: Script[] = [{ chunks: [batch(numbered(1, 3), "stdout", 3), EOF], clean: true }];
    const dropped: Script[] = [{ chunks: [batch(numbered(1, 2), "stdout", 2), droppedBatch(["line9"], 6, 9), EOF], clean: true }];
    const batches: number[] = [];
    const warnings = await warningsOf(async () => {
      assert.deepEqual((await follow(plain)).lines, numbered(1, 3));
      const agent = await startAgent(dropped);
      try {
        for await (const item of agent.sandbox.followOutputBatches(7)) batches.push(item.dropped);
      } finally {
        await agent.close();
      }
    });
    assert.deepEqual(batches, [0, 6]);
    assert.deepEqual(warnings.filter((warning) => code(warning) === OUTPUT_DROPPED_WARNING), []);
  });
});

describe("FollowResume", () => {
  it("counts the lines dropped before the follower read them, over its connections", () => {
    const follow = new FollowResume();
    assert.equal(follow.dropped, 0);
    follow.lost(120);
    assert.ok(follow.broke());
    follow.pause();
    follow.lost(3);
    assert.equal(follow.dropped, 123);
  });

  it("skips what was handed out, by count", () => {
    const follow = new FollowResume();
    follow.handedOut(3);
    assert.ok(follow.broke());
    assert.equal(follow.pause(), FOLLOW_BACKOFF_MS[0]);
    assert.equal(follow.skip, 3);
    assert.equal(follow.reconnects, 1);
    follow.handedOut(1); // a new line after the replay
    assert.ok(!follow.ended(false)); // cut without eof: open again, at once
    assert.equal(follow.pause(), 0);
    assert.ok(follow.ended(false)); // nothing new and no eof again: a server without eof, done
  });

  it("gives up after FOLLOW_RECONNECTS breaks without a new line, and a new line renews it", () => {
    const follow = new FollowResume();
    const pauses: number[] = [];
    for (let i = 0; i < FOLLOW_RECONNECTS; i++) {
      assert.ok(follow.broke());
      pauses.push(follow.pause());
    }
    assert.deepEqual(pauses, [...FOLLOW_BACKOFF_MS]);
    assert.ok(!follow.broke());
    const steady = new FollowResume();
    for (let i = 0; i < 3 * FOLLOW_RECONNECTS; i++) {
      assert.ok(steady.broke());
      steady.pause();
      steady.handedOut(1);
    }
  });
});
