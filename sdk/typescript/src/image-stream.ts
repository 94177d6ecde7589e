/**
 * The event streams of pulls and builds (`Accept: text/event-stream`), decoded into typed
 * {@link ImageProgressEvent}s and their result: the image of the `done` event, or the mapped
 * error of the `error` event.
 */

import { SandboxConnectionError } from "./errors.js";
import { apiError } from "./http.js";
import { imageProgressEventFromWire, type ImageDoneEvent, type ImageErrorEvent, type ImageInfo, type ImageProgressEvent } from "./models.js";
import { decodeBlock, SSEBlocks } from "./sse.js";

/**
 * Feed it the body's chunks with {@link feed} (each call answers the events it completed, to pass
 * on) until {@link finished} or the end of the stream, then {@link close} (the events of an
 * unterminated last block), then {@link result}. Events after `done` or `error` are ignored.
 */
export class ImageProgressCollector {
  readonly #what: string;
  readonly #blocks = new SSEBlocks();
  #done: ImageDoneEvent | null = null;
  #error: ImageErrorEvent | null = null;

  constructor(what: string) {
    this.#what = what;
  }

  /** Whether the `done` or `error` event arrived (stop reading then). */
  get finished(): boolean {
    return this.#done !== null || this.#error !== null;
  }

  feed(chunk: Uint8Array): ImageProgressEvent[] {
    const block = this.#blocks.feed(chunk);
    return block === null ? [] : this.#take(block);
  }

  close(): ImageProgressEvent[] {
    return this.finished ? [] : this.#take(this.#blocks.close());
  }

  #take(block: string): ImageProgressEvent[] {
    const events: ImageProgressEvent[] = [];
    for (const data of decodeBlock(block)) {
      if (this.finished) break;
      const event = imageProgressEventFromWire(data);
      if (event === null) continue;
      if (event.event === "done") this.#done = event;
      else if (event.event === "error") this.#error = event;
      events.push(event);
    }
    return events;
  }

  /**
   * The stored image; throws the mapped error of an `error` event (with its `code`), or
   * {@link SandboxConnectionError} when the stream ended without either.
   */
  result(): ImageInfo {
    if (this.#error !== null) {
      const { status, message, code } = this.#error;
      throw apiError(status, { message: message || `${this.#what} failed`, code: code ?? undefined, requestId: undefined }, { image: true });
    }
    if (this.#done === null) throw new SandboxConnectionError(`the ${this.#what} event stream ended before its done event`);
    return this.#done.image;
  }
}
