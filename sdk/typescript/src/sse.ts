/**
 * Server-sent events of the agent API: `POST /api/v1/processes/run` and the `follow` streams
 * (docs/protocol/streaming.md), decoded a block of events at a time.
 *
 * Events are recognised by shape, never by their `event:` name. `event:`, `id:` and `retry:`
 * lines and `:` comments (keep-alives) are ignored; data that is not a JSON object is skipped.
 *
 * The agent writes many events per read, so the stream is not decoded line by line:
 * {@link SSEBlocks} cuts the text after the last blank line of what has arrived, and
 * {@link decodeBlock} parses all the data lines of a block with one `JSON.parse`. A block that
 * is not made of one-line JSON objects (which is all the agent sends) is decoded line by line by
 * {@link SSEDecoder}, the reference semantics. `run-stream.ts` and `follow-stream.ts` build on this.
 */

export type Event = Record<string, unknown>;

function jsonObject(text: string): Event | undefined {
  try {
    const value: unknown = JSON.parse(text);
    return isObject(value) ? value : undefined;
  } catch {
    return undefined;
  }
}

function isObject(value: unknown): value is Event {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

/** Line-based SSE decoder: feed it lines without their ending, then call {@link flush}. */
export class SSEDecoder {
  private data: string[] = [];

  /** Take one line; returns the events it completes. */
  feed(line: string): Event[] {
    if (line === "") return this.flush();
    if (line.startsWith(":")) return [];
    const colon = line.indexOf(":");
    const name = colon < 0 ? line : line.slice(0, colon);
    let value = colon < 0 ? "" : line.slice(colon + 1);
    if (value.startsWith(" ")) value = value.slice(1);
    if (name === "data") this.data.push(value);
    return [];
  }

  /** The event of the data lines seen since the last blank line, if any. */
  flush(): Event[] {
    if (this.data.length === 0) return [];
    const lines = this.data;
    this.data = [];
    const joined = jsonObject(lines.join("\n"));
    if (joined) return [joined];
    // Tolerate servers that forget the blank line between events: one object per data line.
    return lines.map(jsonObject).filter((event): event is Event => event !== undefined);
  }
}

const LF = 10;
const CR = 13;
const BLANK_LINE = Buffer.from("\n\n");

/** `"\r\n"` and lone `"\r"` as `"\n"`; a copy, made only for chunks that hold a `"\r"`. */
function normalizeLineEnds(chunk: Uint8Array): Uint8Array {
  const out = new Uint8Array(chunk.length);
  let length = 0;
  for (let i = 0; i < chunk.length; i++) {
    const byte = chunk[i]!;
    if (byte !== CR) out[length++] = byte;
    else if (chunk[i + 1] !== LF) out[length++] = LF; // "\r\n" keeps its "\n" only
  }
  return out.subarray(0, length);
}

/**
 * Cuts an SSE byte stream into blocks of whole events, as text.
 *
 * Feed it the body's chunks as they come; {@link feed} answers the text up to the last blank line
 * seen so far (or null), {@link close} what is left at the end of the stream. Every block starts
 * with `"\n"` and its line ends are `"\n"` (`"\r\n"` and `"\r"` are turned into `"\n"`: SSE
 * allows all three); every block but the last ends with `"\n"`, and the blank line ending its last
 * event is the `"\n"` that starts the next block. So each line of a block follows a `"\n"`, and a
 * block decodes on its own. The bytes are cut before they are decoded (a whole block at once:
 * Node decodes a stream of chunks several times slower), and always at a newline byte, so a UTF-8
 * character never spans two blocks (invalid bytes become U+FFFD, as when decoding the stream).
 * Bytes without a blank line (a very long line) are kept in pieces and joined once.
 */
export class SSEBlocks {
  readonly #decoder = new TextDecoder();
  // A leading empty line changes nothing (it ends no event) and gives the first block its "\n".
  #pending: Uint8Array[] = [Uint8Array.of(LF)];
  // The last chunk ended with "\r", already counted as a line end: a "\n" starting the next
  // chunk completes that "\r\n" and is dropped.
  #afterCr = false;

  /** Take the next chunk of the body; the block of whole events it completes, if any. */
  feed(chunk: Uint8Array): string | null {
    if (this.#afterCr && chunk.length > 0) {
      this.#afterCr = false;
      if (chunk[0] === LF) chunk = chunk.subarray(1);
    }
    if (chunk.includes(CR)) {
      this.#afterCr = chunk[chunk.length - 1] === CR;
      chunk = normalizeLineEnds(chunk);
    }
    if (chunk.length === 0) return null;
    const bytes = Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength);
    let cut = bytes.lastIndexOf(BLANK_LINE);
    if (cut < 0) {
      const last = this.#pending[this.#pending.length - 1]!;
      if (!(chunk[0] === LF && last[last.length - 1] === LF)) {
        this.#pending.push(chunk);
        return null;
      }
      cut = -1; // the blank line starts this chunk
    }
    this.#pending.push(chunk.subarray(0, cut + 1));
    const block = this.#decoder.decode(this.#pending.length === 1 ? this.#pending[0] : Buffer.concat(this.#pending));
    this.#pending = [chunk.subarray(cut + 1)];
    return block;
  }

  /** What is left at the end of the stream (its last line may be unterminated). */
  close(): string {
    const rest = this.#decoder.decode(Buffer.concat(this.#pending));
    this.#pending = [Uint8Array.of(LF)];
    this.#afterCr = false;
    return rest;
  }
}

/** How many lines of a block (from {@link SSEBlocks}) may be data fields. */
export function dataLineCount(block: string): number {
  let count = 0;
  for (let at = block.indexOf("\ndata"); at >= 0; at = block.indexOf("\ndata", at + 5)) count++;
  return count;
}

// A data line of a block: its value, the leading space included (JSON ignores it).
const DATA_LINE = /\ndata:([^\n]*)/g;

/**
 * The JSON objects of the events of a block from {@link SSEBlocks}, in order.
 *
 * The data lines of a block of one-line events are parsed together, as one JSON array; any other
 * block (an event whose data spans lines, data that is not a JSON object) is decoded line by line,
 * as {@link SSEDecoder} does, with the same result. The last event of a block counts even without
 * its blank line (the next block starts with it, or the stream ended).
 */
export function decodeBlock(block: string): Event[] {
  const values: string[] = [];
  for (const match of block.matchAll(DATA_LINE)) values.push(match[1]!);
  const count = dataLineCount(block);
  if (count === 0) return []; // comments (keep-alives), or events without data
  if (values.length === count) {
    const events = jsonObjects(values);
    if (events !== null) return events;
  }
  const decoder = new SSEDecoder();
  const events: Event[] = [];
  for (const line of block.split("\n")) for (const event of decoder.feed(line)) events.push(event);
  for (const event of decoder.flush()) events.push(event);
  return events;
}

/**
 * The data values parsed as one JSON array: null unless each is exactly one JSON object.
 *
 * A value that is not a JSON object on its own makes the array fail to parse, hold another
 * number of items or an item that is not an object, and the caller then decodes line by line.
 * The values are joined with `",\n"`: a raw newline is invalid inside a JSON string, so a string
 * cannot run from one value into the next. (Only garbage shaped to balance out, such as `{"a":[1`
 * then `2]}` then `{},{}`, could still parse as three objects where the line decoder finds none;
 * no server sends that.)
 */
function jsonObjects(values: string[]): Event[] | null {
  let parsed: unknown;
  try {
    parsed = JSON.parse(`[${values.join(",\n")}]`);
  } catch {
    return null;
  }
  if (!Array.isArray(parsed) || parsed.length !== values.length) return null;
  for (const item of parsed) if (!isObject(item)) return null;
  return parsed as Event[];
}

/**
 * What may stand between the quotes of a JSON string: no quote, backslash or control character
 * but in a backslash pair. Escapes are not checked (`JSON.parse` does), yet each pair is taken
 * whole, so a body never ends inside an escape; a body without a backslash is its string's value.
 */
export const JSON_STRING_BODY = String.raw`[^"\\\x00-\x1f]*(?:\\.[^"\\\x00-\x1f]*)*`;

/**
 * One output event of a block exactly as the agent writes it, as a sticky regular expression: the
 * `"\n"` before it, an optional `event:` line, and its data line with its `"\n"`. A block made of
 * such events only is a run of these, end to end ({@link eachAgentOutput}).
 *
 * serde_json writes `{"line":"…","timestamp":…,"stream":"…"}`: these fields in this order, no
 * spaces, an integer timestamp, and the stream `stdout` or `stderr`. `capture` says which of the
 * line's string body (still escaped), the timestamp and the stream are groups, in that order;
 * `only` restricts the stream; `flags` replace the sticky flag. Data in any other layout does not
 * match.
 */
export function agentOutputEvent(
  capture: { line?: boolean; timestamp?: boolean; stream?: boolean },
  only: "stdout" | "stderr" | null = null,
  flags = "y",
): RegExp {
  const group = (pattern: string, captured = false) => (captured ? `(${pattern})` : `(?:${pattern})`);
  const line = group(JSON_STRING_BODY, capture.line);
  const timestamp = group("-?(?:0|[1-9][0-9]*)", capture.timestamp);
  const stream = group(only ?? "stdout|stderr", capture.stream);
  const value = String.raw`\{"line":"${line}","timestamp":${timestamp},"stream":"${stream}"\}`;
  return new RegExp(String.raw`\n(?:event:[^\n]*\n)?data: ${value}\n`, flags);
}

/**
 * Calls `each` with the match of every event of `block` when the block is made of events that
 * `event` (from {@link agentOutputEvent}) matches, end to end, and nothing else; answers false as
 * soon as it finds something else (the events seen so far were passed to `each` already, so the
 * caller collects them aside until this answers true). An exception from `each` stops the walk.
 */
/** The `id` of the last event of a block (from {@link SSEBlocks}) that has one, or null. */
export function lastEventId(block: string): string | null {
  const at = block.lastIndexOf("\nid:");
  if (at < 0) return null;
  const end = block.indexOf("\n", at + 4);
  const value = block.slice(at + 4, end < 0 ? block.length : end);
  return value.startsWith(" ") ? value.slice(1) : value;
}

export function eachAgentOutput(block: string, event: RegExp, each: (match: RegExpExecArray) => void): boolean {
  event.lastIndex = 0;
  while (event.lastIndex < block.length) {
    const match = event.exec(block); // sticky: only right where the last one ended
    if (match === null) return false;
    each(match);
  }
  return true;
}
