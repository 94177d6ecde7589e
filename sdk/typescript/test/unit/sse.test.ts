import assert from "node:assert/strict";
import { describe, it } from "node:test";

import { SandboxConnectionError, SandboxError } from "../../src/errors.js";
import { collectRun, iterLines, iterOutputEvents, SSEDecoder } from "../../src/sse.js";

const encoder = new TextEncoder();

async function* chunksOf(...parts: (string | Uint8Array)[]): AsyncGenerator<Uint8Array> {
  for (const part of parts) yield typeof part === "string" ? encoder.encode(part) : part;
}

/** Split a text into chunks of `size` bytes (so boundaries fall anywhere, even inside characters). */
async function* bytewise(text: string, size: number): AsyncGenerator<Uint8Array> {
  const bytes = encoder.encode(text);
  for (let i = 0; i < bytes.length; i += size) yield bytes.subarray(i, i + size);
}

async function collect<T>(items: AsyncIterable<T>): Promise<T[]> {
  const out: T[] = [];
  for await (const item of items) out.push(item);
  return out;
}

const RUN_STREAM =
  "event: started\n" +
  'data: {"pid": 1000, "started_at": 1795711162444}\n\n' +
  ": keep-alive\n\n" +
  "event: output\n" +
  'data: {"line": "héllo wörld", "timestamp": 1795711162444, "stream": "stdout"}\n\n' +
  'data: {"line": "oops", "timestamp": 1795711162444, "stream": "stderr"}\n\n' +
  'data: {"line": "second", "timestamp": 1795711162444}\n\n' +
  "event: exit\n" +
  'data: {"exit_code": 3, "signal": null, "oom_killed": false, "reason": "exited"}\n\n';

describe("line splitting", () => {
  it("splits on \\n, \\r\\n and \\r, even across chunk boundaries", async () => {
    const lines = await collect(iterLines(chunksOf("a\r", "\nb\rc\n", "d\r\n\r", "\ne", "")));
    assert.deepEqual(lines, ["a", "b", "c", "d", "", "e"]);
  });

  it("decodes UTF-8 split inside a character", async () => {
    const lines = await collect(iterLines(bytewise("ünïcödé ✓\nnext\n", 1)));
    assert.deepEqual(lines, ["ünïcödé ✓", "next"]);
  });

  it("keeps a final \\r as a line end", async () => {
    assert.deepEqual(await collect(iterLines(chunksOf("x\r"))), ["x"]);
  });
});

describe("SSE decoding", () => {
  it("ignores event:, id:, retry: lines and comments, and joins data lines", () => {
    const decoder = new SSEDecoder();
    const lines = ["event: output", "id: 7", "retry: 100", ": comment", 'data: {"a":', "data: 1}", ""];
    const events = lines.flatMap((line) => decoder.feed(line));
    assert.deepEqual(events, [{ a: 1 }]);
  });

  it("skips data that is not a JSON object", () => {
    const decoder = new SSEDecoder();
    assert.deepEqual(["data: [1,2]", ""].flatMap((l) => decoder.feed(l)), []);
    assert.deepEqual(["data: hello", ""].flatMap((l) => decoder.feed(l)), []);
    assert.deepEqual(["data:{}", ""].flatMap((l) => decoder.feed(l)), [{}]);
  });

  it("tolerates a missing blank line between events", () => {
    const decoder = new SSEDecoder();
    const events = ['data: {"line": "a"}', 'data: {"line": "b"}', ""].flatMap((l) => decoder.feed(l));
    assert.deepEqual(events, [{ line: "a" }, { line: "b" }]);
  });
});

describe("run streams", () => {
  it("collects stdout, stderr, pid and the exit code", async () => {
    for (const size of [1, 3, 7, 64, 100000]) {
      const result = await collectRun(bytewise(RUN_STREAM, size));
      assert.deepEqual(result, {
        stdout: "héllo wörld\nsecond",
        stderr: "oops",
        exitCode: 3,
        signal: null,
        reason: "exited",
        pid: 1000,
      }, `chunks of ${size}`);
    }
  });

  it("reports a signal-only exit as -signal", async () => {
    const result = await collectRun(chunksOf('data: {"exit_code": null, "signal": 9, "reason": "timed_out"}\n\n'));
    assert.equal(result.exitCode, -9);
    assert.equal(result.signal, 9);
    assert.equal(result.reason, "timed_out");
  });

  it("takes a final event without its blank line", async () => {
    const result = await collectRun(chunksOf('data: {"line": "x", "timestamp": 1}\n\ndata: {"exit_code": 0}'));
    assert.equal(result.exitCode, 0);
    assert.equal(result.stdout, "x");
  });

  it("throws SandboxConnectionError when the stream ends without an exit event", async () => {
    await assert.rejects(
      collectRun(chunksOf('data: {"line": "x", "timestamp": 1}\n\n', 'data: {"exit_code": null, "signal": null}\n\n')),
      (error: unknown) => error instanceof SandboxConnectionError && /without an exit event/.test(String(error)),
    );
  });

  it("throws SandboxError for an error event", async () => {
    await assert.rejects(collectRun(chunksOf('data: {"error": "no such command", "code": "SPAWN_FAILED"}\n\n')), (error: unknown) =>
      error instanceof SandboxError && /SPAWN_FAILED.*no such command/.test(String(error)),
    );
  });
});

describe("follow streams", () => {
  it("yields lines, defaults their stream and ignores the eof event", async () => {
    const stream =
      'event: output\ndata: {"line": "a", "timestamp": 1795711162444}\n\n' +
      ": keep-alive\n\n" +
      'data: {"line": "b", "timestamp": "2026-11-26T18:00:00Z", "stream": "stdout"}\n\n' +
      "event: eof\ndata: {}\n\n";
    const events = await collect(iterOutputEvents(bytewise(stream, 5), "stderr"));
    assert.deepEqual(events.map((e) => [e.line, e.stream]), [["a", "stderr"], ["b", "stdout"]]);
    assert.equal(events[0]?.timestamp?.getTime(), 1795711162444);
  });
});
