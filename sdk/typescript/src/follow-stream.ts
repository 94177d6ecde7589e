/**
 * The output events of a `follow` stream.
 *
 * This SDK asks for `output_batch` events (`?batch=true`): each carries the lines of one stream
 * read at once as a JSON array, with one `stream` and one `timestamp`. A block of batches in the
 * agent's layout is cut by one sticky regular expression; an array whose strings hold no escape,
 * no control character and are all short is cut at its `","` separators (V8 copies short
 * substrings), any other with one `JSON.parse` (which copies each string, so a kept event never
 * keeps the block alive); the timestamp is read once per batch, into one `Date` that the batch's
 * lines share (a `Date` per line cost more than the rest of the line's decoding), and each line
 * becomes a plain object of three fields. A batch stands for one `output` event per line: the
 * events are those {@link outputEventFromWire} makes of them.
 *
 * A server that sends per-line `output` events instead (the official protocol) is read fast too.
 * When a block is made of output events in the agent's exact layout only (a regular expression
 * matched event after event says so), each event is built from the pieces the expression captured, and only a
 * line holding escapes goes through `JSON.parse`: parsing whole objects costs several times more
 * (V8 internalizes short string values, and most lines are short). Any other block is decoded
 * event by event ({@link decodeBlock}), as before. The events then reach the caller through a
 * plain async iterator that hands out the decoded events of a block without awaiting anything: an
 * async generator would cost a few promise round trips per line, more than decoding it.
 */

import type { OutputBatch, OutputEvent, OutputStream } from "./models.js";
import { outputEventFromWire, parseTimestamp } from "./models.js";
import { agentOutputEvent, decodeBlock, eachAgentOutput, SSEBlocks, type Event } from "./sse.js";

// Groups: the line's JSON string body (still escaped), the timestamp, the stream.
const OUTPUT_EVENT = agentOutputEvent({ line: true, timestamp: true, stream: true });

// One `output_batch` event in the agent's layout, sticky: group 1 its stream, group 2 its timestamp,
// group 3 the body of its `lines` array (a data line holds no raw newline; checked below).
const BATCH_EVENT =
  /\n(?:event:[^\n]*\n)?data: \{"stream":"(stdout|stderr)","timestamp":(-?(?:0|[1-9][0-9]*)),"lines":\[([^\n]*)\]\}\n/y;
// An array body of strings without escapes or control characters: a quote stands only around the
// `","` separators, so cutting there gives the strings.
const PLAIN_STRINGS = /^"[^"\\\x00-\x1f]*(?:","[^"\\\x00-\x1f]*)*"$/;

// Below this length V8 copies a substring; from it on, it makes a slice that keeps the whole block
// alive. Longer lines are copied out with JSON.parse so that a kept event keeps only its line.
const SLICE_LENGTH = 13;

/** The output events of a follow stream: feed it the body's chunks, then {@link flush}. */
export class OutputEventDecoder {
  readonly #blocks = new SSEBlocks();

  /** `defaultStream` is the `stream` of events that omit it (null for the merged stream). */
  constructor(private readonly defaultStream: OutputStream | null) {}

  /** Take the next chunk of the body; the output events it completes, in order. */
  feed(chunk: Uint8Array): OutputEvent[] {
    const block = this.#blocks.feed(chunk);
    return block === null ? [] : this.#events(block);
  }

  /** The events left at the end of the stream (an event left unterminated counts). */
  flush(): OutputEvent[] {
    return this.#events(this.#blocks.close());
  }

  #events(block: string): OutputEvent[] {
    return blockEvents(block, this.defaultStream);
  }
}

/**
 * The output of a follow stream as {@link OutputBatch}es, one per `output_batch` event (no object
 * per line); per-line `output` events (a server that does not batch) are grouped while they share
 * stream and timestamp. Flattened, the batches hold what {@link OutputEventDecoder} gives.
 */
export class OutputBatchDecoder {
  readonly #blocks = new SSEBlocks();

  /** `defaultStream` is the `stream` of events that omit it (null for the merged stream). */
  constructor(private readonly defaultStream: OutputStream | null) {}

  /** Take the next chunk of the body; the batches it completes, in order. */
  feed(chunk: Uint8Array): OutputBatch[] {
    const block = this.#blocks.feed(chunk);
    return block === null ? [] : blockBatches(block, this.defaultStream);
  }

  /** The batches left at the end of the stream (an event left unterminated counts). */
  flush(): OutputBatch[] {
    return blockBatches(this.#blocks.close(), this.defaultStream);
  }
}

/** The output events of a block. */
function blockEvents(block: string, defaultStream: OutputStream | null): OutputEvent[] {
  if (block.includes('"lines":[')) {
    const batches = agentBatches(block);
    if (batches !== null) return linesOf(batches);
  } else {
    const fast = agentEvents(block);
    if (fast !== null) return fast;
  }
  const out: OutputEvent[] = [];
  for (const event of decodeBlock(block)) {
    if (Array.isArray(event.lines)) {
      const batch = batchOf(event, event.lines, defaultStream);
      if (batch !== null) for (const line of batch.lines) out.push({ line, timestamp: batch.timestamp, stream: batch.stream });
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
    return grouped(blockEvents(block, defaultStream));
  }
  const out: OutputBatch[] = [];
  for (const event of decodeBlock(block)) {
    if (Array.isArray(event.lines)) {
      const batch = batchOf(event, event.lines, defaultStream);
      if (batch !== null) out.push(batch);
    } else {
      const item = outputEventFromWire(event, defaultStream);
      if (item !== null) out.push({ lines: [item.line], timestamp: item.timestamp, stream: item.stream });
    }
  }
  return out;
}

/** The events of batches: one per line, sharing its batch's `Date`. */
function linesOf(batches: OutputBatch[]): OutputEvent[] {
  const out: OutputEvent[] = [];
  for (const { lines, timestamp, stream } of batches) for (const line of lines) out.push({ line, timestamp, stream });
  return out;
}

/** Events as batches: consecutive ones of the same stream and time together. */
function grouped(events: OutputEvent[]): OutputBatch[] {
  const out: OutputBatch[] = [];
  let last: OutputBatch | null = null;
  for (const { line, timestamp, stream } of events) {
    if (last !== null && last.stream === stream && last.timestamp?.getTime() === timestamp?.getTime()) {
      last.lines.push(line);
    } else {
      last = { lines: [line], timestamp, stream };
      out.push(last);
    }
  }
  return out;
}

/** One `output_batch` event of any layout, checked once; null when it holds no line event. */
function batchOf(event: Event, lines: unknown[], defaultStream: OutputStream | null): OutputBatch | null {
  // What each line's own `output` event would make, read once: every line shares it.
  const first = outputEventFromWire({ ...event, lines: undefined, line: "" }, defaultStream);
  if (first === null) return null;
  const strings = lines.filter((line): line is string => typeof line === "string");
  return strings.length > 0 ? { lines: strings, timestamp: first.timestamp, stream: first.stream } : null;
}

/** The strings of a batch's array body in the agent's layout; null when it is not a list of strings. */
function batchLines(body: string): string[] | null {
  if (body === "") return [];
  if (PLAIN_STRINGS.test(body)) {
    const lines = body.slice(1, -1).split('","');
    let short = true;
    for (const line of lines) {
      if (line.length >= SLICE_LENGTH) {
        short = false;
        break;
      }
    }
    if (short) return lines;
  }
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

/** The non-empty batches of a block of agent `output_batch` events, as {@link batchOf} makes them; else null. */
function agentBatches(block: string): OutputBatch[] | null {
  const out: OutputBatch[] = [];
  let valid = true;
  const all = eachAgentOutput(block, BATCH_EVENT, (match) => {
    const lines = valid ? batchLines(match[3]!) : null;
    if (lines === null) {
      valid = false;
      return;
    }
    if (lines.length > 0) out.push({ lines, timestamp: parseTimestamp(Number(match[2])), stream: match[1] as OutputStream });
  });
  return all && valid ? out : null;
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
  return new Decoded(chunks, new OutputEventDecoder(defaultStream));
}

/** The output batches of a follow stream (`stream` defaults to the followed one when absent). */
export function iterOutputBatches(
  chunks: AsyncIterable<Uint8Array>,
  defaultStream: OutputStream | null,
): AsyncIterableIterator<OutputBatch> {
  return new Decoded(chunks, new OutputBatchDecoder(defaultStream));
}

const DONE: IteratorReturnResult<undefined> = Object.freeze({ value: undefined, done: true });

/**
 * An async iterator over the decoded events of a chunk source. The source is pulled (and so the
 * request made) at the first `next()`; `return()` (a `break` in `for await`) ends the source,
 * which cancels the response. Calls to `next()` made before the last one settled wait for it,
 * as with an async generator.
 */
class Decoded<T> implements AsyncIterableIterator<T> {
  readonly #chunks: AsyncIterable<Uint8Array>;
  readonly #decoder: { feed(chunk: Uint8Array): T[]; flush(): T[] };
  #source: AsyncIterator<Uint8Array> | null = null;
  #ready: T[] = [];
  #next = 0;
  #done = false;
  #pulling: Promise<IteratorResult<T, undefined>> | null = null;

  constructor(chunks: AsyncIterable<Uint8Array>, decoder: { feed(chunk: Uint8Array): T[]; flush(): T[] }) {
    this.#chunks = chunks;
    this.#decoder = decoder;
  }

  [Symbol.asyncIterator](): this {
    return this;
  }

  next(): Promise<IteratorResult<T, undefined>> {
    if (this.#pulling !== null) {
      const again = () => this.next();
      return this.#pulling.then(again, again); // after a failed pull, this is done
    }
    if (this.#next < this.#ready.length) return Promise.resolve({ value: this.#ready[this.#next++]!, done: false });
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
          this.#ready = this.#decoder.flush();
          this.#done = true;
        } else {
          this.#ready = this.#decoder.feed(chunk.value);
        }
        this.#next = 0;
        if (this.#ready.length > 0) return { value: this.#ready[this.#next++]!, done: false };
      }
      return DONE;
    } catch (error) {
      this.#finish(); // like an async generator: after throwing, it is done
      throw error;
    }
  }

  #finish(): void {
    this.#done = true;
    this.#ready = [];
    this.#next = 0;
  }
}
