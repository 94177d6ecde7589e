/**
 * Starting and stopping a real `alcove serve` on a free port with its own data directory
 * (the TypeScript twin of tests/framework/server.py).
 *
 * Binaries and images come from `ALCOVE_BIN` (default `<repo>/target/release/alcove`),
 * `ALCOVE_AGENT_PATH` (default `<repo>/target/x86_64-unknown-linux-gnu/release/alcove-agent`) and
 * `ALCOVE_IMAGES_DIR` (default `/var/lib/alcove/images`).
 */

import assert from "node:assert/strict";
import { spawn, type ChildProcess } from "node:child_process";
import { openSync, closeSync, readFileSync, readdirSync, readlinkSync, mkdirSync, writeSync, unlinkSync, existsSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import net from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";

import { SandboxClient, type Sandbox, type SandboxInfo } from "../../src/index.js";

/** The repository root (this file runs from sdk/typescript/build/test/e2e/). */
const REPO = fileURLToPath(new URL("../../../../../", import.meta.url));

function setting(name: string, fallback: string): string {
  return process.env[name] || fallback;
}

export const ALCOVE_BIN = setting("ALCOVE_BIN", join(REPO, "target/release/alcove"));
export const AGENT_PATH = setting("ALCOVE_AGENT_PATH", join(REPO, "target/x86_64-unknown-linux-gnu/release/alcove-agent"));
export const IMAGES_DIR = setting("ALCOVE_IMAGES_DIR", "/var/lib/alcove/images");

// Ports `freePort` handed out in this process: servers made before any of them listens must
// not be given the same one, which the kernel may offer twice.
const portsHandedOut = new Set<number>();

/** A port nothing listens on now, not handed out before by this process. */
async function freePort(): Promise<number> {
  for (;;) {
    const server = net.createServer();
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    const port = (server.address() as net.AddressInfo).port;
    await new Promise<void>((resolve) => server.close(() => resolve()));
    if (!portsHandedOut.has(port)) {
      portsHandedOut.add(port);
      return port;
    }
  }
}

/** Inodes of the sockets listening on TCP `port` in the network namespace of `pid`. */
function listeningSockets(pid: number, port: number): Set<string> {
  const found = new Set<string>();
  for (const table of ["tcp", "tcp6"]) {
    let rows: string[];
    try {
      rows = readFileSync(`/proc/${pid}/net/${table}`, "utf8").split("\n").slice(1);
    } catch {
      continue;
    }
    for (const row of rows) {
      const fields = row.trim().split(/\s+/);
      if (fields.length > 9 && fields[3] === "0A" && parseInt(fields[1].split(":").pop() ?? "", 16) === port) {
        found.add(fields[9]);
      }
    }
  }
  return found;
}

/** Whether process `pid` itself listens on `port` (whoever answers there may be another server). */
function holdsListener(pid: number, port: number): boolean {
  const sockets = listeningSockets(pid, port);
  let fds: string[];
  try {
    fds = readdirSync(`/proc/${pid}/fd`);
  } catch {
    return false;
  }
  return fds.some((fd) => {
    try {
      const target = readlinkSync(`/proc/${pid}/fd/${fd}`);
      return target.startsWith("socket:[") && sockets.has(target.slice("socket:[".length, -1));
    } catch {
      return false;
    }
  });
}

function randomInt(low: number, high: number): number {
  return low + Math.floor(Math.random() * (high - low + 1));
}

export interface ServerOptions {
  /** API keys the server accepts (none: auth off). */
  apiKeys?: string[];
}

/** One `alcove serve` process. */
// Claims on subnets shared by every test process of the host, the Python suite's included (one
// file per subnet holding the claimer's pid, as tests/framework/server.py keeps them): servers
// of suites run side by side must not pick the same subnet, or the host routes one server's
// sandbox addresses to the other's sandboxes.
const SUBNET_CLAIMS = join(tmpdir(), "alcove-test-subnets");
const claimedSubnets: string[] = [];

/** Whether the host routes anything inside the /18 `subnet` (a server refuses such a subnet). */
function routed(subnet: string): boolean {
  const [a, b, c] = subnet.split("/")[0].split(".").map(Number);
  let lines: string[];
  try {
    lines = readFileSync("/proc/net/route", "utf8").split("\n").slice(1);
  } catch {
    return false;
  }
  for (const line of lines) {
    const fields = line.trim().split(/\s+/);
    if (fields.length < 8) continue;
    const word = parseInt(fields[1], 16);
    // The kernel prints the network-order word as a native (little-endian) number.
    const [d0, d1, d2] = [word & 0xff, (word >>> 8) & 0xff, (word >>> 16) & 0xff];
    if (d0 === a && d1 === b && d2 >= c && d2 < c + 64) return true;
  }
  return false;
}

function claimSubnet(): string {
  mkdirSync(SUBNET_CLAIMS, { recursive: true, mode: 0o700 });
  for (;;) {
    const subnet = `10.${randomInt(100, 199)}.${[0, 64, 128, 192][randomInt(0, 3)]}.0/18`;
    if (claimedSubnets.includes(subnet) || routed(subnet)) continue;
    const claim = join(SUBNET_CLAIMS, subnet.replace("/", "_"));
    try {
      const fd = openSync(claim, "wx", 0o600);
      writeSync(fd, String(process.pid));
      closeSync(fd);
      claimedSubnets.push(subnet);
      return subnet;
    } catch {
      // Held: by a live process, or by one that is gone (then freed for a later attempt).
      let holder = 0;
      try {
        holder = Number(readFileSync(claim, "utf8")) || 0;
      } catch {
        holder = 0;
      }
      if (!holder || !existsSync(`/proc/${holder}`)) {
        try {
          unlinkSync(claim);
        } catch {
          // taken over by another process meanwhile
        }
      }
    }
  }
}

process.on("exit", () => {
  for (const subnet of claimedSubnets) {
    const claim = join(SUBNET_CLAIMS, subnet.replace("/", "_"));
    try {
      if (Number(readFileSync(claim, "utf8")) === process.pid) unlinkSync(claim);
    } catch {
      // already gone
    }
  }
});

export class AlcoveServer {
  readonly port: number;
  readonly dataDir: string;
  readonly apiKeys: string[];
  #proc: ChildProcess | null = null;
  #exited: Promise<void> = Promise.resolve();

  private constructor(port: number, dataDir: string, apiKeys: string[]) {
    this.port = port;
    this.dataDir = dataDir;
    this.apiKeys = apiKeys;
  }

  /**
   * Start a server and wait until `/healthz` answers from it. A port someone took since
   * `freePort` (the server exits: address in use) is swapped for another.
   */
  static async start(options: ServerOptions = {}, timeoutMs = 30_000): Promise<AlcoveServer> {
    for (let attempt = 1; ; attempt++) {
      const server = new AlcoveServer(await freePort(), await mkdtemp(join(tmpdir(), "alcove-ts-e2e-")), options.apiKeys ?? []);
      try {
        await server.#launch(timeoutMs);
        return server;
      } catch (error) {
        const taken = server.logTail(400).includes("Address already in use");
        await server.stop();
        if (!taken || attempt === 3) throw error;
      }
    }
  }

  async #launch(timeoutMs: number): Promise<void> {
    // A subnet of its own, so that concurrent servers never share addresses.
    const subnet = claimSubnet();
    const argv = [
      "serve",
      "--listen", `127.0.0.1:${this.port}`,
      "--data-dir", this.dataDir,
      "--images-dir", IMAGES_DIR,
      "--agent-path", AGENT_PATH,
      "--subnet", subnet,
      ...this.apiKeys.flatMap((key) => ["--api-key", key]),
    ];
    const log = openSync(this.logPath, "a");
    const env: NodeJS.ProcessEnv = { ...process.env, RUST_LOG: process.env.RUST_LOG ?? "info" };
    delete env.ALCOVE_API_KEYS;
    delete env.ALCOVE_LISTEN;
    const proc = spawn(ALCOVE_BIN, argv, { stdio: ["ignore", log, log], env });
    closeSync(log);
    this.#proc = proc;
    this.#exited = new Promise((resolve) => proc.once("exit", () => resolve()));
    let spawnError: Error | undefined;
    proc.once("error", (error) => (spawnError = error));
    const deadline = Date.now() + timeoutMs;
    while (Date.now() < deadline) {
      if (spawnError) throw new Error(`could not start ${ALCOVE_BIN}: ${spawnError.message}`);
      if (proc.exitCode !== null) throw new Error(`alcove serve exited early:\n${this.logTail()}`);
      try {
        const response = await fetch(`${this.url}/healthz`, { signal: AbortSignal.timeout(1000) });
        // Healthy only once this process listens: a server that took the port first answers
        // too, and this one exits.
        if (response.ok && proc.pid !== undefined && holdsListener(proc.pid, this.port)) return;
      } catch {
        // not listening yet
      }
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    throw new Error(`alcove serve did not become healthy:\n${this.logTail()}`);
  }

  get url(): string {
    return `http://localhost:${this.port}`;
  }

  get logPath(): string {
    return join(this.dataDir, "server.log");
  }

  logTail(lines = 40): string {
    try {
      return readFileSync(this.logPath, "utf8").split("\n").slice(-lines).join("\n");
    } catch {
      return "(no log)";
    }
  }

  /** A client of this server (with its first API key, if any). */
  client(options: { apiKey?: string; timeoutSecs?: number } = {}): SandboxClient {
    return new SandboxClient({ apiUrl: this.url, apiKey: options.apiKey ?? this.apiKeys[0], timeoutSecs: options.timeoutSecs ?? 120 });
  }

  /** Sandboxes that are neither terminated nor failed. */
  async liveSandboxes(): Promise<SandboxInfo[]> {
    const all = await this.client().list();
    return all.filter((sandbox) => sandbox.status !== "terminated" && sandbox.status !== "failed");
  }

  /** SIGTERM (SIGKILL after 30 s), then remove the data directory. */
  async stop(): Promise<void> {
    const proc = this.#proc;
    this.#proc = null;
    if (proc && proc.exitCode === null && proc.signalCode === null) {
      proc.kill("SIGTERM");
      const timer = setTimeout(() => proc.kill("SIGKILL"), 30_000);
      await this.#exited;
      clearTimeout(timer);
    }
    await rm(this.dataDir, { recursive: true, force: true });
  }
}

/**
 * End a suite: terminate its `sandbox` (if it made one), delete whatever else it left running,
 * stop the server, and fail when anything was left running (a test did not clean up after
 * itself).
 */
export async function shutdown(server: AlcoveServer | undefined, sandbox?: Sandbox): Promise<void> {
  await sandbox?.terminate().catch(() => undefined);
  if (!server) return;
  let leaked: SandboxInfo[] = [];
  try {
    leaked = await server.liveSandboxes();
    const client = server.client();
    for (const sandbox of leaked) await client.delete(sandbox.sandboxId).catch(() => undefined);
  } finally {
    await server.stop();
  }
  const names = leaked.map((sandbox) => `${sandbox.sandboxId} (${sandbox.name ?? "ephemeral"}, ${sandbox.status})`);
  assert.deepEqual(names, [], "sandboxes left running");
}

/** Poll `check` until it returns a value other than undefined, or fail after `timeoutMs`. */
export async function eventually<T>(what: string, check: () => Promise<T | undefined>, timeoutMs = 15_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let lastError: unknown;
  while (Date.now() < deadline) {
    try {
      const value = await check();
      if (value !== undefined) return value;
    } catch (error) {
      lastError = error;
    }
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  throw new Error(`${what} did not happen within ${timeoutMs} ms${lastError ? `: ${String(lastError)}` : ""}`);
}
