/**
 * Build contexts: tar archives of a directory (honouring its `.dockerignore`) or of the files of
 * an {@link Image}, written to a temporary file that is then streamed.
 *
 * The archive is POSIX tar (ustar headers, with a PAX extended header before an entry whose
 * name, link target or size does not fit them), written here in a few dozen lines rather than
 * with a dependency. Symbolic links are stored as links, never followed, so nothing outside the
 * directory gets in. Only directories, regular files and links are stored (sockets, FIFOs and
 * devices are left out); owners are stored as root (a build's `COPY` makes files root's unless
 * told otherwise).
 */

import { constants, promises as fs } from "node:fs";
import type { FileHandle } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";

export const DOCKERIGNORE = ".dockerignore";
const BLOCK = 512;
const READ_CHUNK = 64 * 1024;

// ---------------------------------------------------------------------------------------------
// .dockerignore

interface Pattern {
  regex: RegExp;
  /** A `!` line: matching paths are included again. */
  exclusion: boolean;
}

function escapeRegex(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\/]/g, "\\$&");
}

function patternRegex(pattern: string): RegExp {
  let out = "";
  for (let i = 0; i < pattern.length; ) {
    const ch = pattern[i]!;
    if (pattern.startsWith("**", i)) {
      i += 2;
      if (pattern[i] === "/") {
        out += "(?:.*/)?";
        i += 1;
      } else {
        out += ".*";
      }
      continue;
    }
    if (ch === "*") out += "[^/]*";
    else if (ch === "?") out += "[^/]";
    else if (ch === "[") {
      const end = pattern.indexOf("]", i + 2);
      if (end >= 0) {
        let body = pattern.slice(i + 1, end);
        const negate = body.startsWith("^") || body.startsWith("!");
        if (negate) body = body.slice(1);
        out += `[${negate ? "^" : ""}${body.replace(/\\/g, "\\\\")}]`;
        i = end + 1;
        continue;
      }
      out += "\\[";
    } else if (ch === "\\" && i + 1 < pattern.length) {
      out += escapeRegex(pattern[i + 1]!);
      i += 2;
      continue;
    } else out += escapeRegex(ch);
    i += 1;
  }
  return new RegExp(`^${out}$`, "s");
}

/**
 * The patterns of a `.dockerignore`: one per line, `#` comments, `!` re-includes.
 *
 * A pattern is a path relative to the context (a leading `/` or `./` changes nothing) in which
 * `*` stands for any characters but `/`, `?` for one, `[...]` for a class and `**` for any number
 * of directories. A path is left out when the last pattern that matches it or one of its parent
 * directories is not a `!` one.
 */
export class DockerIgnore {
  readonly #patterns: Pattern[] = [];

  constructor(lines: Iterable<string>) {
    for (const raw of lines) {
      let line = raw.trim();
      if (!line || line.startsWith("#")) continue;
      const exclusion = line.startsWith("!");
      if (exclusion) line = line.slice(1).trim();
      const cleaned = line
        .split("/")
        .filter((part) => part !== "" && part !== ".")
        .join("/");
      if (cleaned) this.#patterns.push({ regex: patternRegex(cleaned), exclusion });
    }
  }

  /** The `.dockerignore` of a directory (no patterns when it has none). */
  static async read(contextDir: string): Promise<DockerIgnore> {
    try {
      return new DockerIgnore((await fs.readFile(path.join(contextDir, DOCKERIGNORE), "utf8")).split(/\r?\n/));
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === "ENOENT") return new DockerIgnore([]);
      throw error;
    }
  }

  /** Whether there are patterns at all. */
  get empty(): boolean {
    return this.#patterns.length === 0;
  }

  /** Whether a `!` line may re-include a path below a directory left out. */
  get hasExclusions(): boolean {
    return this.#patterns.some((pattern) => pattern.exclusion);
  }

  /** Whether the `/`-separated path (relative to the context) is left out. */
  excluded(relative: string): boolean {
    const candidates = [relative];
    for (let at = relative.lastIndexOf("/"); at > 0; at = relative.lastIndexOf("/", at - 1)) {
      candidates.push(relative.slice(0, at));
    }
    let result = false;
    for (const pattern of this.#patterns) {
      if (candidates.some((candidate) => pattern.regex.test(candidate))) result = !pattern.exclusion;
    }
    return result;
  }
}

// ---------------------------------------------------------------------------------------------
// Tar

interface Entry {
  name: string;
  type: "file" | "directory" | "symlink";
  mode: number;
  mtime: number;
  size: number;
  linkname?: string;
}

function octal(value: number, width: number): string {
  return value.toString(8).padStart(width - 1, "0");
}

function paxRecord(key: string, value: string): string {
  const body = ` ${key}=${value}\n`;
  let length = Buffer.byteLength(body) + 1;
  while (String(length).length + Buffer.byteLength(body) !== length) length = String(length).length + Buffer.byteLength(body);
  return `${length}${body}`;
}

function fits(text: string, bytes: number): boolean {
  return Buffer.byteLength(text) <= bytes && /^[\x20-\x7e]*$/.test(text);
}

function header(entry: Entry, typeflag: string): Buffer {
  const block = Buffer.alloc(BLOCK);
  const put = (text: string, offset: number, width: number): void => {
    block.write(text, offset, Math.min(width, Buffer.byteLength(text)), "utf8");
  };
  put(entry.name.slice(0, 100), 0, 100);
  put(octal(entry.mode & 0o7777, 8), 100, 8);
  put(octal(0, 8), 108, 8);
  put(octal(0, 8), 116, 8);
  put(octal(entry.size < 0o77777777777 ? entry.size : 0, 12), 124, 12);
  put(octal(Math.max(0, Math.floor(entry.mtime)) % 0o77777777777, 12), 136, 12);
  block.fill(0x20, 148, 156);
  put(typeflag, 156, 1);
  put((entry.linkname ?? "").slice(0, 100), 157, 100);
  put("ustar\u000000", 257, 8);
  put("root", 265, 32);
  put("root", 297, 32);
  let sum = 0;
  for (const byte of block) sum += byte;
  put(`${octal(sum, 7)}\u0000 `, 148, 8);
  return block;
}

/** Writes a tar archive to an open file, entry by entry. */
export class TarWriter {
  readonly #file: FileHandle;

  constructor(file: FileHandle) {
    this.#file = file;
  }

  async #header(entry: Entry): Promise<void> {
    const records: string[] = [];
    if (!fits(entry.name, 100)) records.push(paxRecord("path", entry.name));
    if (entry.linkname !== undefined && !fits(entry.linkname, 100)) records.push(paxRecord("linkpath", entry.linkname));
    if (entry.size >= 0o77777777777) records.push(paxRecord("size", String(entry.size)));
    if (records.length > 0) {
      const data = Buffer.from(records.join(""), "utf8");
      const base = entry.name.replace(/[^\x20-\x7e]/g, "_").slice(-80);
      await this.#file.write(header({ name: `PaxHeader/${base}`, type: "file", mode: 0o644, mtime: entry.mtime, size: data.length }, "x"));
      await this.#file.write(padded(data));
    }
    const type = entry.type === "file" ? "0" : entry.type === "directory" ? "5" : "2";
    const name = entry.type === "directory" && !entry.name.endsWith("/") ? `${entry.name}/` : entry.name;
    await this.#file.write(header({ ...entry, name: fits(name, 100) ? name : name.replace(/[^\x20-\x7e]/g, "_").slice(0, 100) }, type));
  }

  /** A directory entry. */
  async directory(name: string, mode = 0o755, mtime = Date.now() / 1000): Promise<void> {
    await this.#header({ name, type: "directory", mode, mtime, size: 0 });
  }

  /** A link entry (never followed). */
  async symlink(name: string, target: string, mode = 0o777, mtime = Date.now() / 1000): Promise<void> {
    await this.#header({ name, type: "symlink", mode, mtime, size: 0, linkname: target });
  }

  /** A file entry holding `data`. */
  async bytes(name: string, data: Uint8Array, mode = 0o644, mtime = Date.now() / 1000): Promise<void> {
    await this.#header({ name, type: "file", mode, mtime, size: data.length });
    await this.#file.write(padded(data));
  }

  /** A file entry copied from `source` in chunks; it must keep its size while it is read. */
  async file(name: string, source: string, size: number, mode: number, mtime: number): Promise<void> {
    await this.#header({ name, type: "file", mode, mtime, size });
    const input = await fs.open(source, constants.O_RDONLY | (constants.O_NOFOLLOW ?? 0));
    try {
      const buffer = Buffer.alloc(READ_CHUNK);
      let left = size;
      while (left > 0) {
        const { bytesRead } = await input.read(buffer, 0, Math.min(READ_CHUNK, left), null);
        if (bytesRead === 0) throw new Error(`${source} shrank while it was archived`);
        await this.#file.write(buffer.subarray(0, bytesRead));
        left -= bytesRead;
      }
    } finally {
      await input.close();
    }
    if (size % BLOCK !== 0) await this.#file.write(Buffer.alloc(BLOCK - (size % BLOCK)));
  }

  /** The two zero blocks that end an archive. */
  async finish(): Promise<void> {
    await this.#file.write(Buffer.alloc(BLOCK * 2));
  }
}

function padded(data: Uint8Array): Buffer {
  const rest = data.length % BLOCK;
  return rest === 0 ? Buffer.from(data) : Buffer.concat([data, Buffer.alloc(BLOCK - rest)]);
}

function byName(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

/**
 * Store `source` as `name`: a directory with everything under it (sorted, links kept as links),
 * a file, or a link. `relative` is its path in the context for `ignore`.
 */
export async function addPath(
  tar: TarWriter,
  source: string,
  name: string,
  ignore: DockerIgnore | null = null,
  relative = "",
): Promise<void> {
  const stat = await fs.lstat(source);
  const mtime = stat.mtimeMs / 1000;
  if (stat.isSymbolicLink()) {
    await tar.symlink(name, await fs.readlink(source), stat.mode, mtime);
  } else if (stat.isFile()) {
    await tar.file(name, source, stat.size, stat.mode, mtime);
  } else if (stat.isDirectory()) {
    await tar.directory(name, stat.mode, mtime);
    for (const child of (await fs.readdir(source)).sort(byName)) {
      const childRelative = relative ? `${relative}/${child}` : child;
      const childSource = path.join(source, child);
      if (ignore && ignore.excluded(childRelative)) {
        if (ignore.hasExclusions && (await isDirectory(childSource))) {
          await addChildren(tar, childSource, `${name}/${child}`, ignore, childRelative);
        }
        continue;
      }
      await addPath(tar, childSource, `${name}/${child}`, ignore, childRelative);
    }
  }
}

/** The entries below a directory left out, which a `!` line may bring back (not the directory itself). */
async function addChildren(tar: TarWriter, source: string, name: string, ignore: DockerIgnore, relative: string): Promise<void> {
  for (const child of (await fs.readdir(source)).sort(byName)) {
    const childSource = path.join(source, child);
    const childRelative = `${relative}/${child}`;
    if (!ignore.excluded(childRelative)) await addPath(tar, childSource, `${name}/${child}`, ignore, childRelative);
    else if (await isDirectory(childSource)) await addChildren(tar, childSource, `${name}/${child}`, ignore, childRelative);
  }
}

async function isDirectory(source: string): Promise<boolean> {
  return (await fs.lstat(source)).isDirectory();
}

/**
 * Write the tar of `contextDir`: everything but what its `.dockerignore` leaves out; the
 * Dockerfile (`dockerfile`, relative, `/`-separated) always goes in.
 */
export async function writeDirectoryContext(tar: TarWriter, contextDir: string, dockerfile: string): Promise<void> {
  const ignore = await DockerIgnore.read(contextDir);
  for (const child of (await fs.readdir(contextDir)).sort(byName)) {
    const source = path.join(contextDir, child);
    if (!ignore.empty && ignore.excluded(child)) {
      if (ignore.hasExclusions && (await isDirectory(source))) await addChildren(tar, source, child, ignore, child);
      continue;
    }
    await addPath(tar, source, child, ignore.empty ? null : ignore, child);
  }
  if (!ignore.empty && ignore.excluded(dockerfile)) await addPath(tar, path.join(contextDir, ...dockerfile.split("/")), dockerfile);
}

/** A build context written by `write` to a temporary file; call `remove` when done with it. */
export interface ContextFile {
  path: string;
  size: number;
  remove(): Promise<void>;
}

/** Write a tar with `write` into a new temporary file. */
export async function contextFile(write: (tar: TarWriter) => Promise<void>): Promise<ContextFile> {
  const dir = await fs.mkdtemp(path.join(tmpdir(), "alcove-context-"));
  const remove = (): Promise<void> => fs.rm(dir, { recursive: true, force: true });
  const file = path.join(dir, "context.tar");
  try {
    const handle = await fs.open(file, "wx", 0o600);
    try {
      const tar = new TarWriter(handle);
      await write(tar);
      await tar.finish();
    } finally {
      await handle.close();
    }
    return { path: file, size: (await fs.stat(file)).size, remove };
  } catch (error) {
    await remove();
    throw error;
  }
}

/**
 * A file's content as a stream of chunks, read as the stream is pulled (never whole). The file is
 * opened first, so a missing one throws before anything is sent.
 */
export async function fileStream(file: string): Promise<ReadableStream<Uint8Array>> {
  const handle = await fs.open(file, "r");
  let closed = false;
  const close = async (): Promise<void> => {
    if (!closed) {
      closed = true;
      await handle.close();
    }
  };
  return new ReadableStream<Uint8Array>({
    async pull(controller) {
      try {
        const buffer = Buffer.alloc(READ_CHUNK);
        const { bytesRead } = await handle.read(buffer, 0, READ_CHUNK, null);
        if (bytesRead === 0) {
          await close();
          controller.close();
        } else {
          controller.enqueue(buffer.subarray(0, bytesRead));
        }
      } catch (error) {
        await close();
        controller.error(error);
      }
    },
    async cancel() {
      await close();
    },
  });
}
