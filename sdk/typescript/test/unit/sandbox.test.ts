import assert from "node:assert/strict";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { constants as osConstants, tmpdir } from "node:os";
import { join } from "node:path";
import { after, afterEach, before, describe, it } from "node:test";

import {
  RemoteAPIError,
  Sandbox,
  SandboxClient,
  SandboxConnectionError,
  SandboxNotFoundError,
} from "../../src/index.js";
import { signalNumber } from "../../src/sandbox.js";
import { instantSleeps, sandboxJson, startFake, type Answer, type Fake, type Recorded } from "./fake.js";

const API = "/sandboxes/sbx1/api/v1";

function sse(...events: object[]): string[] {
  return events.map((event) => `data: ${JSON.stringify(event)}\n\n`);
}

describe("Sandbox against a fake server", () => {
  let fake: Fake;
  let handler: (req: Recorded) => Answer | Promise<Answer>;
  let restoreSleeps: () => void;
  let client: SandboxClient;
  let sandbox: Sandbox;

  before(async () => {
    restoreSleeps = instantSleeps();
    fake = await startFake((req) => {
      if (req.path.startsWith("/v1/namespaces/default/sandboxes")) {
        if (req.method === "POST") return { json: { sandbox_id: "sbx1", status: "running", sandbox_url: fake.url } };
        if (req.method === "DELETE") return { status: 200 };
        return { json: sandboxJson({ sandbox_url: fake.url, name: "env" }) };
      }
      return handler(req);
    });
    client = new SandboxClient({ apiUrl: fake.url, apiKey: "k" });
    sandbox = await client.createAndConnect({ name: "env" });
    fake.requests.length = 0;
  });
  after(async () => {
    restoreSleeps();
    await fake.close();
  });
  afterEach(() => {
    fake.requests.length = 0;
  });

  it("reads output batches and per-line events alike", async () => {
    handler = () => ({
      headers: { "content-type": "text/event-stream" },
      chunks: [
        ...sse(
          { pid: 7, started_at: 1 },
          { stream: "stdout", timestamp: 1, lines: ["a", "", "b"] },
          { line: "c", timestamp: 2, stream: "stdout" },
          { stream: "stderr", timestamp: 2, lines: ["e1", "e2"] },
          { stream: "stdout", timestamp: 3, lines: [1, 2] },
          { exit_code: 0, signal: null, reason: "exited" },
        ),
      ],
    });
    const result = await sandbox.run("x");
    assert.equal(result.stdout, "a\n\nb\nc");
    assert.equal(result.stderr, "e1\ne2");
  });

  it("takes blocks of output batches whole, escapes and all", async () => {
    handler = () => ({
      headers: { "content-type": "text/event-stream" },
      chunks: [
        ...sse({ pid: 7, started_at: 1 }),
        ...sse(
          { stream: "stdout", timestamp: 1, lines: ["tab\there", 'quote " here', "back\\slash", ""] },
          { stream: "stderr", timestamp: 1, lines: ["e1"] },
          { stream: "stdout", timestamp: 2, lines: ["ünï", "end"] },
        ),
        ...sse({ exit_code: 0, signal: null, reason: "exited" }),
      ],
    });
    const result = await sandbox.run("x");
    assert.equal(result.stdout, 'tab\there\nquote " here\nback\\slash\n\nünï\nend');
    assert.equal(result.stderr, "e1");
  });

  it("runs a command over SSE on the self-routing path", async () => {
    handler = () => ({
      headers: { "content-type": "text/event-stream" },
      chunks: [
        ...sse({ pid: 7, started_at: 1 }),
        ": keep-alive\n\n",
        ...sse({ line: "hi", timestamp: 1, stream: "stdout" }, { line: "err", timestamp: 1, stream: "stderr" }),
        ...sse({ exit_code: 2, signal: null, reason: "exited" }),
      ],
    });
    const result = await sandbox.run("echo", ["hi"], { env: { A: "1" }, workingDir: "/tmp", timeoutSecs: 10, user: "root" });
    assert.deepEqual(result, { stdout: "hi", stderr: "err", exitCode: 2, signal: null, reason: "exited", pid: 7 });
    const req = fake.requests[0]!;
    assert.equal(req.method, "POST");
    assert.equal(req.path, `${API}/processes/run`);
    assert.equal(req.headers.accept, "text/event-stream");
    assert.equal(req.headers.authorization, "Bearer k");
    assert.deepEqual(JSON.parse(req.body.toString()), {
      command: "echo",
      args: ["hi"],
      env: { A: "1" },
      working_dir: "/tmp",
      user: "root",
      timeout: 10,
      batch_output: true,
    });
    await sandbox.run("true", { args: ["x"] });
    assert.deepEqual(JSON.parse(fake.requests[1]!.body.toString()).args, ["x"]);
    await assert.rejects(sandbox.run("echo", ["a"], { args: ["b"] }), TypeError);
  });

  it("refuses a run answer that is not an event stream, and a stream without exit", async () => {
    handler = () => ({ json: { exit_code: 0 } });
    await assert.rejects(sandbox.run("true"), /expected an event stream/);
    handler = () => ({ headers: { "content-type": "text/event-stream" }, chunks: sse({ line: "x", timestamp: 1 }) });
    await assert.rejects(sandbox.run("true"), SandboxConnectionError);
  });

  it("replays calls while the proxy says the sandbox is not ready", async () => {
    let calls = 0;
    handler = () => {
      calls += 1;
      if (calls < 3) return { status: 503, json: { message: "sandbox is resuming", code: "SANDBOX_NOT_READY" } };
      return { status: 201, json: { pid: 5, status: "running", command: "sleep", started_at: 1 } };
    };
    const proc = await sandbox.startProcess("sleep", ["10"], { stdinMode: "pipe" });
    assert.equal(proc.pid, 5);
    assert.equal(calls, 3);
    assert.deepEqual(JSON.parse(fake.requests[0]!.body.toString()), { command: "sleep", args: ["10"], stdin_mode: "pipe" });
    calls = 0;
    handler = () => {
      calls += 1;
      return { status: 503, json: { message: "overloaded" } };
    };
    await assert.rejects(sandbox.startProcess("sleep"), (error: unknown) => error instanceof RemoteAPIError && error.statusCode === 503);
    assert.equal(calls, 1);
  });

  it("does not send twice a call that may have reached the sandbox (502), but retries a GET", async () => {
    let calls = 0;
    const cut = { status: 502, json: { message: "sandbox sbx did not answer", code: "SANDBOX_UNREACHABLE" } };
    handler = () => {
      calls += 1;
      return calls === 1 ? cut : { status: 201, json: { pid: 5, status: "running", command: "sleep", started_at: 1 } };
    };
    await assert.rejects(
      sandbox.startProcess("sleep"),
      (error: unknown) => error instanceof RemoteAPIError && error.statusCode === 502 && error.code === "SANDBOX_UNREACHABLE",
    );
    assert.equal(calls, 1);
    calls = 0;
    handler = () => {
      calls += 1;
      return calls === 1 ? { ...cut, status: 503 } : { status: 201, json: { pid: 6, status: "running", command: "sleep", started_at: 1 } };
    };
    assert.equal((await sandbox.startProcess("sleep")).pid, 6);
    assert.equal(calls, 2);
    calls = 0;
    handler = () => {
      calls += 1;
      return calls === 1 ? cut : { json: { processes: [] } };
    };
    assert.deepEqual(await sandbox.listProcesses(), []);
    assert.equal(calls, 2);
  });

  it("starts processes with a stdin pipe unless told otherwise, saying so on the wire", async () => {
    handler = () => ({ status: 201, json: { pid: 6, status: "running", command: "python", started_at: 1 } });
    await sandbox.startProcess("python", ["-c", "import sys; print(sys.stdin.read())"]);
    await sandbox.startProcess("cat", { stdinMode: "closed" });
    await sandbox.startProcess("cat", { stdinMode: "pipe", stdoutMode: "discard" });
    const bodies = fake.requests.map((r) => JSON.parse(r.body.toString()) as Record<string, unknown>);
    assert.deepEqual(bodies[0], { command: "python", args: ["-c", "import sys; print(sys.stdin.read())"], stdin_mode: "pipe" });
    assert.deepEqual(bodies[1], { command: "cat", stdin_mode: "closed" });
    assert.deepEqual(bodies[2], { command: "cat", stdin_mode: "pipe", stdout_mode: "discard" });
    await assert.rejects(sandbox.startProcess("cat", { stdinMode: "open" as "pipe" }), /stdin_mode must be one of closed, pipe/);
  });

  it("drives processes: list, get, signal, stdin, output, kill", async () => {
    handler = (req) => {
      if (req.path === `${API}/processes`) return { json: { processes: [{ pid: 5, status: "running", command: "cat", started_at: 1 }] } };
      if (req.path === `${API}/processes/5`) {
        return req.method === "DELETE" ? { status: 204 } : { json: { pid: 5, status: "exited", exit_code: 0, command: "cat", started_at: 1 } };
      }
      if (req.path.endsWith("/signal")) return { json: { success: true } };
      if (req.path.endsWith("/stdout")) return { json: { pid: 5, lines: ["a", "b"], line_count: 2 } };
      if (req.path === `${API}/processes/404`) return { status: 404, json: { error: "no process 404", code: "NOT_FOUND" } };
      return { status: 204 };
    };
    assert.deepEqual((await sandbox.listProcesses()).map((p) => p.pid), [5]);
    assert.equal((await sandbox.getProcess(5)).exitCode, 0);
    await sandbox.sendSignal(5, "SIGTERM");
    await sandbox.sendSignal(5, 9);
    await sandbox.writeStdin(5, "héllo\n");
    await sandbox.writeStdin(5, Uint8Array.of(0, 1, 2));
    await sandbox.closeStdin(5);
    assert.deepEqual((await sandbox.getStdout(5)).lines, ["a", "b"]);
    await sandbox.killProcess(5);
    const sent = fake.requests.map((r) => [r.method, r.path.slice(API.length)]);
    assert.deepEqual(sent, [
      ["GET", "/processes"],
      ["GET", "/processes/5"],
      ["POST", "/processes/5/signal"],
      ["POST", "/processes/5/signal"],
      ["POST", "/processes/5/stdin"],
      ["POST", "/processes/5/stdin"],
      ["POST", "/processes/5/stdin/close"],
      ["GET", "/processes/5/stdout"],
      ["DELETE", "/processes/5"],
    ]);
    assert.deepEqual(JSON.parse(fake.requests[2]!.body.toString()), { signal: 15 });
    assert.deepEqual(JSON.parse(fake.requests[3]!.body.toString()), { signal: 9 });
    assert.equal(fake.requests[4]!.body.toString(), "héllo\n");
    assert.equal(fake.requests[4]!.headers["content-type"], undefined);
    assert.deepEqual([...fake.requests[5]!.body], [0, 1, 2]);
    assert.equal(fake.requests[6]!.headers["content-length"], "0");
    await assert.rejects(sandbox.getProcess(404), (error: unknown) => error instanceof RemoteAPIError && error.code === "NOT_FOUND");
    await assert.rejects(sandbox.sendSignal(5, "SIGNOPE" as NodeJS.Signals), TypeError);
  });

  it("sends signal names with their Linux numbers, whatever the client's system", () => {
    assert.equal(signalNumber("SIGUSR1"), 10);
    assert.equal(signalNumber("SIGSTOP"), 19);
    assert.equal(signalNumber("SIGPWR"), 30);
    assert.equal(signalNumber(12), 12);
    // On Linux the table agrees with the system's own numbers.
    if (process.platform === "linux") {
      for (const [name, number] of Object.entries(osConstants.signals)) {
        if (name === "SIGUNUSED") continue;
        assert.equal(signalNumber(name as NodeJS.Signals), number, name);
      }
    }
  });

  it("follows output until the stream closes", async () => {
    handler = () => ({
      headers: { "content-type": "text/event-stream" },
      chunks: [...sse({ line: "1", timestamp: 1 }, { line: "2", timestamp: 2, stream: "stderr" }), "event: eof\ndata: {}\n\n"],
    });
    const lines: string[] = [];
    for await (const event of sandbox.followStdout(5)) lines.push(`${event.stream}:${event.line}`);
    assert.deepEqual(lines, ["stdout:1", "stderr:2"]);
    assert.equal(fake.requests[0]!.path, `${API}/processes/5/stdout/follow`);
    const all: string[] = [];
    for await (const event of sandbox.followOutput("my-service")) all.push(event.line);
    assert.deepEqual(all, ["1", "2"]);
    assert.equal(fake.requests[1]!.path, `${API}/processes/my-service/output/follow`);
    assert.equal(fake.requests[0]!.query.get("batch"), "true"); // Alcove's own: output_batch events
    assert.equal(fake.requests[1]!.query.get("batch"), "true");
  });

  it("follows output sent in batches, and per-line events in the same stream", async () => {
    handler = () => ({
      headers: { "content-type": "text/event-stream" },
      chunks: [
        ...sse(
          { stream: "stdout", timestamp: 1795711162444, lines: ["1", "2"] },
          { line: "3", timestamp: 1795711162445, stream: "stderr" },
          { stream: "stderr", timestamp: 1795711162446, lines: ["4"] },
        ),
        "event: eof\ndata: {}\n\n",
      ],
    });
    const events: string[] = [];
    for await (const event of sandbox.followOutput(5)) events.push(`${event.stream}:${event.line}:${event.timestamp?.getTime()}`);
    assert.deepEqual(events, ["stdout:1:1795711162444", "stdout:2:1795711162444", "stderr:3:1795711162445", "stderr:4:1795711162446"]);
    const batches: string[] = [];
    for await (const batch of sandbox.followOutputBatches(5)) batches.push(`${batch.stream}:${batch.lines.join(",")}`);
    assert.deepEqual(batches, ["stdout:1,2", "stderr:3", "stderr:4"]);
    assert.equal(fake.requests.at(-1)!.path, `${API}/processes/5/output/follow`);
    assert.equal(fake.requests.at(-1)!.query.get("batch"), "true");
  });

  // The agent cuts a line longer than 1 MiB into pieces of at most 1 MiB, each marked continued
  // but the last; short pieces stand for them here. Wire events in the agent's field order:
  const TS = 1795711162444;
  /** An `output_batch` event; `continued`: indexes of its pieces. */
  const lines = (texts: string[], continued?: number[], stream = "stdout") =>
    continued === undefined ? { stream, timestamp: TS, lines: texts } : { stream, timestamp: TS, lines: texts, continued };
  /** An `output` event; `continued`: a piece. */
  const line = (text: string, continued = false, stream = "stdout") =>
    continued ? { line: text, timestamp: TS, stream, continued } : { line: text, timestamp: TS, stream };
  const runStream = (...chunks: string[]): Answer => ({
    headers: { "content-type": "text/event-stream" },
    chunks: [...sse({ pid: 7, started_at: 1 }), ...chunks, ...sse({ exit_code: 0, signal: null, reason: "exited" })],
  });
  const followStream = (...events: object[]): Answer => ({
    headers: { "content-type": "text/event-stream" },
    chunks: [...sse(...events), "event: eof\ndata: {}\n\n"],
  });

  it("run puts a line cut into batched pieces back together", async () => {
    handler = () => runStream(...sse(lines(["aaa", "bbb", "ccc"], [0, 1]), lines(["next"])));
    assert.equal((await sandbox.run("x")).stdout, "aaabbbccc\nnext");
    // With the next line in its batch; and in one block (one chunk) with other batches, a piece last in its batch.
    handler = () => runStream(sse(lines(["aaa", "bbb", "ccc", "next"], [0, 1])).join(""));
    assert.equal((await sandbox.run("x")).stdout, "aaabbbccc\nnext");
    handler = () => runStream(sse(lines(["a"]), lines(["aaa", "bbb"], [0, 1]), lines(["ccc", "next"])).join(""));
    assert.equal((await sandbox.run("x")).stdout, "a\naaabbbccc\nnext");
  });

  it("run puts a line cut into per-line pieces back together", async () => {
    handler = () => runStream(...sse(line("aaa", true), line("bbb", true), line("ccc"), line("next")));
    assert.equal((await sandbox.run("x")).stdout, "aaabbbccc\nnext");
  });

  it("run joins a piece to the next line of its own stream, across the other stream's lines, stderr too", async () => {
    handler = () =>
      runStream(
        ...sse(
          lines(["aaa"], [0]),
          lines(["warning", "eee"], [1], "stderr"),
          lines(["bbb"], [0]),
          lines(["fff"], undefined, "stderr"),
          lines(["ccc", "next"]),
        ),
      );
    let result = await sandbox.run("x");
    assert.deepEqual([result.stdout, result.stderr], ["aaabbbccc\nnext", "warning\neeefff"]);
    // The same as per-line events.
    handler = () =>
      runStream(
        ...sse(
          line("aaa", true),
          line("warning", false, "stderr"),
          line("eee", true, "stderr"),
          line("bbb", true),
          line("fff", false, "stderr"),
          line("ccc"),
          line("next"),
        ),
      );
    result = await sandbox.run("x");
    assert.deepEqual([result.stdout, result.stderr], ["aaabbbccc\nnext", "warning\neeefff"]);
  });

  it("follows mark only the pieces of a cut line continued", async () => {
    handler = () => followStream(lines(["a", "b", "c"], [1]), lines(["d"]));
    for (const method of ["followOutput", "followStdout"] as const) {
      const events = [];
      for await (const event of sandbox[method](5)) events.push(event);
      assert.deepEqual(events.map((e) => e.line), ["a", "b", "c", "d"]);
      assert.deepEqual(events.map((e) => "continued" in e), [false, true, false, false], method);
      assert.equal(events[1]!.continued, true);
    }
    // Per-line events (a server that does not batch).
    handler = () => followStream(line("a", false, "stderr"), line("b", true, "stderr"), line("c", false, "stderr"));
    const events = [];
    for await (const event of sandbox.followStderr(5)) events.push(event);
    assert.deepEqual(events.map((e) => [e.line, "continued" in e]), [["a", false], ["b", true], ["c", false]]);
    assert.equal(events[1]!.continued, true);
  });

  it("followOutputBatches gives a batch its pieces' indexes as continued", async () => {
    // `dropped` and `continued` together: the agent writes `continued` last.
    const dropped = { stream: "stdout", timestamp: TS, lines: ["a", "b", "c"], dropped: 2, continued: [1] };
    handler = () => followStream(dropped, lines(["d"]));
    const batches = [];
    for await (const batch of sandbox.followOutputBatches(5)) batches.push(batch);
    assert.deepEqual(
      batches.map((b) => [b.lines, b.dropped, b.continued]),
      [
        [["a", "b", "c"], 2, [1]],
        [["d"], 0, undefined],
      ],
    );
    assert.ok(!("continued" in batches[1]!));
  });

  it("getStdout and getOutput expose the pieces of cut lines as continued", async () => {
    handler = (req) => {
      if (req.path.endsWith("/stdout")) return { json: { pid: 5, lines: ["aaa", "bbb", "next"], line_count: 3, continued: [0] } };
      return { json: { pid: 5, lines: ["a", "b"], line_count: 2 } };
    };
    const stdout = await sandbox.getStdout(5);
    assert.deepEqual([stdout.lines, stdout.continued], [["aaa", "bbb", "next"], [0]]);
    assert.deepEqual((await sandbox.getOutput(5)).continued, []); // absent: none
  });

  it("moves files with form-encoded paths, streaming uploads and downloads", async () => {
    const stored = new Map<string, Buffer>();
    handler = (req) => {
      const path = req.query.get("path") ?? "";
      if (req.path === `${API}/files/list`) {
        return { json: { path, entries: [{ name: "ü b.txt", is_dir: false, size: 3, modified_at: 1795711005478 }] } };
      }
      if (req.method === "PUT") {
        stored.set(path, req.body);
        return { status: 204 };
      }
      if (req.method === "DELETE") return stored.delete(path) ? { status: 204 } : { status: 404, json: { error: "missing", code: "NOT_FOUND" } };
      const data = stored.get(path);
      return data ? { body: data, headers: { "content-type": "application/octet-stream" } } : { status: 404, json: { error: "missing", code: "NOT_FOUND" } };
    };
    const path = "/tmp/dir with space/ü b.txt";
    await sandbox.writeFile(path, "héllo");
    assert.match(fake.requests[0]!.url, /\?path=%2Ftmp%2Fdir\+with\+space%2F%C3%BC\+b\.txt$/);
    assert.equal((await sandbox.readFile(path)).toString(), "héllo");

    async function* parts(): AsyncGenerator<Uint8Array> {
      yield Buffer.from("part1,");
      yield Buffer.from("part2");
    }
    await sandbox.writeFile("/tmp/streamed", parts());
    assert.equal(fake.requests.at(-1)!.headers["transfer-encoding"], "chunked");
    assert.equal(stored.get("/tmp/streamed")?.toString(), "part1,part2");
    await sandbox.writeFile("/tmp/iter", [Buffer.from("a"), Buffer.from("b")]);
    assert.equal(stored.get("/tmp/iter")?.toString(), "ab");
    await sandbox.writeFile("/tmp/stream", new Blob(["web ", "stream"]).stream());
    assert.equal(stored.get("/tmp/stream")?.toString(), "web stream");
    const binary = Uint8Array.from({ length: 256 }, (_, i) => i);
    await sandbox.writeFile("/tmp/bin", binary);
    assert.deepEqual(new Uint8Array(await sandbox.readFile("/tmp/bin")), binary);

    const chunks: Uint8Array[] = [];
    for await (const chunk of sandbox.readFileStream("/tmp/streamed")) chunks.push(chunk);
    assert.equal(Buffer.concat(chunks).toString(), "part1,part2");
    const dir = await mkdtemp(join(tmpdir(), "alcove-sdk-"));
    try {
      const local = join(dir, "copy");
      assert.equal(await sandbox.downloadFile("/tmp/bin", local), 256);
      assert.deepEqual(new Uint8Array(await readFile(local)), binary);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }

    assert.deepEqual(await sandbox.listDirectory("/tmp/dir with space"), [
      { name: "ü b.txt", isDir: false, size: 3, modifiedAt: new Date(1795711005478) },
    ]);
    await sandbox.deleteFile(path);
    await assert.rejects(sandbox.readFile(path), (error: unknown) => error instanceof RemoteAPIError && error.statusCode === 404);
    await assert.rejects(sandbox.writeFile("", "x"), TypeError);
  });

  it("maps the proxy's SANDBOX_NOT_FOUND to SandboxNotFoundError", async () => {
    handler = () => ({ status: 404, json: { message: "sandbox sbx1 is terminated", code: "SANDBOX_NOT_FOUND" } });
    await assert.rejects(sandbox.listProcesses(), SandboxNotFoundError);
  });

  it("refreshes its description with info() and deletes itself when disposed", async () => {
    const info = await sandbox.info();
    assert.equal(info.name, "env");
    assert.equal(sandbox.name, "env");
    {
      await using owned = await client.createAndConnect();
      assert.equal(owned.sandboxId, "sbx1");
    }
    assert.ok(fake.requests.some((r) => r.method === "DELETE" && r.path.endsWith("/sandboxes/sbx1")));
    fake.requests.length = 0;
    {
      await using borrowed = await client.connect("sbx1");
      assert.equal(borrowed.sandboxId, "sbx1");
    }
    assert.ok(!fake.requests.some((r) => r.method === "DELETE"));
  });
});
