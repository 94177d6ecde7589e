/**
 * Images described in TypeScript and built by the server ({@link SandboxClient.buildImage}):
 *
 * ```ts
 * import { Image, SandboxClient } from "alcove";
 *
 * const image = new Image("tools/jq:1", { base: "alcove/debian" })
 *   .run("apt-get update && apt-get install -y jq")
 *   .copy("scripts/", "/opt/scripts")
 *   .env({ LANG: "C.UTF-8" })
 *   .workdir("/srv");
 * console.log(image.dockerfile());
 * const info = await new SandboxClient().buildImage(image);
 * ```
 *
 * An {@link Image} is immutable: each method returns a new one, so a shared base can be extended
 * in several ways. Nothing is read from disk until the build: a `copy` source that does not exist
 * throws then (from {@link Image.writeContext}).
 */

import { promises as fs } from "node:fs";
import path from "node:path";

import { addPath, type TarWriter } from "./context.js";

/** The base of an {@link Image} that names none: the server's default image. */
export const DEFAULT_BASE_IMAGE = "alcove/debian";
/** Where the build context holds the sources of `copy`: `ctx/<n>/<name>` for the n-th copy. */
export const CONTEXT_DIR = "ctx";

/** How an image hands its steps to the next one (not part of {@link ImageOptions}). */
const STEPS = Symbol("steps");
const ENV_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;
const UNSAFE_NAME = /[^A-Za-z0-9._-]/g;
const PLAIN_ARGUMENT = /^[^\s"'\\[\]$]+$/;

type Step =
  | { keyword: "RUN" | "WORKDIR" | "USER"; argument: string }
  | { keyword: "COPY"; source: string; destination: string }
  | { keyword: "ENV"; pairs: [string, string][] }
  | { keyword: "ENTRYPOINT" | "CMD"; command: string[] }
  | { keyword: "EXPOSE"; ports: number[] };

function text(value: unknown, what: string, oneLine = true): string {
  if (typeof value !== "string" || !value.trim()) {
    throw new TypeError(`${what} must be a non-empty string, got ${JSON.stringify(value)}`);
  }
  if (oneLine && /[\r\n]/.test(value)) throw new TypeError(`${what} must be one line, got ${JSON.stringify(value)}`);
  return value;
}

/** A JSON array of strings, spaced as the Python SDK renders it (`["a", "b"]`). */
function jsonList(items: string[]): string {
  return `[${items.map((item) => JSON.stringify(item)).join(", ")}]`;
}

function strings(value: unknown, what: string): string[] {
  if (!Array.isArray(value) || value.length === 0 || !value.every((item) => typeof item === "string")) {
    throw new TypeError(`${what} must be a non-empty list of strings (the exec form), got ${JSON.stringify(value)}`);
  }
  return [...(value as string[])];
}

/** Options of the {@link Image} constructor. */
export interface ImageOptions {
  /** The image it starts `FROM` (default `alcove/debian`, the server's default image). */
  base?: string;
}

/**
 * A container image to build: a base image and the steps that follow, rendered as a Dockerfile
 * ({@link dockerfile}) and built by `client.buildImage(image)`.
 *
 * `name` is the built image's reference (`name:tag`). Each method returns a new {@link Image}
 * with one more step; the steps render in the order they were added.
 */
export class Image {
  /** The built image's reference (`name:tag`). */
  readonly name: string;
  /** The image this one starts `FROM`. */
  readonly base: string;
  readonly #steps: readonly Step[];

  constructor(name: string, options: ImageOptions = {}) {
    const steps = (options as { [STEPS]?: readonly Step[] })[STEPS] ?? [];
    this.name = text(name, "name");
    this.base = text(options.base ?? DEFAULT_BASE_IMAGE, "base");
    if (/\s/.test(this.name + this.base)) {
      throw new TypeError(`image references have no whitespace, got ${JSON.stringify(name)} and ${JSON.stringify(this.base)}`);
    }
    this.#steps = Object.freeze([...steps]);
  }

  toString(): string {
    return `Image(name=${this.name}, base=${this.base}, steps=${this.#steps.length})`;
  }

  #with(step: Step): Image {
    const options: ImageOptions & { [STEPS]: readonly Step[] } = { base: this.base, [STEPS]: [...this.#steps, step] };
    return new Image(this.name, options);
  }

  /**
   * Run a shell command (`/bin/sh -c`) at build time, as `RUN` in the shell form. A command of
   * several lines (or ending with a backslash) keeps its exact meaning: it is rendered in the exec
   * form `RUN ["/bin/sh", "-c", "<command>"]`, since a Dockerfile line cannot hold a newline and a
   * continuation would join the lines into one command.
   */
  run(command: string): Image {
    return this.#with({ keyword: "RUN", argument: text(command, "command", false) });
  }

  /**
   * Copy a local file or directory (its contents, as `COPY` does) to `destination` in the image.
   * `source` is resolved against the current directory now and read at build time (a missing one
   * throws then); links inside a directory are copied as links.
   */
  copy(source: string, destination: string): Image {
    return this.#with({ keyword: "COPY", source: path.resolve(text(source, "source")), destination: text(destination, "destination") });
  }

  /**
   * Set environment variables (`ENV K="V"`, the value JSON-quoted; `$NAME` in a value is expanded
   * by the build, as in any Dockerfile: `{ PATH: "/opt/bin:$PATH" }`).
   */
  env(values: Record<string, string>): Image {
    if (typeof values !== "object" || values === null || Array.isArray(values) || Object.keys(values).length === 0) {
      throw new TypeError(`env takes a non-empty record of names to values, got ${JSON.stringify(values)}`);
    }
    const pairs: [string, string][] = [];
    for (const [key, value] of Object.entries(values)) {
      if (!ENV_NAME.test(key)) throw new TypeError(`environment variable names are [A-Za-z_][A-Za-z0-9_]*, got ${JSON.stringify(key)}`);
      if (typeof value !== "string") throw new TypeError(`the value of ${key} must be a string, got ${typeof value}`);
      if (/[\r\n]/.test(value)) throw new TypeError(`the value of ${key} must be one line, got ${JSON.stringify(value)}`);
      pairs.push([key, value]);
    }
    return this.#with({ keyword: "ENV", pairs });
  }

  /** Set the working directory of later steps and of the image's processes (`WORKDIR`). */
  workdir(dir: string): Image {
    return this.#with({ keyword: "WORKDIR", argument: text(dir, "dir") });
  }

  /** Run later steps and the image's processes as this user (`USER name`, `uid[:gid]`). */
  user(name: string): Image {
    return this.#with({ keyword: "USER", argument: text(name, "name") });
  }

  /** Set the image's entrypoint (`ENTRYPOINT`, exec form). */
  entrypoint(command: string[]): Image {
    return this.#with({ keyword: "ENTRYPOINT", command: strings(command, "entrypoint") });
  }

  /** Set the image's default command (`CMD`, exec form). */
  cmd(command: string[]): Image {
    return this.#with({ keyword: "CMD", command: strings(command, "cmd") });
  }

  /** Declare TCP ports the image serves on (`EXPOSE`). */
  expose(port: number, ...ports: number[]): Image {
    const all = [port, ...ports];
    for (const number of all) {
      if (typeof number !== "number" || !Number.isInteger(number) || number < 1 || number > 65535) {
        throw new RangeError(`ports are integers between 1 and 65535, got ${JSON.stringify(number)}`);
      }
    }
    return this.#with({ keyword: "EXPOSE", ports: all });
  }

  /**
   * The `copy` sources as [path in the build context, local path], in order: the n-th copy's
   * source goes to `ctx/<n>/<its name>`, so two sources never collide.
   */
  contextFiles(): [string, string][] {
    const files: [string, string][] = [];
    for (const step of this.#steps) {
      if (step.keyword !== "COPY") continue;
      const name = path.basename(step.source).replace(UNSAFE_NAME, "_") || "root";
      files.push([`${CONTEXT_DIR}/${files.length}/${name}`, step.source]);
    }
    return files;
  }

  /** The Dockerfile of this image (`COPY` reads from the context of {@link writeContext}). */
  dockerfile(): string {
    const lines = [`FROM ${this.base}`];
    const sources = this.contextFiles();
    let copies = 0;
    for (const step of this.#steps) {
      switch (step.keyword) {
        case "RUN": {
          const command = step.argument;
          const exec = /[\r\n]/.test(command) || command.trimEnd().endsWith("\\");
          lines.push(`RUN ${exec ? jsonList(["/bin/sh", "-c", command]) : command}`);
          break;
        }
        case "COPY": {
          const [contextPath] = sources[copies++]!;
          lines.push(
            PLAIN_ARGUMENT.test(step.destination)
              ? `COPY ${contextPath} ${step.destination}`
              : `COPY ${jsonList([contextPath, step.destination])}`,
          );
          break;
        }
        case "ENV":
          lines.push(`ENV ${step.pairs.map(([key, value]) => `${key}=${JSON.stringify(value)}`).join(" ")}`);
          break;
        case "ENTRYPOINT":
        case "CMD":
          lines.push(`${step.keyword} ${jsonList(step.command)}`);
          break;
        case "EXPOSE":
          lines.push(`EXPOSE ${step.ports.join(" ")}`);
          break;
        default:
          lines.push(`${step.keyword} ${step.argument}`);
      }
    }
    return lines.join("\n") + "\n";
  }

  /**
   * Write the build context, a tar holding `Dockerfile` ({@link dockerfile}) and the `copy`
   * sources under `ctx/`. Throws for a missing source.
   */
  async writeContext(tar: TarWriter): Promise<void> {
    const files = this.contextFiles();
    for (const [, local] of files) {
      try {
        await fs.stat(local);
      } catch {
        throw new Error(`image ${this.name}: the source ${JSON.stringify(local)} of copy() does not exist`);
      }
    }
    await tar.bytes("Dockerfile", Buffer.from(this.dockerfile(), "utf8"));
    const directories = new Set([CONTEXT_DIR, ...files.map(([contextPath]) => contextPath.slice(0, contextPath.lastIndexOf("/")))]);
    for (const directory of [...directories].sort()) await tar.directory(directory);
    // The named source itself is followed when it is a link (it was named on purpose).
    for (const [contextPath, local] of files) await addPath(tar, await fs.realpath(local), contextPath);
  }
}
