/**
 * Server-sent events of the agent API: `POST /api/v1/processes/run` and the `follow` streams
 * (docs/protocol/streaming.md).
 *
 * Events are recognised by shape, never by their `event:` name. `event:`, `id:` and `retry:`
 * lines and `:` comments (keep-alives) are ignored; data that is not a JSON object is skipped.
 */

import { SandboxConnectionError, SandboxError } from "./errors.js";
import type { CommandResult, OutputEvent, OutputStream } from "./models.js";
import { outputEventFromWire } from "./models.js";

type Event = Record<string, unknown>;

function jsonObject(text: string): Event | undefined {
  try {
    const value: unknown = JSON.parse(text);
    return typeof value === "object" && value !== null && !Array.isArray(value) ? (value as Event) : undefined;
  } catch {
    return undefined;
  }
}

/**
 * Split a byte stream into lines (`\n`, `\r\n` or `\r`), decoding UTF-8 across chunk
 * boundaries. The lines come without their ending.
 */
export async function* iterLines(chunks: AsyncIterable<Uint8Array>): AsyncGenerator<string, void, undefined> {
  const decoder = new TextDecoder();
  let buffer = "";
  const drain = function* (final: boolean): Generator<string> {
    let start = 0;
    for (let i = 0; i < buffer.length; i++) {
      const char = buffer[i];
      if (char === "\n") {
        yield buffer.slice(start, i);
        start = i + 1;
      } else if (char === "\r") {
        if (i + 1 === buffer.length && !final) break; // a "\n" may follow in the next chunk
        yield buffer.slice(start, i);
        if (buffer[i + 1] === "\n") i++;
        start = i + 1;
      }
    }
    buffer = buffer.slice(start);
    if (final && buffer) {
      yield buffer;
      buffer = "";
    }
  };
  for await (const chunk of chunks) {
    buffer += decoder.decode(chunk, { stream: true });
    yield* drain(false);
  }
  buffer += decoder.decode();
  yield* drain(true);
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

/** The JSON events of an SSE byte stream. */
export async function* iterEvents(chunks: AsyncIterable<Uint8Array>): AsyncGenerator<Event, void, undefined> {
  const decoder = new SSEDecoder();
  for await (const line of iterLines(chunks)) yield* decoder.feed(line);
  yield* decoder.flush();
}

/** Accumulates the events of `processes/run` (recognised by shape) into a {@link CommandResult}. */
export class RunCollector {
  readonly stdout: string[] = [];
  readonly stderr: string[] = [];
  pid: number | null = null;
  private exit: Event | null = null;

  /** Take one event; true once the exit event has arrived. */
  add(event: Event): boolean {
    if (typeof event.line === "string") {
      (event.stream === "stderr" ? this.stderr : this.stdout).push(event.line);
      return false;
    }
    if ((event.exit_code !== undefined && event.exit_code !== null) || (event.signal !== undefined && event.signal !== null)) {
      this.exit = event;
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
    if (this.exit === null) {
      throw new SandboxConnectionError("command output stream ended without an exit event");
    }
    const signal = typeof this.exit.signal === "number" ? this.exit.signal : null;
    const exitCode = typeof this.exit.exit_code === "number" ? this.exit.exit_code : -(signal ?? 0);
    return {
      stdout: this.stdout.join("\n"),
      stderr: this.stderr.join("\n"),
      exitCode,
      signal,
      reason: typeof this.exit.reason === "string" ? this.exit.reason : null,
      pid: this.pid,
    };
  }
}

/** Read a `processes/run` stream to its exit event. */
export async function collectRun(chunks: AsyncIterable<Uint8Array>): Promise<CommandResult> {
  const collector = new RunCollector();
  for await (const event of iterEvents(chunks)) {
    if (collector.add(event)) break;
  }
  return collector.result();
}

/** The output lines of a follow stream (`stream` defaults to the followed one when absent). */
export async function* iterOutputEvents(
  chunks: AsyncIterable<Uint8Array>,
  defaultStream: OutputStream | null,
): AsyncGenerator<OutputEvent, void, undefined> {
  for await (const event of iterEvents(chunks)) {
    const item = outputEventFromWire(event, defaultStream);
    if (item !== null) yield item;
  }
}
