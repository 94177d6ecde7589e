/**
 * The output events of a `follow` stream.
 *
 * This SDK asks for `output_batch` events (`?batch=true`): each carries the lines of one stream
 * read at once as a JSON array, with one `stream` and one `timestamp`. A block of batches in the
 * agent's layout is cut by one sticky regular expression; an array whose strings hold no escape
 * and no control character is cut at its `","` separators, a line at a time as the lines are
 * taken (V8 copies a short substring; a long line is copied out with `JSON.parse`, so a kept event
 * never keeps the block alive), any other array with one `JSON.parse`; the timestamp is read once
 * per batch, into one `Date` that the batch's lines share (a `Date` per line cost more than the
 * rest of the line's decoding), and each line becomes a plain object of three fields when it is
 * taken. A batch stands for one `output` event per line: the events are those
 * {@link outputEventFromWire} makes of them.
 *
 * A server that sends per-line `output` events instead (the official protocol) is read fast too.
 * When a block is made of output events in the agent's exact layout only (a regular expression
 * matched event after event says so), each event is built from the pieces the expression captured, and only a
 * line holding escapes goes through `JSON.parse`: parsing whole objects costs several times more
 * (V8 internalizes short string values, and most lines are short). Any other block is decoded
 * event by event ({@link decodeBlock}), as before. The events then reach the caller through a
 * plain async iterator that hands out the decoded events of a block without awaiting anything: an
 * async generator would cost a few promise round trips per line, more than decoding it. Its
 * events are made one by one as they are taken ({@link EventCursor}): made a block at a time,
 * a read's events and strings were all alive together, and the young generation's scavenges
 * copied them; made as taken, they die young unless kept (a quarter less time per line).
 *
 * A follow whose connection breaks (the sandbox suspended and resumed, a proxy or network that
 * drops it) is opened again ({@link followOutputEvents}, {@link followOutputBatches}) where it
 * stopped: each `output_batch` carries an SSE `id` (the line after it), which the cursors note and
 * the next connection sends back as `Last-Event-ID`. A server whose batches carry no id answers
 * every follow with every line still in its buffer first; {@link FollowResume} then skips as many
 * lines as it handed out. The cursors note the `eof` event (data `{}`), which tells a finished
 * follow from one cut off.
 *
 * A follower that falls further behind than the process's output buffer reaches (its last 16 MiB)
 * never sees the lines the buffer let go meanwhile: the agent gives their number as `dropped` in
 * the batch that follows them (absent when none). The expression that cuts a batch in the agent's
 * layout takes it as an optional group after the lines: it reads every byte of the batch anyway,
 * while a search of each block for `"dropped":` reads them all once more (measured, nearly a
 * tenth of the decoding time of short lines). Other layouts are parsed, and the field read from
 * the object. The batches carry it ({@link OutputBatch}); the per-line follows, whose events have
 * no room for it, emit a process warning per such batch ({@link OUTPUT_DROPPED_WARNING}) rather
 * than stay silent about it.
 *
 * A line longer than 1 MiB reaches the follower in pieces, which the agent cut: a batch lists the
 * pieces among its lines as `continued` (indexes, after `dropped`; absent when none), a per-line
 * event has `"continued":true`. Neither is cut by the expressions above (a batch's body then ends
 * with the indexes, not with a quote: one look tells), so the block that holds one is parsed, and
 * the pieces' events get `continued: true` there ({@link batchOf}, {@link batchEvents},
 * `outputEventFromWire`); the events of other lines never get the field. Such a block carries a
 * MiB of text at least, which is parsed no slower than it would be cut (measured: a 5 MiB line
 * faster); an optional group for `continued` in the batch expression, which must then hold the
 * lines' body to end at a quote, made it slower on ordinary batches (measured: by up to 30%).
 */

import { SandboxConnectionError } from "./errors.js";
import { clock } from "./http.js";
import type { OutputBatch, OutputEvent, OutputStream } from "./models.js";
import { outputEventFromWire, parseTimestamp } from "./models.js";
import { agentOutputEvent, decodeBlock, eachAgentOutput, lastEventId, SSEBlocks, type Event } from "./sse.js";

// Groups: the line's JSON string body (still escaped), the timestamp, the stream.
const OUTPUT_EVENT = agentOutputEvent({ line: true, timestamp: true, stream: true });

// One `output_batch` event in the agent's layout (with or without its id), sticky: group 1 its
// stream, group 2 its timestamp, group 3 the body of its `lines` array (a data line holds no raw
// newline; checked below), group 4 its `dropped` when it has one. (The key can only be the
// field: inside a JSON string a quote is escaped. A zero, a sign or a fraction does not match,
// and its block is parsed: `droppedOf` makes it 0.) A batch with `continued` (pieces of a cut
// line) matches too, but `[^\n]*` runs to the last `]` of the line, that of `continued`: its body
// then ends with a digit, not with a quote, and its block is parsed (see the top of this file).
const BATCH_EVENT =
  /\n(?:event:[^\n]*\n)?(?:id:[^\n]*\n)?data: \{"stream":"(stdout|stderr)","timestamp":(-?(?:0|[1-9][0-9]*)),"lines":\[([^\n]*)\](?:,"dropped":([1-9][0-9]*))?\}\n/y;

/** A batch's `dropped`: a positive safe integer, else 0 (none, or not a count). */
function droppedOf(value: unknown): number {
  return typeof value === "number" && Number.isSafeInteger(value) && value > 0 ? value : 0;
}

/** Adds the `dropped` of those `batches` that have one to `into`, in order. */
function noteDropped(batches: readonly { readonly dropped: number }[], into: number[]): void {
  for (const { dropped } of batches) if (dropped > 0) into.push(dropped);
}

const NO_DROPS: readonly number[] = Object.freeze([]);

// An array body of strings without escapes or control characters: a quote stands only around the
// `","` separators, so cutting there gives the strings.
const PLAIN_STRINGS = /^"[^"\\\x00-\x1f]*(?:","[^"\\\x00-\x1f]*)*"$/;

// How a block that ends with the `eof` event (data `{}`, the last event of a follow) ends: the
// stream ends right after it, so it is the last event of its block (cut at a blank line, whose
// "\n" starts the next block; the last block may lack its final "\n").
const EOF_ENDINGS = ["\ndata: {}\n", "\ndata: {}", "\ndata:{}\n", "\ndata:{}"];

function endsWithEof(block: string): boolean {
  for (const ending of EOF_ENDINGS) if (block.endsWith(ending)) return true;
  return false;
}

// Below this length V8 copies a substring; from it on, it makes a slice that keeps the whole block
// alive. Longer lines are copied out with JSON.parse so that a kept event keeps only its line.
const SLICE_LENGTH = 13;

/** The output events of a follow stream: feed it the body's chunks, then {@link flush}. */
export class OutputEventDecoder {
  readonly #events: EventCursor;

  /** `defaultStream` is the `stream` of events that omit it (null for the merged stream). */
  constructor(defaultStream: OutputStream | null) {
    this.#events = new EventCursor(defaultStream);
  }

  /** Take the next chunk of the body; the output events it completes, in order. */
  feed(chunk: Uint8Array): OutputEvent[] {
    this.#events.feed(chunk);
    return drain(this.#events);
  }

  /** The events left at the end of the stream (an event left unterminated counts). */
  flush(): OutputEvent[] {
    this.#events.flush();
    return drain(this.#events);
  }
}

function drain<T>(cursor: Cursor<T>): T[] {
  const out: T[] = [];
  for (let item = cursor.take(); item !== undefined; item = cursor.take()) out.push(item);
  return out;
}

/**
 * The output of a follow stream as {@link OutputBatch}es, one per `output_batch` event (no object
 * per line); per-line `output` events (a server that does not batch) are grouped while they share
 * stream and timestamp. Flattened, the batches hold what {@link OutputEventDecoder} gives.
 */
export class OutputBatchDecoder {
  readonly #blocks = new SSEBlocks();
  /** Whether the `eof` event came: the process exited and every line was sent. */
  eof = false;
  /** The `id` of the last event decoded that had one (where a follow opened again goes on). */
  lastId: string | null = null;
  #dropped: number[] = [];

  /** `defaultStream` is the `stream` of events that omit it (null for the merged stream). */
  constructor(private readonly defaultStream: OutputStream | null) {}

  /** The `dropped` counts (each > 0) of the batches decoded since the last call, in order: mostly none. */
  takeDropped(): readonly number[] {
    const dropped = this.#dropped;
    if (dropped.length === 0) return NO_DROPS;
    this.#dropped = [];
    return dropped;
  }

  /** Take the next chunk of the body; the batches it completes, in order. */
  feed(chunk: Uint8Array): OutputBatch[] {
    const block = this.#blocks.feed(chunk);
    return block === null ? [] : this.#batches(block);
  }

  /** The batches left at the end of the stream (an event left unterminated counts). */
  flush(): OutputBatch[] {
    return this.#batches(this.#blocks.close());
  }

  #batches(block: string): OutputBatch[] {
    if (endsWithEof(block)) this.eof = true;
    this.lastId = lastEventId(block) ?? this.lastId;
    const batches = blockBatches(block, this.defaultStream);
    noteDropped(batches, this.#dropped);
    return batches;
  }
}

/**
 * The output events of a block that is not all agent batches (those are {@link agentRuns}); the
 * `dropped` counts of its batches are added to `dropped`.
 */
function blockEvents(block: string, defaultStream: OutputStream | null, dropped: number[]): OutputEvent[] {
  if (!block.includes('"lines":[')) {
    const fast = agentEvents(block); // per-line events only: none has a `dropped`
    if (fast !== null) return fast;
  }
  const out: OutputEvent[] = [];
  for (const event of decodeBlock(block)) {
    if (Array.isArray(event.lines)) {
      const batch = batchOf(event, event.lines, defaultStream);
      if (batch === null) continue;
      if (batch.dropped > 0) dropped.push(batch.dropped);
      if (batch.continued === undefined) {
        for (const line of batch.lines) out.push({ line, timestamp: batch.timestamp, stream: batch.stream });
      } else {
        for (const item of batchEvents(batch.lines, batch.timestamp, batch.stream, batch.continued)) out.push(item);
      }
    } else {
      const item = outputEventFromWire(event, defaultStream);
      if (item !== null) out.push(item);
    }
  }
  return out;
}

/** The output batches of a block. */
function blockBatches(block: string, defaultStream: OutputStream | null): OutputBatch[] {
  if (block.includes('"lines":[')) {
    const batches = agentBatches(block);
    if (batches !== null) return batches;
  } else {
    const events = agentEvents(block);
    if (events !== null) return grouped(events);
  }
  // Parsed: each batch stays whole (its `dropped` is about its own first line), per-line events
  // are grouped between them.
  const out: OutputBatch[] = [];
  let last: OutputBatch | null = null;
  for (const event of decodeBlock(block)) {
    if (Array.isArray(event.lines)) {
      const batch = batchOf(event, event.lines, defaultStream);
      if (batch !== null) out.push(batch);
      last = null;
    } else {
      const item = outputEventFromWire(event, defaultStream);
      if (item !== null) last = withLine(out, last, item);
    }
  }
  return out;
}

/** The events of the lines of a batch with `continued` pieces: those have `continued: true`, the others no such field. */
function batchEvents(
  lines: readonly string[],
  timestamp: Date | null,
  stream: OutputStream | null,
  continued: readonly number[],
): OutputEvent[] {
  const pieces = new Set(continued);
  return lines.map((line, index) => (pieces.has(index) ? { line, timestamp, stream, continued: true } : { line, timestamp, stream }));
}

/** Events as batches: consecutive ones of the same stream and time together. */
function grouped(events: OutputEvent[]): OutputBatch[] {
  const out: OutputBatch[] = [];
  let last: OutputBatch | null = null;
  for (const event of events) last = withLine(out, last, event);
  return out;
}

/**
 * Adds the line of `event` to `last` (a batch of per-line events, the last of `out`) when it is
 * of the same stream and time, else to `out` as a new batch; answers the batch it went to. A
 * piece of a cut line (`continued`) is listed in the batch's `continued`.
 */
function withLine(out: OutputBatch[], last: OutputBatch | null, { line, timestamp, stream, continued }: OutputEvent): OutputBatch {
  let batch: OutputBatch;
  if (last !== null && last.stream === stream && last.timestamp?.getTime() === timestamp?.getTime()) {
    batch = last;
    batch.lines.push(line);
  } else {
    batch = { lines: [line], timestamp, stream, dropped: 0 };
    out.push(batch);
  }
  if (continued === true) batch.continued = [...(batch.continued ?? []), batch.lines.length - 1];
  return batch;
}

/** One `output_batch` event of any layout, checked once; null when it holds no line event. */
function batchOf(event: Event, lines: unknown[], defaultStream: OutputStream | null): OutputBatch | null {
  // What each line's own `output` event would make, read once: every line shares it.
  const first = outputEventFromWire({ ...event, lines: undefined, line: "" }, defaultStream);
  if (first === null) return null;
  const strings = lines.filter((line): line is string => typeof line === "string");
  if (strings.length === 0) return null;
  const batch: OutputBatch = { lines: strings, timestamp: first.timestamp, stream: first.stream, dropped: droppedOf(event.dropped) };
  if (Array.isArray(event.continued) && event.continued.length > 0) {
    // Indexes into `lines`; those of the strings kept, once the others are left out.
    const marked = new Set<unknown>(event.continued);
    const kept: number[] = [];
    for (let index = 0, at = 0; index < lines.length; index++) {
      if (typeof lines[index] !== "string") continue;
      if (marked.has(index)) kept.push(at);
      at++;
    }
    if (kept.length > 0) batch.continued = kept;
  }
  return batch;
}

/**
 * The lines of one `output_batch` event in the agent's layout, with its stream and timestamp.
 * `lines` null: its array `body` holds only strings without escapes or control characters (so a
 * quote stands only around the `","` separators), and the lines are cut out of it as they are
 * needed ({@link plainLines}, {@link EventCursor}); else `lines` are the strings it holds.
 * `dropped` as in {@link OutputBatch}.
 */
interface AgentBatch {
  readonly lines: string[] | null;
  readonly body: string;
  readonly timestamp: Date | null;
  readonly stream: OutputStream;
  readonly dropped: number;
}

/** The strings of a batch's array body in the agent's layout; null when it is not a list of strings. */
function parsedLines(body: string): string[] | null {
  let parsed: unknown;
  try {
    parsed = JSON.parse(`[${body}]`);
  } catch {
    return null; // an invalid escape, or not an array of values
  }
  if (!Array.isArray(parsed)) return null;
  for (const line of parsed) if (typeof line !== "string") return null;
  return parsed as string[];
}

/** The lines of a plain array body (see {@link AgentBatch}), all at once. */
function plainLines(body: string): string[] {
  const lines = body.slice(1, -1).split('","');
  for (const line of lines) if (line.length >= SLICE_LENGTH) return parsedLines(body)!; // copies, see SLICE_LENGTH
  return lines;
}

/** The non-empty `output_batch` events of a block made of them only, in the agent's layout; else null. */
function agentRuns(block: string): AgentBatch[] | null {
  const out: AgentBatch[] = [];
  let valid = true;
  const all = eachAgentOutput(block, BATCH_EVENT, (match) => {
    const body = match[3]!;
    if (!valid || body === "") return;
    if (!body.endsWith('"')) {
      // No list of strings (a batch with `continued`, see BATCH_EVENT): known without scanning its MiB.
      valid = false;
      return;
    }
    let lines: string[] | null = null;
    if (!PLAIN_STRINGS.test(body)) {
      lines = parsedLines(body);
      if (lines === null) {
        valid = false;
        return;
      }
    }
    const dropped = match[4] === undefined ? 0 : droppedOf(Number(match[4]));
    out.push({ lines, body, timestamp: parseTimestamp(Number(match[2])), stream: match[1] as OutputStream, dropped });
  });
  return all && valid ? out : null;
}

/** The non-empty batches of a block of agent `output_batch` events, as {@link batchOf} makes them; else null. */
function agentBatches(block: string): OutputBatch[] | null {
  const runs = agentRuns(block);
  if (runs === null) return null;
  return runs.map(({ lines, body, timestamp, stream, dropped }) => ({
    lines: lines ?? plainLines(body),
    timestamp,
    stream,
    dropped,
  }));
}

/** The events of a block of agent output events, as `outputEventFromWire` makes them; else null. */
function agentEvents(block: string): OutputEvent[] | null {
  if (!block.includes("\ndata")) return []; // keep-alives
  const out: OutputEvent[] = [];
  const event = (match: RegExpExecArray) => {
    const body = match[1]!;
    const line = body.length < SLICE_LENGTH && !body.includes("\\") ? body : (JSON.parse(`"${body}"`) as string);
    out.push({ line, timestamp: parseTimestamp(Number(match[2])), stream: match[3] as OutputStream });
  };
  try {
    return eachAgentOutput(block, OUTPUT_EVENT, event) ? out : null;
  } catch {
    return null; // an invalid escape: that event is skipped event by event
  }
}

/** The output lines of a follow stream (`stream` defaults to the followed one when absent). */
export function iterOutputEvents(
  chunks: AsyncIterable<Uint8Array>,
  defaultStream: OutputStream | null,
): AsyncIterableIterator<OutputEvent> {
  return new Decoded(chunks, new EventCursor(defaultStream));
}

/** The output batches of a follow stream (`stream` defaults to the followed one when absent). */
export function iterOutputBatches(
  chunks: AsyncIterable<Uint8Array>,
  defaultStream: OutputStream | null,
): AsyncIterableIterator<OutputBatch> {
  return new Decoded(chunks, new BatchCursor(defaultStream));
}

/**
 * Items decoded from a body's chunks, taken one at a time. Feed it a chunk (or flush it at the
 * end) only once {@link take} has answered `undefined`.
 */
interface Cursor<T> {
  /** Decode the next chunk of the body. */
  feed(chunk: Uint8Array): void;
  /** Decode what is left at the end of the body. */
  flush(): void;
  /** The next item decoded, or `undefined` when all have been taken. */
  take(): T | undefined;
  /** Drop the items not taken. */
  clear(): void;
  /** Whether the `eof` event came: the process exited and every line was sent. */
  readonly eof: boolean;
  /** The `id` of the last event decoded that had one, or null. */
  readonly lastId: string | null;
  /** The `dropped` counts (each > 0) of the batches decoded since the last call, in order: mostly none. */
  takeDropped(): readonly number[];
}

const NO_LINES: string[] = [];
const NO_EVENTS: OutputEvent[] = [];

/**
 * The output events of a follow stream, made one at a time as they are taken: a line of an agent
 * batch becomes its event (and, from a plain array body, its string: see {@link AgentBatch}) only
 * when taken. Made all at once per read, the events of a block (and their strings) were all alive
 * together, and each scavenge of the young generation copied them; made as taken, most die young.
 */
class EventCursor implements Cursor<OutputEvent> {
  readonly #blocks = new SSEBlocks();
  readonly #defaultStream: OutputStream | null;
  eof = false;
  lastId: string | null = null;
  // The agent batches of the block being taken, and the next one.
  #runs: AgentBatch[] = [];
  #run = 0;
  // The batch being taken: the stream and Date its lines share, and its lines, either in a plain
  // array body (from index #at, the start of the next line) or split (from index #line).
  #timestamp: Date | null = null;
  #stream: OutputStream | null = null;
  #body = "";
  #at = 0;
  #lines = NO_LINES;
  #line = 0;
  // The events of a block that is not made of agent batches, made at once.
  #events = NO_EVENTS;
  #event = 0;
  // The `dropped` of the batches decoded and not yet taken (takeDropped).
  #dropped: number[] = [];

  constructor(defaultStream: OutputStream | null) {
    this.#defaultStream = defaultStream;
  }

  feed(chunk: Uint8Array): void {
    const block = this.#blocks.feed(chunk);
    if (block !== null) this.#load(block);
  }

  flush(): void {
    this.#load(this.#blocks.close());
  }

  take(): OutputEvent | undefined {
    for (;;) {
      const body = this.#body;
      const at = this.#at;
      if (at < body.length) {
        let end = body.indexOf('","', at);
        if (end < 0) {
          end = body.length - 1; // the closing quote
          this.#body = ""; // done with it: keep the block no longer
        }
        this.#at = end + 3;
        // A short line is copied out; a long one would be a view that keeps the whole block alive
        // as long as its event: JSON.parse of its quoted text copies it.
        const line = end - at < SLICE_LENGTH ? body.slice(at, end) : (JSON.parse(body.slice(at - 1, end + 1)) as string);
        return { line, timestamp: this.#timestamp, stream: this.#stream };
      }
      if (this.#line < this.#lines.length) {
        return { line: this.#lines[this.#line++]!, timestamp: this.#timestamp, stream: this.#stream };
      }
      if (this.#event < this.#events.length) return this.#events[this.#event++];
      if (this.#run >= this.#runs.length) return undefined;
      const run = this.#runs[this.#run++]!;
      this.#timestamp = run.timestamp;
      this.#stream = run.stream;
      if (run.lines === null) {
        this.#body = run.body;
        this.#at = 1; // after the opening quote
      } else {
        this.#lines = run.lines;
        this.#line = 0;
      }
    }
  }

  takeDropped(): readonly number[] {
    const dropped = this.#dropped;
    if (dropped.length === 0) return NO_DROPS;
    this.#dropped = [];
    return dropped;
  }

  clear(): void {
    this.#runs = [];
    this.#run = 0;
    this.#body = "";
    this.#at = 0;
    this.#lines = NO_LINES;
    this.#line = 0;
    this.#events = NO_EVENTS;
    this.#event = 0;
  }

  #load(block: string): void {
    this.clear();
    if (endsWithEof(block)) this.eof = true;
    this.lastId = lastEventId(block) ?? this.lastId;
    if (block.includes('"lines":[')) {
      const runs = agentRuns(block);
      if (runs !== null) {
        this.#runs = runs;
        noteDropped(runs, this.#dropped); // a look per batch, not per line
        return;
      }
    }
    this.#events = blockEvents(block, this.#defaultStream, this.#dropped);
  }
}

/** The output batches of a follow stream, made a block at a time (one object per read anyway). */
class BatchCursor implements Cursor<OutputBatch> {
  readonly #decoder: OutputBatchDecoder;
  #ready: OutputBatch[] = [];
  #next = 0;

  constructor(defaultStream: OutputStream | null) {
    this.#decoder = new OutputBatchDecoder(defaultStream);
  }

  get eof(): boolean {
    return this.#decoder.eof;
  }

  get lastId(): string | null {
    return this.#decoder.lastId;
  }

  takeDropped(): readonly number[] {
    return this.#decoder.takeDropped();
  }

  feed(chunk: Uint8Array): void {
    this.#ready = this.#decoder.feed(chunk);
    this.#next = 0;
  }

  flush(): void {
    this.#ready = this.#decoder.flush();
    this.#next = 0;
  }

  take(): OutputBatch | undefined {
    return this.#next < this.#ready.length ? this.#ready[this.#next++] : undefined;
  }

  clear(): void {
    this.#ready = [];
    this.#next = 0;
  }
}

const DONE: IteratorReturnResult<undefined> = Object.freeze({ value: undefined, done: true });

/**
 * An async iterator over the items a cursor decodes from a chunk source. The source is pulled (and
 * so the request made) at the first `next()`; `return()` (a `break` in `for await`) ends the
 * source, which cancels the response. Calls to `next()` made before the last one settled wait for
 * it, as with an async generator.
 */
class Decoded<T> implements AsyncIterableIterator<T> {
  readonly #chunks: AsyncIterable<Uint8Array>;
  readonly #cursor: Cursor<T>;
  #source: AsyncIterator<Uint8Array> | null = null;
  #done = false;
  #pulling: Promise<IteratorResult<T, undefined>> | null = null;

  constructor(chunks: AsyncIterable<Uint8Array>, cursor: Cursor<T>) {
    this.#chunks = chunks;
    this.#cursor = cursor;
  }

  [Symbol.asyncIterator](): this {
    return this;
  }

  next(): Promise<IteratorResult<T, undefined>> {
    if (this.#pulling !== null) {
      const again = () => this.next();
      return this.#pulling.then(again, again); // after a failed pull, this is done
    }
    const value = this.#cursor.take();
    if (value !== undefined) return Promise.resolve({ value, done: false });
    if (this.#done) return Promise.resolve(DONE);
    const pulling = this.#pull().finally(() => {
      this.#pulling = null;
    });
    this.#pulling = pulling;
    return pulling;
  }

  async return(): Promise<IteratorResult<T, undefined>> {
    const source = this.#source;
    this.#finish();
    await source?.return?.();
    return DONE;
  }

  async #pull(): Promise<IteratorResult<T, undefined>> {
    try {
      this.#source ??= this.#chunks[Symbol.asyncIterator]();
      while (!this.#done) {
        const chunk = await this.#source.next();
        if (chunk.done) {
          this.#cursor.flush();
          this.#done = true;
        } else {
          this.#cursor.feed(chunk.value);
        }
        this.#cursor.takeDropped(); // the batches carry it; no follow here to warn for (see Followed)
        const value = this.#cursor.take();
        if (value !== undefined) return { value, done: false };
      }
      return DONE;
    } catch (error) {
      this.#finish(); // like an async generator: after throwing, it is done
      throw error;
    }
  }

  #finish(): void {
    this.#done = true;
    this.#cursor.clear();
  }
}

// -- following across connections --------------------------------------------------------------

/** Connections in a row that may break without bringing a new line before a follow gives up. */
export const FOLLOW_RECONNECTS = 5;
/** The pause before each of those reconnections, in ms (the proxy's own not-ready replays come on top). */
export const FOLLOW_BACKOFF_MS: readonly number[] = [250, 500, 1000, 2000, 4000];

/**
 * Where a follow stands across its connections, and whether to open another.
 *
 * Each `output_batch` of Alcove's agent carries an SSE `id`, the number of the line after it; the
 * last one taken is {@link cursor}, and a follow opened again sends it as `Last-Event-ID`: the
 * agent goes on right after it (docs/protocol/sandbox-api.md, Process I/O), whatever its buffer
 * dropped meanwhile. A server whose events carry no id answers a follow with every line still in
 * the process's buffer, oldest first, then the live ones; the lines already handed out are then
 * skipped by count. Either way the caller gets each line once, in order. (Counting goes wrong
 * once the buffer, 16 MiB, has dropped lines: hence the ids.) Lines the buffer let go before the
 * follower read them are counted too ({@link dropped}), across connections.
 *
 * A connection that breaks ({@link broke}), or ends without the `eof` event ({@link ended}), is
 * opened again, after {@link FOLLOW_BACKOFF_MS} when it broke; after {@link FOLLOW_RECONNECTS}
 * connections in a row that broke without a new line, the last error is thrown. Errors the open
 * answers (an unknown process, a sandbox gone or still suspended once the open's own replays are
 * spent) are the caller's at once.
 */
export class FollowResume {
  /** Lines handed out so far. */
  delivered = 0;
  /** Connections opened again so far. */
  reconnects = 0;
  /** Lines of the current connection still to skip: handed out before. */
  skip = 0;
  /** The `id` of the last event taken that had one: where a follow opened again goes on. */
  cursor: string | null = null;
  /** Lines the process's output buffer let go before this follow read them, over all its connections. */
  dropped = 0;
  /** Whether the current connection brought a line not seen before. */
  newLines = false;
  #failures = 0; // connections in a row that brought no new line
  #quiet = false; // the previous connection ended without eof

  /** `count` lines were handed out (after {@link skip}). */
  handedOut(count: number): void {
    this.delivered += count;
    this.newLines = true;
  }

  /** A batch said `count` lines were dropped before it (its `dropped`): the follow never gets them. */
  lost(count: number): void {
    this.dropped += count;
  }

  /** The connection broke (or could not be opened again): whether to open another (else the caller throws its error). */
  broke(): boolean {
    if (this.newLines) this.#failures = 0;
    this.#failures += 1;
    this.#quiet = false;
    return this.#failures <= FOLLOW_RECONNECTS;
  }

  /**
   * The connection ended cleanly: whether the follow is over. It is at the `eof` event. Without
   * one the connection was cut, and another is opened; a server that sends no `eof` (the stream
   * just ends at exit) is recognised when a connection opened again ends too without a new line,
   * and the follow ends there.
   */
  ended(eof: boolean): boolean {
    if (eof || (this.#quiet && !this.newLines)) return true;
    if (this.newLines) this.#failures = 0;
    this.#quiet = true;
    return false;
  }

  /** Before opening the follow again: the ms to wait first. From then on the lines handed out are skipped. */
  pause(): number {
    this.reconnects += 1;
    // With a cursor the agent sends only what comes after it; without, everything it keeps.
    this.skip = this.cursor !== null ? 0 : this.delivered;
    this.newLines = false;
    if (this.#failures === 0) return 0;
    return FOLLOW_BACKOFF_MS[Math.min(this.#failures, FOLLOW_BACKOFF_MS.length) - 1]!;
  }
}

/**
 * Opens a follow: its body's chunks, once the answer's head has come (errors of the open throw
 * here). `lastEventId` is where to go on (sent as `Last-Event-ID`), null at first.
 */
export type OpenFollow = (lastEventId: string | null) => Promise<AsyncIterable<Uint8Array>>;

/**
 * The `code` of the process warning (`process.emitWarning`) a per-line follow emits for each batch
 * that says the process's output buffer let lines go before the follower read them: its events
 * have no field for it, and a gap nobody mentions looks like output that never was.
 */
export const OUTPUT_DROPPED_WARNING = "ALCOVE_OUTPUT_DROPPED";

/** Emits the {@link OUTPUT_DROPPED_WARNING} of a follow of process `pid` that lost `count` lines. */
function warnDropped(pid: number | string, count: number): void {
  const lines = count === 1 ? "1 line of output was" : `${count} lines of output were`;
  const why = "the process's output buffer holds the last 16 MiB";
  process.emitWarning(`follow of process ${pid}: ${lines} dropped before this follower read them (${why})`, {
    code: OUTPUT_DROPPED_WARNING,
  });
}

/**
 * The output lines of a follow of process `pid`, opened with `open` and opened again when its
 * connection breaks ({@link FollowResume}); `stream` defaults to the followed one when absent.
 * Lines the process's output buffer let go before they were read are told with a warning
 * ({@link warnDropped}).
 */
export function followOutputEvents(
  open: OpenFollow,
  defaultStream: OutputStream | null,
  pid: number | string,
): AsyncIterableIterator<OutputEvent> {
  return new Followed(open, () => new EventCursor(defaultStream), oneLine, dropNone, (count) => warnDropped(pid, count));
}

/**
 * The output batches of a follow, opened again as {@link followOutputEvents} is. No warning: each
 * batch says what was dropped before it ({@link OutputBatch.dropped}).
 */
export function followOutputBatches(open: OpenFollow, defaultStream: OutputStream | null): AsyncIterableIterator<OutputBatch> {
  return new Followed(open, () => new BatchCursor(defaultStream), batchLines, dropLines, null);
}

const oneLine = (): number => 1;
// An event is one line: it is skipped whole or kept whole, never cut.
const dropNone = (event: OutputEvent): OutputEvent => event;
const batchLines = (batch: OutputBatch): number => batch.lines.length;
// A batch cut: its `continued` indexes move with its lines (and it has none when none is left).
const dropLines = (batch: OutputBatch, skip: number): OutputBatch => {
  const { continued, ...rest } = batch;
  const kept = { ...rest, lines: batch.lines.slice(skip) };
  if (continued === undefined) return kept;
  const shifted = continued.filter((index) => index >= skip).map((index) => index - skip);
  return shifted.length > 0 ? { ...kept, continued: shifted } : kept;
};

/**
 * {@link Decoded} over the connections of one follow: when one breaks with a
 * {@link SandboxConnectionError} or ends without `eof`, the next is opened (a fresh cursor) and
 * the lines already handed out are skipped. Items are counted as they are taken, and the lines
 * dropped before a batch as it is decoded (each batch's told to `warn`, when given).
 */
class Followed<T> implements AsyncIterableIterator<T> {
  readonly #open: OpenFollow;
  readonly #newCursor: () => Cursor<T>;
  readonly #lines: (item: T) => number;
  readonly #drop: (item: T, skip: number) => T;
  readonly #warn: ((dropped: number) => void) | null;
  readonly #resume = new FollowResume();
  #cursor: Cursor<T>;
  #source: AsyncIterator<Uint8Array> | null = null;
  #opened = false;
  #done = false;
  #pulling: Promise<IteratorResult<T, undefined>> | null = null;

  constructor(
    open: OpenFollow,
    newCursor: () => Cursor<T>,
    lines: (item: T) => number,
    drop: (item: T, skip: number) => T,
    warn: ((dropped: number) => void) | null,
  ) {
    this.#open = open;
    this.#newCursor = newCursor;
    this.#lines = lines;
    this.#drop = drop;
    this.#warn = warn;
    this.#cursor = newCursor();
  }

  [Symbol.asyncIterator](): this {
    return this;
  }

  next(): Promise<IteratorResult<T, undefined>> {
    if (this.#pulling !== null) {
      const again = () => this.next();
      return this.#pulling.then(again, again); // after a failed pull, this is done
    }
    const value = this.#take();
    if (value !== undefined) return Promise.resolve({ value, done: false });
    if (this.#done) return Promise.resolve(DONE);
    const pulling = this.#pull().finally(() => {
      this.#pulling = null;
    });
    this.#pulling = pulling;
    return pulling;
  }

  async return(): Promise<IteratorResult<T, undefined>> {
    const source = this.#source;
    this.#finish();
    await source?.return?.();
    return DONE;
  }

  /** The next item not handed out before, counted as handed out. */
  #take(): T | undefined {
    const resume = this.#resume;
    for (;;) {
      let item = this.#cursor.take();
      if (item === undefined) return undefined;
      if (resume.skip > 0) {
        const count = this.#lines(item);
        if (count <= resume.skip) {
          resume.skip -= count;
          continue;
        }
        item = this.#drop(item, resume.skip);
        resume.skip = 0;
      }
      resume.handedOut(this.#lines(item));
      return item;
    }
  }

  async #pull(): Promise<IteratorResult<T, undefined>> {
    const resume = this.#resume;
    try {
      while (!this.#done) {
        if (this.#source === null) {
          if (!this.#opened) {
            this.#source = (await this.#open(null))[Symbol.asyncIterator]();
            this.#opened = true;
          } else {
            const ms = resume.pause();
            if (ms > 0) await clock.sleep(ms);
            if (this.#done) break; // returned meanwhile
            this.#cursor = this.#newCursor();
            try {
              this.#source = (await this.#open(resume.cursor))[Symbol.asyncIterator]();
            } catch (error) {
              if (error instanceof SandboxConnectionError && resume.broke()) continue;
              throw error;
            }
          }
        }
        let chunk: IteratorResult<Uint8Array>;
        try {
          chunk = await this.#source.next();
        } catch (error) {
          this.#source = null;
          if (error instanceof SandboxConnectionError && resume.broke()) continue;
          throw error;
        }
        if (chunk.done) {
          this.#cursor.flush();
          this.#source = null;
          if (resume.ended(this.#cursor.eof)) this.#done = true;
        } else {
          this.#cursor.feed(chunk.value);
        }
        // Its lines are all taken before the next read can find the connection broken.
        resume.cursor = this.#cursor.lastId ?? resume.cursor;
        const dropped = this.#cursor.takeDropped();
        if (dropped.length > 0) this.#lost(dropped);
        const value = this.#take();
        if (value !== undefined) return { value, done: false };
      }
      return DONE;
    } catch (error) {
      this.#finish(); // like an async generator: after throwing, it is done
      throw error;
    }
  }

  /** Batches just decoded said lines were dropped before them: counted, and each told. */
  #lost(dropped: readonly number[]): void {
    for (const count of dropped) {
      this.#resume.lost(count);
      this.#warn?.(count);
    }
  }

  #finish(): void {
    this.#done = true;
    this.#cursor.clear();
  }
}
