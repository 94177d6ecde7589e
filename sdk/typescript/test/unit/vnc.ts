/**
 * A real VNC server for the desktop tests: Xvfb on a free display (from :140 up, away from the
 * Python tests' range) and x11vnc servers on free localhost ports, with or without a password.
 */

import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { randomBytes } from "node:crypto";
import { existsSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import net from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";

export const VNC_PASSWORD = "tensorlake";
export const SCREEN_WIDTH = 1280;
export const SCREEN_HEIGHT = 800;
const FIRST_DISPLAY = 140;
const LAST_DISPLAY = 199;

const INSTALL = "apt-get install -y xvfb x11vnc xdotool x11-xserver-utils";

/**
 * Why the real-server tests cannot run here (Xvfb or x11vnc missing), or `null` when they can.
 * The X tools the tests also use (xdotool, xsetroot) make the tests that need them fail instead.
 */
export function missingTools(): string | null {
  const missing = ["Xvfb", "x11vnc"].filter((tool) => spawnSync("sh", ["-c", `command -v ${tool}`], { stdio: "ignore" }).status !== 0);
  return missing.length > 0 ? `${missing.join(" and ")} not installed (${INSTALL})` : null;
}

async function freePort(): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const port = (server.address() as net.AddressInfo).port;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

async function until(what: string, check: () => boolean | Promise<boolean>, timeoutMs = 15_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

/** Whether a TCP port on 127.0.0.1, or a Unix socket, accepts a connection. */
function accepts(where: number | string): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = typeof where === "number" ? net.connect({ host: "127.0.0.1", port: where }) : net.connect(where);
    socket.once("connect", () => {
      socket.destroy();
      resolve(true);
    });
    socket.once("error", () => resolve(false));
  });
}

function exited(child: ChildProcess): boolean {
  return child.exitCode !== null || child.signalCode !== null;
}

async function stop(child: ChildProcess): Promise<void> {
  if (exited(child)) return;
  const gone = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  child.kill("SIGTERM");
  const timer = setTimeout(() => child.kill("SIGKILL"), 3000);
  await gone;
  clearTimeout(timer);
}

/** One Xvfb display and the x11vnc servers on it. */
export class VncFixture {
  readonly display: number;
  readonly #dir: string;
  readonly #children: ChildProcess[] = [];
  readonly #logs = new Map<ChildProcess, string[]>();

  private constructor(display: number, dir: string) {
    this.display = display;
    this.#dir = dir;
  }

  /** Start Xvfb (1280x800x24) on the first free display from :140. */
  static async start(): Promise<VncFixture> {
    const dir = mkdtempSync(join(tmpdir(), "alcove-desktop-"));
    for (let display = FIRST_DISPLAY; display <= LAST_DISPLAY; display++) {
      if (existsSync(`/tmp/.X${display}-lock`) || existsSync(`/tmp/.X11-unix/X${display}`)) continue;
      const fixture = new VncFixture(display, dir);
      const xvfb = fixture.#spawn("Xvfb", [`:${display}`, "-screen", "0", `${SCREEN_WIDTH}x${SCREEN_HEIGHT}x24`, "-nolisten", "tcp"]);
      try {
        await until(`Xvfb :${display}`, () => exited(xvfb) || existsSync(`/tmp/.X11-unix/X${display}`));
        await until(`Xvfb :${display} to answer`, async () => exited(xvfb) || (await accepts(`/tmp/.X11-unix/X${display}`)));
      } catch (error) {
        await fixture.close();
        throw error;
      }
      if (!exited(xvfb)) return fixture;
      // Lost a race for this display to another server: try the next one.
      fixture.#children.length = 0;
    }
    rmSync(dir, { recursive: true, force: true });
    throw new Error(`no free X display between :${FIRST_DISPLAY} and :${LAST_DISPLAY}`);
  }

  /** Start x11vnc on a free localhost port (VNC authentication with `password`, else none). */
  async startVnc(password?: string, extra: string[] = []): Promise<number> {
    const auth: string[] = [];
    if (password !== undefined) {
      const file = join(this.#dir, `passwd-${this.#children.length}`);
      const stored = spawnSync("x11vnc", ["-storepasswd", password, file], { encoding: "utf8" });
      if (stored.status !== 0) throw new Error(`x11vnc -storepasswd failed: ${stored.stderr}`);
      auth.push("-rfbauth", file);
    } else {
      auth.push("-nopw");
    }
    for (let attempt = 0; attempt < 3; attempt++) {
      const port = await freePort();
      const child = this.#spawn("x11vnc", [
        "-display", `:${this.display}`, "-rfbport", String(port), "-localhost", "-forever", "-shared",
        "-add_keysyms", "-quiet", "-noipv6", ...auth, ...extra,
      ]);
      await until(`x11vnc on port ${port}`, async () => exited(child) || (await accepts(port)));
      if (!exited(child)) return port;
    }
    throw new Error(`x11vnc did not start: ${this.logs()}`);
  }

  /** Run an X client on the display; throws when it is not installed. */
  run(command: string[]): { ok: boolean; stdout: string; stderr: string } {
    const result = spawnSync(command[0]!, command.slice(1), {
      env: { ...process.env, DISPLAY: `:${this.display}` },
      encoding: "utf8",
      timeout: 10_000,
    });
    if ((result.error as NodeJS.ErrnoException | undefined)?.code === "ENOENT") {
      throw new Error(`${command[0]} is not installed (${INSTALL})`);
    }
    return { ok: result.status === 0, stdout: result.stdout ?? "", stderr: result.stderr ?? "" };
  }

  /** The pointer's position according to X (`xdotool getmouselocation`). */
  mouseLocation(): { x: number; y: number } {
    const out = this.run(["xdotool", "getmouselocation"]).stdout;
    const match = /x:(\d+) y:(\d+)/.exec(out);
    if (!match) throw new Error(`unexpected xdotool output: ${out}`);
    return { x: Number(match[1]), y: Number(match[2]) };
  }

  /** An XBM file of 256x256 random bits, for `xsetroot -bitmap` (a screen that compresses badly). */
  noiseBitmap(): string {
    const file = join(this.#dir, "noise.xbm");
    const bits = [...randomBytes((256 * 256) / 8)].map((byte) => `0x${byte.toString(16).padStart(2, "0")}`);
    writeFileSync(file, `#define noise_width 256\n#define noise_height 256\nstatic unsigned char noise_bits[] = {\n${bits.join(",")}\n};\n`);
    return file;
  }

  /** What the servers printed, for failure messages. */
  logs(): string {
    return [...this.#logs.values()].map((lines) => lines.join("")).join("\n---\n").slice(-4000);
  }

  async close(): Promise<void> {
    for (const child of [...this.#children].reverse()) await stop(child);
    this.#children.length = 0;
    rmSync(this.#dir, { recursive: true, force: true });
  }

  #spawn(command: string, args: string[]): ChildProcess {
    const child = spawn(command, args, { stdio: ["ignore", "pipe", "pipe"], env: { ...process.env, DISPLAY: `:${this.display}` } });
    const log: string[] = [];
    this.#logs.set(child, log);
    child.stdout?.on("data", (chunk: Buffer) => log.push(chunk.toString()));
    child.stderr?.on("data", (chunk: Buffer) => log.push(chunk.toString()));
    child.on("error", (error) => log.push(`spawn error: ${error.message}\n`));
    this.#children.push(child);
    return child;
  }
}
