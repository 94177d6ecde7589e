/** Commands, processes and files in a real sandbox of a real `alcove serve`. */

import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";

import { RemoteAPIError, type Sandbox, type SandboxClient } from "../../src/index.js";
import { AlcoveServer, eventually, shutdown } from "./harness.js";

const TIMEOUT = { timeout: 60_000 };

describe("a sandbox of a real server", { timeout: 150_000 }, () => {
  let server: AlcoveServer;
  let client: SandboxClient;
  let sandbox: Sandbox;

  before(async () => {
    server = await AlcoveServer.start();
    client = server.client();
    sandbox = await client.createAndConnect();
  });

  after(() => shutdown(server, sandbox));

  it("creates and connects, then runs python", TIMEOUT, async () => {
    assert.match(sandbox.sandboxId, /^[0-9a-f-]{36}$/);
    assert.equal(sandbox.name, null);
    const result = await sandbox.run("python", ["-c", "print('hello')"], { timeoutSecs: 30 });
    assert.deepEqual([result.stdout, result.stderr, result.exitCode], ["hello", "", 0]);
    const info = await sandbox.info();
    assert.equal(info.status, "running");
    assert.equal(info.resources?.cpus, 1);
    assert.equal(info.resources?.memoryMb, 1024);
  });

  it("passes env and workingDir, captures stderr and exit codes", TIMEOUT, async () => {
    const result = await sandbox.run("sh", ["-c", 'echo "$GREETING"; pwd; echo oops >&2; exit 7'], {
      env: { GREETING: "héllo wörld" },
      workingDir: "/tmp",
    });
    assert.equal(result.stdout, "héllo wörld\n/tmp");
    assert.equal(result.stderr, "oops");
    assert.equal(result.exitCode, 7);
    assert.equal((await sandbox.run("true")).exitCode, 0);
    assert.equal((await sandbox.run("false")).exitCode, 1);
  });

  it("kills a command at its timeout and reports the signal", TIMEOUT, async () => {
    const started = Date.now();
    const result = await sandbox.run("sleep", ["30"], { timeoutSecs: 1 });
    assert.ok(Date.now() - started < 15_000);
    assert.equal(result.reason, "timed_out");
    assert.ok(result.exitCode < 0, `exit code ${result.exitCode}`);
  });

  it("reports an unknown command as an API error", TIMEOUT, async () => {
    await assert.rejects(sandbox.run("no-such-command-here"), (error: unknown) => error instanceof RemoteAPIError && error.statusCode === 400);
  });

  it("starts a process, follows its output and signals it", TIMEOUT, async () => {
    // The handler only takes note: printing from it could interrupt a print of the main code
    // ("reentrant call inside BufferedWriter"), since the signal is sent as soon as "ready" shows.
    const script = [
      "import signal, sys, time",
      "got = []",
      "signal.signal(signal.SIGTERM, lambda *_: got.append(True))",
      "print('ready', flush=True)",
      "print('to stderr', file=sys.stderr, flush=True)",
      "deadline = time.time() + 60",
      "while not got and time.time() < deadline:",
      "    time.sleep(0.02)",
      "print('got SIGTERM' if got else 'no signal', flush=True)",
    ].join("\n");
    const proc = await sandbox.startProcess("python", ["-c", script]);
    assert.ok(proc.pid > 0);
    assert.equal(proc.command, "python");
    assert.ok((await sandbox.listProcesses()).some((p) => p.pid === proc.pid && p.status === "running"));
    const lines: string[] = [];
    for await (const event of sandbox.followOutput(proc.pid)) {
      lines.push(`${event.stream}:${event.line}`);
      assert.ok(event.timestamp instanceof Date);
      if (event.line === "ready") await sandbox.sendSignal(proc.pid, "SIGTERM");
    }
    assert.ok(lines.includes("stdout:ready"), lines.join(" | "));
    assert.ok(lines.includes("stderr:to stderr"), lines.join(" | "));
    assert.ok(lines.includes("stdout:got SIGTERM"), lines.join(" | "));
    const done = await eventually("process exit", async () => {
      const info = await sandbox.getProcess(proc.pid);
      return info.status === "running" ? undefined : info;
    });
    assert.equal(done.status, "exited");
    assert.equal(done.exitCode, 0);
    assert.deepEqual((await sandbox.getStdout(proc.pid)).lines, ["ready", "got SIGTERM"]);
    assert.deepEqual((await sandbox.getStderr(proc.pid)).lines, ["to stderr"]);
    assert.equal((await sandbox.getOutput(proc.pid)).lineCount, 3);
    const stdout: string[] = [];
    for await (const event of sandbox.followStdout(proc.pid)) stdout.push(event.line);
    assert.deepEqual(stdout, ["ready", "got SIGTERM"]);
  });

  it("follows output a read at a time: the batches hold what followOutput yields", TIMEOUT, async () => {
    const script = "import sys\nsys.stdout.write(''.join(f'{i}\\n' for i in range(20000)))\nprint('err', file=sys.stderr)";
    const proc = await sandbox.startProcess("python3", ["-c", script]);
    await eventually("process exit", async () => ((await sandbox.getProcess(proc.pid)).status === "running" ? undefined : true));
    const batches = [];
    for await (const batch of sandbox.followOutputBatches(proc.pid)) batches.push(batch);
    const events = [];
    for await (const event of sandbox.followOutput(proc.pid)) events.push(`${event.stream}:${event.line}`);
    assert.deepEqual(batches.flatMap((b) => b.lines.map((line) => `${b.stream}:${line}`)), events);
    const stdout = batches.filter((b) => b.stream === "stdout").flatMap((b) => b.lines);
    assert.deepEqual(stdout, Array.from({ length: 20000 }, (_, i) => String(i)));
    assert.deepEqual(batches.filter((b) => b.stream === "stderr").flatMap((b) => b.lines), ["err"]);
    assert.ok(batches.length < 100 && batches.every((b) => b.timestamp instanceof Date), String(batches.length));
  });

  it("writes to a process's stdin (a pipe by default) and closes it", TIMEOUT, async () => {
    const proc = await sandbox.startProcess("python", ["-c", "import sys; data = sys.stdin.read(); print(data.upper(), end='')"]);
    await sandbox.writeStdin(proc.pid, "hello from stdin\n");
    await sandbox.writeStdin(proc.pid, new TextEncoder().encode("second line\n"));
    await sandbox.closeStdin(proc.pid);
    const lines: string[] = [];
    for await (const event of sandbox.followOutput(proc.pid)) lines.push(event.line);
    assert.deepEqual(lines, ["HELLO FROM STDIN", "SECOND LINE"]);
  });

  it("starts a process with its stdin closed when asked", TIMEOUT, async () => {
    const proc = await sandbox.startProcess("python", ["-c", "import sys; print(repr(sys.stdin.read()))"], { stdinMode: "closed" });
    const lines: string[] = [];
    for await (const event of sandbox.followOutput(proc.pid)) lines.push(event.line);
    assert.deepEqual(lines, ["''"]);
  });

  it("kills a process", TIMEOUT, async () => {
    const proc = await sandbox.startProcess("sleep", ["300"]);
    await sandbox.killProcess(proc.pid);
    const done = await eventually("process death", async () => {
      const info = await sandbox.getProcess(proc.pid);
      return info.status === "running" ? undefined : info;
    });
    assert.equal(done.status, "signaled");
    assert.equal(done.signal, 9);
  });

  it("round-trips files, with spaces and non-ASCII in the path", TIMEOUT, async () => {
    const dir = "/workspace/dir with space/ünï ✓";
    const path = `${dir}/données été.txt`;
    await sandbox.writeFile(path, "name,score\nAlice,95\n");
    assert.equal((await sandbox.readFile(path)).toString("utf8"), "name,score\nAlice,95\n");
    // The file really is where the path says, as seen from inside.
    const cat = await sandbox.run("cat", [path]);
    assert.equal(cat.stdout, "name,score\nAlice,95");

    const binary = Buffer.alloc(256 * 1024);
    for (let i = 0; i < binary.length; i++) binary[i] = (i * 31) % 256;
    await sandbox.writeFile(`${dir}/blob.bin`, binary);
    assert.ok((await sandbox.readFile(`${dir}/blob.bin`)).equals(binary));

    async function* chunks(): AsyncGenerator<Uint8Array> {
      for (let i = 0; i < 4; i++) yield Buffer.alloc(1024 * 1024, 65 + i);
    }
    await sandbox.writeFile("/tmp/streamed.bin", chunks());
    let total = 0;
    const seen = new Set<number>();
    for await (const chunk of sandbox.readFileStream("/tmp/streamed.bin")) {
      total += chunk.length;
      for (const byte of new Set(chunk)) seen.add(byte);
    }
    assert.equal(total, 4 * 1024 * 1024);
    assert.deepEqual([...seen].sort(), [65, 66, 67, 68]);

    const entries = await sandbox.listDirectory(dir);
    assert.deepEqual(
      entries.map((e) => [e.name, e.isDir, e.size]).sort(),
      [["blob.bin", false, binary.length], ["données été.txt", false, 20]],
    );
    assert.ok(entries.every((e) => e.modifiedAt instanceof Date));
    const parent = await sandbox.listDirectory("/workspace/dir with space");
    assert.deepEqual(parent.map((e) => [e.name, e.isDir]), [["ünï ✓", true]]);

    await sandbox.deleteFile(path);
    await assert.rejects(sandbox.readFile(path), (error: unknown) => error instanceof RemoteAPIError && error.statusCode === 404);
    await assert.rejects(sandbox.listDirectory("/no/such/dir"), (error: unknown) => error instanceof RemoteAPIError && error.statusCode === 404);
  });
});
