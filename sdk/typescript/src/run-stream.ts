/**
 * The event stream of `POST /api/v1/processes/run`, collected into a {@link CommandResult}.
 *
 * `output_batch` events (the lines of one read as a JSON array, which a server sends when the
 * request sets `batch_output`, as this SDK does) are taken whole. Per-line `output` events (from a
 * server that does not know the field) are read fast too, as follows.
 *
 * A run returns its output joined, so the output lines of a block of events are never turned
 * into one object each: a regular expression replaces each event of a one-stream block by its
 * line's escaped text (or, for a block of both streams, cuts the texts out event after event),
 * and the lines of each stream are joined into one JSON string that `JSON.parse` unescapes at
 * once. Blocks holding any other event (`started`, `exit`, an error, anything unusual) are
 * decoded event by event.
 *
 * The agent cuts a line longer than 1 MiB into pieces, each marked `continued` (an `output`
 * event's `"continued":true`, an `output_batch`'s `"continued":[indexes]`): a piece and the next
 * line of its stream are joined without a `"\n"`, so that the result holds the line whole. The
 * expressions above take neither (a batch's body then ends with the indexes, not with a quote:
 * one look tells), so a block that holds a piece is decoded event by event: it carries a MiB of
 * text at least, which is parsed no slower than it would be cut (measured), and the blocks
 * without one are taken as before, at the same speed. Each stream notes whether its last line
 * goes on, for the text that comes next, from whichever path ({@link RunCollector}).
 */

import { SandboxConnectionError, SandboxError } from "./errors.js";
import type { CommandResult } from "./models.js";
import { agentOutputEvent, decodeBlock, eachAgentOutput, JSON_STRING_BODY, SSEBlocks, type Event } from "./sse.js";

// Group 1: the line's JSON string body, still escaped; group 2: its stream.
const OUTPUT_EVENT = agentOutputEvent({ line: true, stream: true });
// The events of one stream, sticky and global: for String.replace, which then replaces them end to
// end from the start of the block and leaves the rest of it, from the first other line, as it is.
const STREAM_EVENTS = {
  stdout: agentOutputEvent({ line: true }, "stdout", "gy"),
  stderr: agentOutputEvent({ line: true }, "stderr", "gy"),
};

// One `output_batch` event in the agent's layout, sticky: group 1 its stream, group 2 the body of
// its `lines` array, checked below (a data line holds no raw newline). A batch with `continued`
// (pieces of a cut line) matches too, but its body then runs on to the `]` of the indexes, and is
// no list of strings: its block is parsed (see the top of this file).
const BATCH_EVENT = /\n(?:event:[^\n]*\n)?data: \{"stream":"(stdout|stderr)","timestamp":-?(?:0|[1-9][0-9]*),"lines":\[([^\n]*)\]\}\n/y;
// Each string of such an array and its comma (a comma is added after the last), end to end.
const BATCH_ELEMENT = new RegExp(String.raw`"(${JSON_STRING_BODY})",`, "gy");

/**
 * The lines of a batch's array body joined by the escape `\n`, still escaped; null when the body
 * is not a list of JSON strings. The replace stops at the first place that is not a string and a
 * comma, and what it leaves ends with the comma added here: so the result ends with the escape
 * exactly when the whole body was strings.
 */
function batchLines(body: string): string | null {
  const replaced = `${body},`.replace(BATCH_ELEMENT, "$1\\n");
  return replaced.endsWith("\\n") ? replaced.slice(0, -2) : null;
}

const NO_INDEXES: ReadonlySet<number> = new Set();

/** The indexes a parsed batch's `continued` holds (anything but an array holds none). */
function indexSet(value: unknown): ReadonlySet<number> {
  if (!Array.isArray(value) || value.length === 0) return NO_INDEXES;
  return new Set(value.filter((index): index is number => Number.isSafeInteger(index)));
}

/**
 * The lines of a parsed batch joined with `"\n"`, but after the pieces `continued` names, which
 * run on into the next line; null if a line is not a string.
 */
function joinedBatch(lines: unknown[], continued: ReadonlySet<number>): string | null {
  if (!lines.every((line) => typeof line === "string")) return null;
  if (continued.size === 0) return (lines as string[]).join("\n");
  const parts: string[] = [];
  lines.forEach((line, index) => {
    parts.push(line as string);
    if (index < lines.length - 1 && !continued.has(index)) parts.push("\n");
  });
  return parts.join("");
}

/**
 * The lines whose JSON-escaped bodies are given joined with the escape `\n`, unescaped; null if
 * one is invalid. Every escape of a body is whole (the pattern takes a backslash with the character
 * after it), so none can run into the next body, and the string is valid exactly when every body is.
 */
function unescaped(joined: string): string | null {
  try {
    return JSON.parse(`"${joined}"`) as string;
  } catch {
    return null;
  }
}

/**
 * The lines of a block made of one stream's output events only, joined; null for any other block.
 * Each event is replaced by its escaped body and the escape `\n` in one `replace` (no object per
 * line). A block ends with a raw newline, so the result ends with that escape only when every
 * event, to the end of the block, was replaced.
 */
function oneStreamLines(block: string, stream: "stdout" | "stderr"): string | null {
  const replaced = block.replace(STREAM_EVENTS[stream], "$1\\n");
  return replaced.endsWith("\\n") ? unescaped(replaced.slice(0, -2)) : null;
}

/** Accumulates the events of `processes/run` (recognised by shape) into a {@link CommandResult}. */
export class RunCollector {
  // Pieces of the output, each one line or several joined with "\n", in order; and whether the
  // last line of each stream is a piece of a cut line that the next piece goes on (see #append).
  readonly #stdout: string[] = [];
  readonly #stderr: string[] = [];
  #stdoutGoesOn = false;
  #stderrGoesOn = false;
  readonly #blocks = new SSEBlocks();
  pid: number | null = null;
  #exit: Event | null = null;

  /** Take the next chunk of the body; true once the exit event has arrived (stop reading then). */
  feed(chunk: Uint8Array): boolean {
    const block = this.#blocks.feed(chunk);
    return block !== null && this.#take(block);
  }

  /** The result, after the exit event or at the end of the stream (an event left unterminated counts). */
  finish(): CommandResult {
    if (this.#exit === null) this.#take(this.#blocks.close());
    return this.result();
  }

  #take(block: string): boolean {
    if (block.includes('"lines":[') ? this.#takeBatches(block) : this.#takeOutput(block)) return false;
    for (const event of decodeBlock(block)) if (this.add(event)) return true;
    return false;
  }

  /** Take a block made of output events only, at once; false (nothing taken) for any other. */
  #takeOutput(block: string): boolean {
    if (!block.includes("\ndata")) return true; // keep-alives
    if (block.endsWith("\n")) {
      // Most blocks hold one stream: then one replace takes them (else it finds out, and the walk below goes on).
      const hasStdout = block.includes('"stream":"stdout"');
      if (hasStdout !== block.includes('"stream":"stderr"')) {
        const lines = oneStreamLines(block, hasStdout ? "stdout" : "stderr");
        if (lines !== null) {
          this.#append(hasStdout ? "stdout" : "stderr", lines, false);
          return true;
        }
      }
    }
    const stdout: string[] = [];
    const stderr: string[] = [];
    const all = eachAgentOutput(block, OUTPUT_EVENT, (match) => (match[2] === "stdout" ? stdout : stderr).push(match[1]!));
    if (!all) return false;
    const stdoutText = stdout.length > 0 ? unescaped(stdout.join("\\n")) : "";
    const stderrText = stderr.length > 0 ? unescaped(stderr.join("\\n")) : "";
    if (stdoutText === null || stderrText === null) return false; // an invalid escape: skipped event by event
    if (stdout.length > 0) this.#append("stdout", stdoutText, false);
    if (stderr.length > 0) this.#append("stderr", stderrText, false);
    return true;
  }

  /**
   * Take a block made of `output_batch` events only, at once; false (nothing taken) for any other.
   * Each array becomes its escaped strings joined by the escape `\n` (one replace, no string per
   * line), and each stream's text is unescaped by one `JSON.parse`.
   */
  #takeBatches(block: string): boolean {
    const stdout: string[] = [];
    const stderr: string[] = [];
    let strings = true;
    const all = eachAgentOutput(block, BATCH_EVENT, (match) => {
      // A body that does not end with a quote is no list of strings (a batch with `continued`):
      // known without replacing its MiB.
      const lines = strings && match[2]!.endsWith('"') ? batchLines(match[2]!) : null;
      if (lines === null) strings = false;
      else (match[1] === "stdout" ? stdout : stderr).push(lines);
    });
    if (!all || !strings) return false;
    const stdoutText = stdout.length > 0 ? unescaped(stdout.join("\\n")) : "";
    const stderrText = stderr.length > 0 ? unescaped(stderr.join("\\n")) : "";
    if (stdoutText === null || stderrText === null) return false;
    if (stdout.length > 0) this.#append("stdout", stdoutText, false);
    if (stderr.length > 0) this.#append("stderr", stderrText, false);
    return true;
  }

  /**
   * Adds `text` (lines joined with `"\n"`) to the output of `stream`: to its last piece when the
   * line that ends it goes on (a piece of a cut line), else as a piece of its own. `goesOn` says
   * whether the last line of `text` goes on in turn.
   */
  #append(stream: "stdout" | "stderr", text: string, goesOn: boolean): void {
    const pieces = stream === "stderr" ? this.#stderr : this.#stdout;
    if (stream === "stderr" ? this.#stderrGoesOn : this.#stdoutGoesOn) pieces[pieces.length - 1] += text;
    else pieces.push(text);
    if (stream === "stderr") this.#stderrGoesOn = goesOn;
    else this.#stdoutGoesOn = goesOn;
  }

  /** Take one event; true once the exit event has arrived. */
  add(event: Event): boolean {
    const stream = event.stream === "stderr" ? "stderr" : "stdout";
    if (typeof event.line === "string") {
      this.#append(stream, event.line, event.continued === true);
      return false;
    }
    // An `output_batch` event: the lines of one read (the SDK asks for them with `batch_output`).
    if (Array.isArray(event.lines) && event.lines.length > 0) {
      const lines = event.lines as unknown[];
      const continued = indexSet(event.continued);
      const text = joinedBatch(lines, continued);
      if (text !== null) this.#append(stream, text, continued.has(lines.length - 1));
      return false;
    }
    if ((event.exit_code !== undefined && event.exit_code !== null) || (event.signal !== undefined && event.signal !== null)) {
      this.#exit = event;
      return true;
    }
    if (Number.isInteger(event.pid) && this.pid === null) {
      this.pid = event.pid as number;
      return false;
    }
    if (typeof event.error === "string" && event.error) {
      const code = typeof event.code === "string" ? ` (${event.code})` : "";
      throw new SandboxError(`command failed in the sandbox${code}: ${event.error}`);
    }
    return false;
  }

  result(): CommandResult {
    if (this.#exit === null) {
      throw new SandboxConnectionError("command output stream ended without an exit event");
    }
    const signal = typeof this.#exit.signal === "number" ? this.#exit.signal : null;
    const exitCode = typeof this.#exit.exit_code === "number" ? this.#exit.exit_code : -(signal ?? 0);
    return {
      stdout: this.#stdout.join("\n"),
      stderr: this.#stderr.join("\n"),
      exitCode,
      signal,
      reason: typeof this.#exit.reason === "string" ? this.#exit.reason : null,
      pid: this.pid,
    };
  }
}

/** Read a `processes/run` stream to its exit event (stopping there cancels the rest). */
export async function collectRun(chunks: AsyncIterable<Uint8Array>): Promise<CommandResult> {
  const collector = new RunCollector();
  // After the exit event the body is read to its end (the agent ends it there), so that the
  // connection is kept for the next request instead of a new one (a TLS handshake) per run;
  // anything more after it is not read.
  let done = false;
  try {
    for await (const chunk of chunks) {
      if (done) break;
      done = collector.feed(chunk);
    }
  } catch (error) {
    if (!done) throw error; // after the exit event, the result stands
  }
  return collector.finish();
}
