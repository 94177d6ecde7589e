/**
 * SSE decoding, run collection and output events. The decoders take the body's bytes in chunks
 * and decode a block of events at a time; these tests compare them with the line-based reference
 * (`SSEDecoder` fed the lines of the whole body) over chunkings that cut the body everywhere:
 * inside a UTF-8 character, between "\r" and "\n", inside "data:", between the two newlines that
 * end an event.
 */

import assert from "node:assert/strict";
import { describe, it } from "node:test";

import { SandboxConnectionError, SandboxError } from "../../src/errors.js";
import { iterOutputBatches, iterOutputEvents, OutputEventDecoder } from "../../src/follow-stream.js";
import { outputEventFromWire, type CommandResult, type OutputEvent, type OutputStream } from "../../src/models.js";
import { collectRun, RunCollector } from "../../src/run-stream.js";
import { agentOutputEvent, decodeBlock, eachAgentOutput, SSEBlocks, SSEDecoder, type Event } from "../../src/sse.js";

const encoder = new TextEncoder();

async function* chunksOf(...parts: (string | Uint8Array)[]): AsyncGenerator<Uint8Array> {
  for (const part of parts) yield typeof part === "string" ? encoder.encode(part) : part;
}

async function* fromChunks(chunks: Uint8Array[]): AsyncGenerator<Uint8Array> {
  for (const chunk of chunks) yield chunk;
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

// -- bodies -------------------------------------------------------------------------------------

/** One event as the agent writes it: compact JSON, non-ASCII characters raw. */
function agentEvent(name: string, data: object): string {
  return `event: ${name}\ndata: ${JSON.stringify(data)}\n\n`;
}

function out(line: string, stream: OutputStream = "stdout", timestamp = 1767225600131): string {
  return agentEvent("output", { line, timestamp, stream });
}

/** An output_batch event as the agent writes it (fields in the order of its struct). */
function batch(lines: string[], stream: OutputStream = "stdout", timestamp = 1767225600131): string {
  return agentEvent("output_batch", { stream, timestamp, lines });
}

/** An output_batch event with a `dropped` after its lines, as the agent writes it (or another value there). */
function droppedBatch(lines: string[], dropped: unknown, stream: OutputStream = "stdout"): string {
  return agentEvent("output_batch", { stream, timestamp: 1767225600131, lines, dropped });
}

/** A batch as the agent writes it with the pieces of a cut line among its lines: `continued` last. */
function continuedBatch(lines: string[], continued: number[], stream: OutputStream = "stdout", dropped?: number): string {
  const timestamp = 1767225600131;
  const fields = dropped === undefined ? { stream, timestamp, lines, continued } : { stream, timestamp, lines, dropped, continued };
  return agentEvent("output_batch", fields);
}

/** A per-line event as the agent writes it for a piece of a cut line. */
function piece(line: string, stream: OutputStream = "stdout"): string {
  return agentEvent("output", { line, timestamp: 1767225600131, stream, continued: true });
}

const STARTED = agentEvent("started", { pid: 317, started_at: 1767225600123 });
const EXIT = agentEvent("exit", { exit_code: 3, signal: null, oom_killed: false, reason: "exited" });

/** Lines that are hard to carry: multi-byte UTF-8, escapes, empty, separators other than "\n". */
const TRICKY_LINES = [
  "hello",
  "",
  "é and 😀 and 中文",
  'quote " backslash \\ slash /',
  "tab\tcr\rnul\u0000esc\u001b",
  "line\u2028separator\u0085next\u000cff",
  "data: looks like a field",
  ": looks like a comment",
  "\\u0041 is not an escape here",
];

const AGENT_BODY = [
  STARTED,
  ...TRICKY_LINES.map((line) => out(line)),
  ": keep-alive\n\n",
  out("to stderr", "stderr"),
  out("", "stderr"),
  out("last", "stdout", 1767225600999),
  EXIT,
].join("");

const UNUSUAL_BODY = Buffer.concat([
  encoder.encode(
    ": keep-alive\n\n" +
      'event: output\nid: 7\nretry: 100\ndata: {"line": "a", "timestamp": 1}\n\n' +
      "data: not json\n\n" +
      "data: [1, 2]\n\n" +
      "data\n\n" +
      'data:{"line":"no space","timestamp":2,"stream":"stdout"}\n\n' +
      'data: {"line":\ndata: "multi-line", "timestamp": 3}\n\n' +
      'data: {"line": "no blank line", "timestamp": 4}\ndata: {"line": "between", "timestamp": 5}\n\n' +
      'data: {"line": "bad \\q escape", "timestamp": 6, "stream": "stdout"}\n\n' +
      'data: {"line":"bad \\q escape","timestamp":6,"stream":"stdout"}\n\n' +
      'data: {"line": "invalid utf-8 ',
  ),
  Uint8Array.from([0xff, 0xfe]),
  encoder.encode(
    '", "timestamp": 7}\n\n' +
      'data: {"line":"extra","timestamp":8,"stream":"stdout","x":1}\n\n' +
      'data: {"timestamp":9,"line":"reordered","stream":"stdout"}\n\n' +
      'data: {"line":"float time","timestamp":1767225600.5,"stream":"stdout"}\n\n' +
      'data: {"line":"no stream","timestamp":10}\n\n' +
      'data: {"line":"null stream","timestamp":10,"stream":null}\n\n' +
      "event: eof\ndata: {}\n\n" +
      'data: {"line": "unterminated", "timestamp": 11}',
  ),
]);

/** A follow stream with ?batch=true: batches of both streams, short lines and long, keep-alives, eof. */
const BATCH_BODY = [
  batch(TRICKY_LINES),
  ": keep-alive\n\n",
  batch(["to stderr", ""], "stderr"),
  batch(["one"], "stdout", 1767225600999),
  batch(Array.from({ length: 50 }, (_, i) => String(i)), "stdout", 1767225601000),
  batch(["and stderr, read at the same time"], "stderr", 1767225601000),
  batch(["short", "a line of thirteen or more characters", "é 😀"], "stdout", 1767225601001),
  agentEvent("eof", {}),
].join("");

/** Batches a server could send that the agent does not: other layouts, odd fields, mixed forms. */
const UNUSUAL_BATCH_BODY = Buffer.concat([
  encoder.encode(
    'data: {"lines": ["spaced", "out"], "stream": "stdout", "timestamp": 1}\n\n' +
      'data: {"stream":"stdout","timestamp":2,"lines":["plain"]}\n\n' +
      'data: {"timestamp":3,"lines":["stream omitted"]}\n\n' +
      'data: {"stream":null,"timestamp":3,"lines":["null stream"]}\n\n' +
      'data: {"stream":"stdout","lines":["no timestamp"]}\n\n' +
      'data: {"stream":"stdout","timestamp":"2026-01-01T00:00:00Z","lines":["iso time"]}\n\n' +
      'data: {"stream":"stdout","timestamp":1767225600.5,"lines":["float time"]}\n\n' +
      'data: {"stream":"stdout","timestamp":true,"lines":["bool time"]}\n\n' +
      'data: {"stream":5,"timestamp":4,"lines":["number stream"]}\n\n' +
      'data: {"stream":"stdout","timestamp":5,"lines":["a",7,null,"b"]}\n\n' +
      'data: {"stream":"stdout","timestamp":5,"lines":["a",","]}\n\n' +
      'data: {"stream":"stdout","timestamp":6,"lines":[]}\n\n' +
      'data: {"stream":"stdout","timestamp":6,"lines":"not a list"}\n\n' +
      'data: {"stream":"stdout","timestamp":6,"lines":["bad \\q escape"]}\n\n' +
      'data: {"stream":"stdout","timestamp":6,"lines":["x"],"extra":1}\n\n' +
      'data: {"line":"per-line","timestamp":7,"stream":"stderr"}\n\n' +
      'data: {"stream":"stdout","timestamp":8,"lines":["after per-line"]}\n' +
      'data: {"stream":"stdout","timestamp":8,"lines":["no blank line"]}\n\n' +
      'data: {"stream":"stdout","timestamp":9,"lines":["invalid utf-8 ',
  ),
  Uint8Array.from([0xff]),
  encoder.encode(
    '"]}\n\n' +
      "event: eof\ndata: {}\n\n" +
      'data: {"stream":"stdout","timestamp":10,"lines":["unterminated"]}',
  ),
]);

/** Batches that say lines were dropped before them, in the agent's layout and another, then odd values (none). */
const DROPPED_BATCHES: [string, number][] = [
  [batch(["a", "b"]), 0],
  [droppedBatch(["c"], 120), 120],
  [batch(["d"], "stderr"), 0],
  [droppedBatch(["e", "f"], 1, "stderr"), 1],
  [batch(['"dropped":7', '"],"dropped":5}']), 0], // in a line, the key's quotes are escaped
  ['data: {"lines": ["spaced"], "dropped": 3, "stream": "stdout", "timestamp": 1}\n\n', 3],
  ...[0, -5, 1.5, "7", null, 2 ** 53].map((value): [string, number] => [droppedBatch(["odd"], value), 0]),
  [droppedBatch(["last"], 9007199254740991), 9007199254740991],
];
const DROPPED_BATCH_BODY = DROPPED_BATCHES.map(([event]) => event).join("") + agentEvent("eof", {});

/**
 * Lines the agent cut (over 1 MiB; short here): pieces marked `continued` in batches (within one,
 * across batches, after `dropped`) and per-line events, the other stream's lines between them,
 * escapes; then other layouts and odd values (no piece but index 0 of `o1`, `s1`).
 */
const CONTINUED_OUTPUT = [
  batch(["before"]),
  continuedBatch(["aaa", "bbb"], [0, 1]),
  batch(["e1"], "stderr"),
  continuedBatch(["p1"], [0], "stderr"),
  batch(["ccc", "next"]),
  continuedBatch(["x"], [0], "stdout", 3),
  out("yy"),
  piece("p2", "stderr"),
  out("o"),
  out("p3", "stderr"),
  continuedBatch(['tab\there "é', "😀", "end"], [0]),
  'data: {"lines": ["s1", "s2"], "continued": [0], "stream": "stdout", "timestamp": 1}\n\n',
  'data: {"stream":"stdout","timestamp":1,"lines":["o1",7,"o2"],"continued":[0,5,"1",1.5,-1]}\n\n',
  'data: {"stream":"stdout","timestamp":1,"lines":["z"],"continued":"all"}\n\n',
  'data: {"line":"w","timestamp":1,"stream":"stdout","continued":1}\n\n',
].join("");
const CONTINUED_BODY = CONTINUED_OUTPUT + agentEvent("eof", {});
/** What `run()` makes of CONTINUED_OUTPUT: each cut line whole (the batch holding a 7 is skipped, as any such batch). */
const CONTINUED_STDOUT = ["before", "aaabbbccc", "next", "xyy", "o", 'tab\there "é😀', "end", "s1s2", "z", "w"].join("\n");
const CONTINUED_STDERR = "e1\np1p2p3";

function withLineEnds(body: Uint8Array, end: string): Uint8Array {
  return Buffer.from(Buffer.from(body).toString("latin1").replaceAll("\n", end), "latin1");
}

const BODIES: Record<string, Uint8Array> = {
  agent: encoder.encode(AGENT_BODY),
  "agent, CRLF": withLineEnds(encoder.encode(AGENT_BODY), "\r\n"),
  "agent, CR": withLineEnds(encoder.encode(AGENT_BODY), "\r"),
  unusual: UNUSUAL_BODY,
  "unusual, CRLF": withLineEnds(UNUSUAL_BODY, "\r\n"),
  batches: encoder.encode(BATCH_BODY),
  "batches, CRLF": withLineEnds(encoder.encode(BATCH_BODY), "\r\n"),
  "unusual batches": UNUSUAL_BATCH_BODY,
  "batches after dropped lines": encoder.encode(DROPPED_BATCH_BODY),
  "pieces of cut lines": encoder.encode(CONTINUED_BODY),
};

/** A small deterministic generator, for random chunk sizes that are the same on every run. */
function prng(seed: number): () => number {
  let state = seed;
  return () => {
    state = (state * 1103515245 + 12345) % 2147483648;
    return state / 2147483648;
  };
}

/** The body whole, cut in two at every position, byte by byte, and in random pieces. */
function* chunkings(body: Uint8Array): Generator<Uint8Array[]> {
  yield [body];
  for (let cut = 1; cut < body.length; cut++) yield [body.subarray(0, cut), body.subarray(cut)];
  yield Array.from({ length: body.length }, (_, i) => body.subarray(i, i + 1));
  const random = prng(7);
  for (let round = 0; round < 20; round++) {
    const chunks: Uint8Array[] = [];
    for (let start = 0; start < body.length; ) {
      const size = Math.floor(random() * 41); // empty chunks included
      chunks.push(body.subarray(start, start + size));
      start += size;
    }
    yield chunks;
  }
}

// -- references: the line-based decoding of the whole body ----------------------------------------

function referenceEvents(body: Uint8Array): Event[] {
  const decoder = new SSEDecoder();
  const events: Event[] = [];
  for (const line of new TextDecoder().decode(body).split(/\r\n|\r|\n/)) events.push(...decoder.feed(line));
  return [...events, ...decoder.flush()];
}

function referenceRun(body: Uint8Array): CommandResult {
  const collector = new RunCollector();
  for (const event of referenceEvents(body)) if (collector.add(event)) break;
  return collector.result();
}

/**
 * The `output` events an event stands for: one per line of a batch (its `lines` a list), a line
 * its `continued` names marked `"continued": true`, as the agent's per-line event is; else itself.
 */
function batchAsEvents(event: Event): Event[] {
  if (!Array.isArray(event.lines)) return [event];
  const { lines, continued, ...rest } = event;
  const pieces = new Set(Array.isArray(continued) ? continued : []);
  return (lines as unknown[]).map((line, index) => (pieces.has(index) ? { ...rest, line, continued: true } : { ...rest, line }));
}

function referenceOutput(body: Uint8Array, defaultStream: OutputStream | null): OutputEvent[] {
  return referenceEvents(body)
    .flatMap(batchAsEvents)
    .map((event) => outputEventFromWire(event, defaultStream))
    .filter((event): event is OutputEvent => event !== null);
}

function blockEvents(chunks: Uint8Array[]): Event[] {
  const blocks = new SSEBlocks();
  const events: Event[] = [];
  for (const chunk of chunks) {
    const block = blocks.feed(chunk);
    if (block !== null) events.push(...decodeBlock(block));
  }
  return [...events, ...decodeBlock(blocks.close())];
}

function describeChunks(chunks: Uint8Array[]): string {
  return JSON.stringify(chunks.map((chunk) => Buffer.from(chunk).toString("latin1")));
}

// -- the line-based decoder -----------------------------------------------------------------------

describe("SSE decoding, line by line", () => {
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

// -- blocks ---------------------------------------------------------------------------------------

describe("SSE blocks", () => {
  for (const [name, body] of Object.entries(BODIES)) {
    it(`decode like the line decoder however the body is cut (${name})`, () => {
      const want = referenceEvents(body);
      assert.ok(want.length > 5);
      for (const chunks of chunkings(body)) assert.deepEqual(blockEvents(chunks), want, describeChunks(chunks));
    });
  }

  it("start with a newline and end at a blank line", () => {
    const blocks = new SSEBlocks();
    const feed = (text: string) => blocks.feed(encoder.encode(text));
    assert.equal(feed("data: 1\n"), null);
    assert.equal(feed("\ndata: 2\n\nda"), "\ndata: 1\n\ndata: 2\n");
    assert.equal(feed("ta: 3\n"), null);
    assert.equal(feed("\n"), "\ndata: 3\n"); // the blank line starts the next chunk
    assert.equal(feed("data: 4\r"), null); // the "\r" ends the line at once...
    assert.equal(feed("\n"), null); // ...and this "\n" is the rest of its "\r\n"
    assert.equal(feed("\r"), "\ndata: 4\n"); // a blank line, without waiting for a "\n"
    assert.equal(blocks.close(), "\n");
  });

  it("of the agent's output events are recognised whole, and nothing else is", () => {
    const event = agentOutputEvent({ line: true, stream: true });
    const walk = (text: string) => {
      const seen: string[] = [];
      return eachAgentOutput(text, event, (match) => seen.push(`${match[2]}:${match[1]}`)) ? seen : null;
    };
    const blocks = new SSEBlocks();
    const block = blocks.feed(encoder.encode(TRICKY_LINES.map((line) => out(line)).join("") + out("e", "stderr") + "event: out"));
    assert.deepEqual(walk(block!), [...TRICKY_LINES.map((line) => `stdout:${JSON.stringify(line).slice(1, -1)}`), "stderr:e"]);
    for (const other of [
      `\n: keep-alive\n${out("a")}`, // a comment among the events
      `\nid: 1\ndata: {"line":"a","timestamp":1,"stream":"stdout"}\n`, // another field
      '\ndata: {"line":"a","timestamp":1,"stream":"stdout","x":1}\n', // another key
      '\ndata: {"line":"a", "timestamp":1,"stream":"stdout"}\n', // a space
      '\ndata: {"line":"a","timestamp":1.5,"stream":"stdout"}\n', // not an integer
      '\ndata: {"line":"a","timestamp":1,"stream":"other"}\n', // another stream
      '\ndata: {"line":"a\tb","timestamp":1,"stream":"stdout"}\n', // a raw control character
      '\ndata: {"line":"a","timestamp":1,"stream":"stdout"}', // unterminated
    ]) {
      assert.equal(walk(other), null, JSON.stringify(other));
    }
  });

  it("count a lone \\r at the end of the stream as a line end", () => {
    assert.deepEqual(blockEvents([encoder.encode('data: {"a": 1}\r')]), [{ a: 1 }]);
  });

  it("decode UTF-8 split inside a character", async () => {
    const events = await collect(iterOutputEvents(bytewise(out("ünïcödé ✓ 😀") + out("next"), 1), null));
    assert.deepEqual(events.map((e) => e.line), ["ünïcödé ✓ 😀", "next"]);
  });
});

// -- run ------------------------------------------------------------------------------------------

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

describe("run streams", () => {
  it("collects stdout, stderr, pid and the exit code", async () => {
    for (const size of [1, 3, 7, 64, 100000]) {
      const result = await collectRun(bytewise(RUN_STREAM, size));
      assert.deepEqual(
        result,
        { stdout: "héllo wörld\nsecond", stderr: "oops", exitCode: 3, signal: null, reason: "exited", pid: 1000 },
        `chunks of ${size}`,
      );
    }
  });

  for (const name of ["agent", "agent, CRLF", "agent, CR"]) {
    it(`collects like the line decoder however the body is cut (${name})`, async () => {
      const body = BODIES[name]!;
      const want = referenceRun(body);
      assert.equal(want.stdout, [...TRICKY_LINES, "last"].join("\n"));
      assert.equal(want.stderr, "to stderr\n");
      for (const chunks of chunkings(body)) assert.deepEqual(await collectRun(fromChunks(chunks)), want, describeChunks(chunks));
    });
  }

  it("puts each line the agent cut back together, however the body is cut", async () => {
    const body = encoder.encode(STARTED + CONTINUED_OUTPUT + EXIT);
    const want = referenceRun(body);
    assert.deepEqual([want.stdout, want.stderr], [CONTINUED_STDOUT, CONTINUED_STDERR]);
    for (const chunks of chunkings(body)) assert.deepEqual(await collectRun(fromChunks(chunks)), want, describeChunks(chunks));
  });

  it("joins a piece to the next line of its stream only, in blocks taken at once or event by event", async () => {
    // Blocks of plain events or batches (taken at once) after a block that ends with a piece.
    const cases: [string[], string, string][] = [
      [[piece("a"), out("b") + out("c")], "ab\nc", ""],
      [[piece("a"), batch(["b", "c"])], "ab\nc", ""],
      [[continuedBatch(["a"], [0]), out("x", "stderr") + out("b")], "ab", "x"],
      [[continuedBatch(["a"], [0]), batch(["x"], "stderr") + batch(["b"])], "ab", "x"],
      [[piece("e", "stderr") + out("a"), out("f", "stderr") + out("b", "stderr")], "a", "ef\nb"],
      [[out("a") + continuedBatch(["b", "c", "d"], [0, 1]) + out("e")], "a\nbcd\ne", ""],
      // A piece last in its batch: the next batch of its stream in the same block goes on from it.
      [[continuedBatch(["a", "b"], [1]) + continuedBatch(["x"], [0], "stderr") + batch(["c"]) + batch(["y"], "stderr")], "a\nbc", "xy"],
    ];
    for (const [blocks, stdout, stderr] of cases) {
      const result = await collectRun(chunksOf(...blocks, EXIT));
      assert.deepEqual([result.stdout, result.stderr], [stdout, stderr], blocks.join(""));
    }
  });

  it("collects unusual events like the line decoder", async () => {
    const body = Buffer.from(
      Buffer.from(UNUSUAL_BODY).toString("latin1").replace("event: eof", 'data: {"exit_code": 0}\n\nevent: eof'),
      "latin1",
    );
    const want = referenceRun(body);
    assert.ok(!want.stdout.includes("bad \\q escape") && want.stdout.includes("invalid utf-8 \ufffd\ufffd"));
    for (const chunks of chunkings(body)) assert.deepEqual(await collectRun(fromChunks(chunks)), want);
  });

  it("notices anything but one stream's events in a block taken at once", async () => {
    const bodies = [
      out("a") + out("b"),
      out("a", "stderr") + out("b", "stderr"),
      out("a") + "event: output\ndata: {\"line\":\"b\",\"timestamp\":1,\"stream\":\"stdout\"}\nab\n\n" + out("c"),
      out("a") + "event: output\ndata: {\"line\":\"b\",\"timestamp\":1,\"stream\":\"stdout\"}\nab\n\n",
      out("a") + out('"stream":"stderr"') + out("c"),
      out("a") + ": keep-alive\n\n" + out("b"),
      out("a\\") + out("b"),
    ];
    for (const text of bodies) {
      const body = encoder.encode(text + EXIT);
      const want = referenceRun(body);
      for (const chunks of chunkings(body)) assert.deepEqual(await collectRun(fromChunks(chunks)), want, text);
    }
  });

  it("skips a line with an invalid escape and keeps the others", async () => {
    const bad = 'event: output\ndata: {"line":"bad \\q","timestamp":1,"stream":"stdout"}\n\n';
    assert.equal((await collectRun(chunksOf(out("a") + bad + out("b") + EXIT))).stdout, "a\nb");
  });

  it("carries escapes and surrogates like JSON", async () => {
    const lines = ['"\\/\b\f\n\r\t', "😀", "\ud800 lone surrogate", "é"];
    const escaped = lines
      .map((line) => `event: output\ndata: ${JSON.stringify({ line, timestamp: 1, stream: "stdout" }).replace(/[^\x00-\x7f]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, "0")}`)}\n\n`)
      .join("");
    assert.equal((await collectRun(chunksOf(escaped + EXIT))).stdout, lines.join("\n"));
  });

  it("keeps each stream in order, and empty lines", async () => {
    const numbers = Array.from({ length: 1000 }, (_, i) => i);
    const body = numbers.map((i) => out(String(i), i % 3 === 0 ? "stderr" : "stdout")).join("");
    const result = await collectRun(chunksOf(out(""), out(""), body, EXIT));
    assert.equal(result.stdout, "\n\n" + numbers.filter((i) => i % 3 !== 0).join("\n"));
    assert.equal(result.stderr, numbers.filter((i) => i % 3 === 0).join("\n"));
  });

  it("costs linear time for a very long line", async () => {
    const line = "x".repeat(8 * 1024 * 1024);
    const start = performance.now();
    const result = await collectRun(bytewise(out(line) + EXIT, 4096));
    assert.ok(performance.now() - start < 5000, "joined once: quadratic joining would take minutes");
    assert.equal(result.stdout, line);
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

  it("reads the body to its end after the exit event, so the connection can be kept", async () => {
    let ended = false;
    async function* stream(): AsyncGenerator<Uint8Array> {
      yield encoder.encode(out("x"));
      yield encoder.encode(agentEvent("exit", { exit_code: 0 }));
      ended = true;
    }
    assert.equal((await collectRun(stream())).stdout, "x");
    assert.ok(ended);
  });

  it("keeps its result when more data or an error follows the exit event, and reads no further", async () => {
    let readPast = false;
    async function* more(): AsyncGenerator<Uint8Array> {
      yield encoder.encode(out("x") + agentEvent("exit", { exit_code: 0 }));
      yield encoder.encode('data: {"error": "after the exit"}\n\n');
      readPast = true;
    }
    assert.equal((await collectRun(more())).stdout, "x");
    assert.equal(readPast, false);
  });

  it("stops at the exit event, and cancels the rest", async () => {
    let cancelled = false;
    async function* stream(): AsyncGenerator<Uint8Array> {
      try {
        // What follows the exit event in its chunk is not looked at either.
        yield encoder.encode(out("x") + agentEvent("exit", { exit_code: 0 }) + 'data: {"error": "after the exit"}\n\n');
        throw new Error("read past the exit event");
      } finally {
        cancelled = true;
      }
    }
    assert.equal((await collectRun(stream())).stdout, "x");
    assert.ok(cancelled);
  });

  it("throws SandboxConnectionError when the stream ends without an exit event", async () => {
    await assert.rejects(
      collectRun(chunksOf('data: {"line": "x", "timestamp": 1}\n\n', 'data: {"exit_code": null, "signal": null}\n\n')),
      (error: unknown) => error instanceof SandboxConnectionError && /without an exit event/.test(String(error)),
    );
  });

  it("throws SandboxError for an error event", async () => {
    await assert.rejects(collectRun(chunksOf(out("before"), 'data: {"error": "no such command", "code": "SPAWN_FAILED"}\n\n')), (error: unknown) =>
      error instanceof SandboxError && /SPAWN_FAILED.*no such command/.test(String(error)),
    );
  });
});

// -- follow ---------------------------------------------------------------------------------------

describe("follow streams", () => {
  for (const [name, body] of Object.entries(BODIES)) {
    for (const defaultStream of [null, "stdout"] as const) {
      it(`yield the events the line decoder finds however the body is cut (${name}, ${defaultStream})`, async () => {
        const want = referenceOutput(body, defaultStream);
        for (const chunks of chunkings(body)) {
          assert.deepEqual(await collect(iterOutputEvents(fromChunks(chunks), defaultStream)), want, describeChunks(chunks));
        }
      });
    }
  }

  for (const [name, body] of Object.entries(BODIES)) {
    it(`yield batches holding the events however the body is cut (${name})`, async () => {
      const flat = (items: { line: string; timestamp: Date | null; stream: string | null; continued?: boolean }[]) =>
        items.map((e) => [e.line, e.timestamp?.getTime() ?? null, e.stream, e.continued === true]);
      const want = flat(referenceOutput(body, null));
      for (const chunks of chunkings(body)) {
        const batches = await collect(iterOutputBatches(fromChunks(chunks), null));
        assert.ok(batches.every((b) => b.lines.length > 0));
        assert.ok(batches.every((b) => !("continued" in b) || b.continued!.length > 0), "no empty `continued`");
        const lines = batches.flatMap((b) =>
          b.lines.map((line, i) => ({ line, timestamp: b.timestamp, stream: b.stream, continued: b.continued?.includes(i) })),
        );
        assert.deepEqual(flat(lines), want, describeChunks(chunks));
      }
    });
  }

  it("yields the agent's batches as they are, and groups per-line events of one read", async () => {
    const body = batch(["a", "b"]) + batch(["c"], "stderr") + batch(["d"]) + agentEvent("eof", {});
    const batches = await collect(iterOutputBatches(chunksOf(body), null));
    assert.deepEqual(
      batches.map((b) => [b.lines, b.stream, b.timestamp?.getTime()]),
      [
        [["a", "b"], "stdout", 1767225600131],
        [["c"], "stderr", 1767225600131],
        [["d"], "stdout", 1767225600131],
      ],
    );
    assert.deepEqual(Object.keys(batches[0]!), ["lines", "timestamp", "stream", "dropped"]);
    assert.ok(batches.every((b) => b.dropped === 0));
    const perLine = out("a") + out("b") + out("c", "stderr") + out("d", "stdout", 1767225600999);
    const grouped = await collect(iterOutputBatches(chunksOf(perLine), null));
    assert.deepEqual(
      grouped.map((b) => [b.lines, b.stream, b.dropped]),
      [
        [["a", "b"], "stdout", 0],
        [["c"], "stderr", 0],
        [["d"], "stdout", 0],
      ],
    );
  });

  it("give each batch the lines dropped before it: a positive integer, else 0, however the body is cut", async () => {
    const body = encoder.encode(DROPPED_BATCH_BODY);
    const want = DROPPED_BATCHES.map(([, dropped]) => dropped);
    for (const chunks of chunkings(body)) {
      const batches = await collect(iterOutputBatches(fromChunks(chunks), null));
      assert.deepEqual(batches.map((b) => b.dropped), want, describeChunks(chunks));
    }
    // A batch of the agent's layout with it (the fast path), and in a block of such batches only.
    const [agent] = await collect(iterOutputBatches(chunksOf(droppedBatch(["x", "y"], 42, "stderr")), null));
    assert.deepEqual(agent, { lines: ["x", "y"], timestamp: new Date(1767225600131), stream: "stderr", dropped: 42 });
    const mixed = batch(["a"]) + droppedBatch(["b"], 5) + batch(["c"]);
    const batches = await collect(iterOutputBatches(chunksOf(mixed), null));
    assert.deepEqual(batches.map((b) => [b.lines, b.dropped]), [[["a"], 0], [["b"], 5], [["c"], 0]]);
    // The per-line events of those batches are all there (the count has no place in an event).
    const events = await collect(iterOutputEvents(chunksOf(mixed), null));
    assert.deepEqual(events.map((e) => e.line), ["a", "b", "c"]);
    assert.deepEqual(Object.keys(events[1]!), ["line", "timestamp", "stream"]);
  });

  it("mark the pieces of a cut line `continued: true`, and leave the field out on the other lines", async () => {
    const body = continuedBatch(["a", "b", "c"], [1]) + batch(["d"]) + piece("e", "stderr") + out("f", "stderr");
    for (const chunks of chunkings(encoder.encode(body))) {
      const events = await collect(iterOutputEvents(fromChunks(chunks), null));
      assert.deepEqual(
        events.map((e) => [e.line, e.stream, "continued" in e ? e.continued : "absent"]),
        [
          ["a", "stdout", "absent"],
          ["b", "stdout", true],
          ["c", "stdout", "absent"],
          ["d", "stdout", "absent"],
          ["e", "stderr", true],
          ["f", "stderr", "absent"],
        ],
        describeChunks(chunks),
      );
      for (const e of events) assert.equal(Object.getPrototypeOf(e), Object.prototype);
    }
  });

  it("give a batch its pieces' indexes as `continued`, after its `dropped`, and none to the others", async () => {
    const body =
      continuedBatch(["a", "b", "c"], [0, 2], "stdout", 4) + batch(["d"]) + piece("e", "stderr") + piece("f", "stderr") + out("g", "stderr");
    const batches = await collect(iterOutputBatches(chunksOf(body + agentEvent("eof", {})), null));
    assert.deepEqual(batches, [
      { lines: ["a", "b", "c"], timestamp: new Date(1767225600131), stream: "stdout", dropped: 4, continued: [0, 2] },
      { lines: ["d"], timestamp: new Date(1767225600131), stream: "stdout", dropped: 0 },
      // Per-line events of one read grouped: their marks become the batch's indexes.
      { lines: ["e", "f", "g"], timestamp: new Date(1767225600131), stream: "stderr", dropped: 0, continued: [0, 1] },
    ]);
    assert.ok(!("continued" in batches[1]!));
  });

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

  it("gives each event its own Date", async () => {
    const [a, b] = await collect(iterOutputEvents(chunksOf(out("a") + out("b")), null));
    assert.notEqual(a!.timestamp, b!.timestamp);
    assert.deepEqual(a!.timestamp, b!.timestamp);
  });

  it("reads a batch as one output event per line", async () => {
    const lines = ["a", "", "é 😀", "a line of thirteen or more characters", 'q"uote'];
    for (const defaultStream of [null, "stdout", "stderr"] as const) {
      const perLine = lines.map((line) => out(line, "stderr", 1767225600999)).join("");
      const batched = batch(lines, "stderr", 1767225600999);
      const want = await collect(iterOutputEvents(chunksOf(perLine), defaultStream));
      assert.deepEqual(await collect(iterOutputEvents(chunksOf(batched), defaultStream)), want);
      assert.deepEqual(want.map((e) => e.line), lines);
    }
  });

  it("reads batches and per-line events alike, in order", async () => {
    const body = out("one") + batch(["two", "three"]) + out("four", "stderr") + batch(["five"], "stderr");
    for (const chunks of chunkings(encoder.encode(body))) {
      const events = await collect(iterOutputEvents(fromChunks(chunks), null));
      assert.deepEqual(
        events.map((e) => [e.line, e.stream]),
        [["one", "stdout"], ["two", "stdout"], ["three", "stdout"], ["four", "stderr"], ["five", "stderr"]],
        describeChunks(chunks),
      );
    }
  });

  it("gives the events of a batch one shared Date, and plain objects of three fields", async () => {
    const [a, b, c] = await collect(iterOutputEvents(chunksOf(batch(["a", "b"]) + batch(["c"])), null));
    assert.equal(a!.timestamp, b!.timestamp);
    assert.notEqual(b!.timestamp, c!.timestamp); // another batch, another Date
    assert.deepEqual(b!.timestamp, c!.timestamp);
    assert.equal(a!.timestamp!.getTime(), 1767225600131);
    assert.deepEqual(Object.keys(a!), ["line", "timestamp", "stream"]);
    assert.equal(Object.getPrototypeOf(a), Object.prototype);
  });

  it("cuts the lines of plain batches as they are taken, whatever their length", async () => {
    // Lines of every length around the one from which V8 slices instead of copying, and empty
    // ones first, last and alone; the plain arrays are cut one line at a time.
    const lines = Array.from({ length: 30 }, (_, n) => "x".repeat(n));
    const body = batch(["", ...lines, ""]) + batch([""]) + batch(["only"], "stderr") + batch(lines.slice(10));
    const want = ["", ...lines, "", "", "only", ...lines.slice(10)];
    const events = await collect(iterOutputEvents(chunksOf(body + agentEvent("eof", {})), null));
    assert.deepEqual(events.map((e) => e.line), want);
    assert.deepEqual(events.map((e) => e.stream).filter((stream) => stream === "stderr"), ["stderr"]);
    const decoder = new OutputEventDecoder(null);
    assert.deepEqual([...decoder.feed(encoder.encode(body)), ...decoder.flush()], events);
  });

  it("flushes an unterminated event", () => {
    const decoder = new OutputEventDecoder("stdout");
    assert.deepEqual(decoder.feed(encoder.encode('data: {"line": "a", "timestamp": 1795711162444}')), []);
    assert.deepEqual(decoder.flush().map((e) => [e.line, e.stream]), [["a", "stdout"]]);
  });

  it("pulls nothing before the first next(), and a break cancels the source", async () => {
    let pulled = 0;
    let cancelled = false;
    async function* source(): AsyncGenerator<Uint8Array> {
      try {
        for (;;) {
          pulled++;
          yield encoder.encode(out("a") + out("b"));
        }
      } finally {
        cancelled = true;
      }
    }
    const events = iterOutputEvents(source(), null);
    assert.equal(pulled, 0);
    let seen = 0;
    for await (const event of events) {
      assert.equal(event.line, seen % 2 === 0 ? "a" : "b");
      if (++seen === 5) break;
    }
    assert.equal(pulled, 3);
    assert.ok(cancelled);
    assert.deepEqual(await events.next(), { value: undefined, done: true });
  });

  it("yields what arrived before an error, then throws it, then is done", async () => {
    async function* source(): AsyncGenerator<Uint8Array> {
      yield encoder.encode(out("a") + out("b") + "event: output\ndata: {");
      throw new SandboxConnectionError("connection reset");
    }
    const events = iterOutputEvents(source(), null);
    const seen: string[] = [];
    await assert.rejects(
      (async () => {
        for await (const event of events) seen.push(event.line);
      })(),
      (error: unknown) => error instanceof SandboxConnectionError,
    );
    assert.deepEqual(seen, ["a", "b"]);
    assert.deepEqual(await events.next(), { value: undefined, done: true });
  });

  it("answers a call to next() waiting behind a failing one as done", async () => {
    async function* source(): AsyncGenerator<Uint8Array> {
      yield encoder.encode("data: {");
      throw new SandboxConnectionError("connection reset");
    }
    const events = iterOutputEvents(source(), null);
    const [first, second] = await Promise.allSettled([events.next(), events.next()]);
    assert.equal(first.status, "rejected");
    assert.deepEqual(second, { status: "fulfilled", value: { value: undefined, done: true } });
  });

  it("answers calls to next() made without waiting in order", async () => {
    const events = iterOutputEvents(chunksOf(out("a"), out("b"), out("c")), null);
    const results = await Promise.all([events.next(), events.next(), events.next(), events.next()]);
    assert.deepEqual(results.map((r) => (r.done ? null : r.value.line)), ["a", "b", "c", null]);
  });
});
