/** Managed processes and persisted logs against a fake server: request shapes, answers, errors. */

import assert from "node:assert/strict";
import { after, afterEach, before, describe, it } from "node:test";

import { RemoteAPIError, Sandbox, SandboxClient, SandboxError, SandboxNotFoundError } from "../../src/index.js";
import { instantSleeps, sandboxJson, startFake, type Answer, type Fake, type Recorded } from "./fake.js";

const API = "/sandboxes/sbx1/api/v1";
const SBX = "/v1/namespaces/default/sandboxes/sbx1";
const MANAGED = {
  id: "web",
  name: "web",
  status: "backing_off",
  restart_count: 2,
  restart: { policy: "on_failure", max_restarts: 2, initial_backoff_ms: 50, max_backoff_ms: 200 },
  health_status: "disabled",
  consecutive_health_failures: 0,
  last_exit: { exit_code: 3, signal: null, oom_killed: false, ended_at: 1795711162444 },
  last_error: null,
  next_restart_at: 1795711163444,
};
const PROC = {
  pid: 1002,
  status: "running",
  exit_code: null,
  signal: null,
  stdin_writable: false,
  command: "sh",
  args: ["-c", "exit 3"],
  started_at: 1795711005468,
  ended_at: null,
  oom_killed: false,
  managed: MANAGED,
};
const RECORD = {
  timestamp: 1795711162444,
  uuid: "0b5e",
  namespace: "default",
  application: "",
  sandboxId: "sbx1",
  resourceAttributes: [["host", "h1"]],
  body: "process exited with code 3",
  logAttributes: JSON.stringify({ process_id: "p1", pid: 1002, managed_name: "web", event: "process_exited" }),
  allocations: [],
  functionRuns: [],
  level: 4,
  retention: 7,
};

describe("managed processes and persisted logs against a fake server", () => {
  let fake: Fake;
  let handler: (req: Recorded) => Answer | Promise<Answer>;
  let restoreSleeps: () => void;
  let client: SandboxClient;
  let sandbox: Sandbox;

  before(async () => {
    restoreSleeps = instantSleeps();
    fake = await startFake((req) => {
      if (req.path === SBX && req.method === "GET") return { json: sandboxJson({ sandbox_url: fake.url }) };
      return handler(req);
    });
    client = new SandboxClient({ apiUrl: fake.url });
    sandbox = await client.connect("sbx1");
    fake.requests.length = 0;
  });
  after(async () => {
    restoreSleeps();
    await fake.close();
  });
  afterEach(() => {
    fake.requests.length = 0;
  });

  it("starts a managed process, sending name, restart and health_check in snake_case", async () => {
    handler = () => ({ status: 201, json: PROC });
    const proc = await sandbox.startProcess("sh", ["-c", "exit 3"], {
      stdinMode: "closed",
      name: "web",
      restart: { policy: "on_failure", maxRestarts: 2, initialBackoffMs: 50 },
      healthCheck: { type: "tcp", port: 8000 },
    });
    const req = fake.requests.at(-1)!;
    assert.equal(req.path, `${API}/processes`);
    assert.deepEqual(JSON.parse(req.body.toString()), {
      command: "sh",
      args: ["-c", "exit 3"],
      stdin_mode: "closed",
      name: "web",
      restart: { policy: "on_failure", max_restarts: 2, initial_backoff_ms: 50, max_backoff_ms: 30000 },
      health_check: { type: "tcp", port: 8000, initial_delay_ms: 5000, interval_ms: 1000, timeout_ms: 500, failure_threshold: 3 },
    });
    const managed = proc.managed!;
    assert.equal(managed.status, "backing_off");
    assert.equal(managed.restartCount, 2);
    assert.deepEqual(managed.restart, { policy: "on_failure", maxRestarts: 2, initialBackoffMs: 50, maxBackoffMs: 200 });
    assert.equal(managed.healthStatus, "disabled");
    assert.equal(managed.healthCheck, null);
    assert.equal(managed.lastExit?.exitCode, 3);
    assert.equal(managed.lastExit?.endedAt?.getTime(), 1795711162444);
    assert.equal(managed.nextRestartAt?.getTime(), 1795711163444);
  });

  it("leaves plain processes unmanaged and reads a health check back", async () => {
    handler = () => ({ status: 201, json: { ...PROC, managed: null } });
    assert.equal((await sandbox.startProcess("sleep", ["9"])).managed, null);
    assert.deepEqual(Object.keys(JSON.parse(fake.requests.at(-1)!.body.toString())).sort(), ["args", "command", "stdin_mode"]);
    const checked = { ...MANAGED, status: "paused", health_check: { type: "http", port: 80, path: "/up" }, health_status: "healthy" };
    handler = () => ({ json: { ...PROC, managed: checked } });
    const managed = (await sandbox.getProcess("web")).managed!;
    assert.equal(managed.status, "paused");
    assert.deepEqual(managed.healthCheck, {
      type: "http",
      port: 80,
      path: "/up",
      initialDelayMs: 5000,
      intervalMs: 1000,
      timeoutMs: 500,
      failureThreshold: 3,
    });
  });

  it("checks managed options before sending", async () => {
    const bad: object[] = [
      { name: "" },
      { name: "123" },
      { name: "a/b" },
      { name: "run" },
      { name: ".." },
      { restart: { policy: "sometimes" } },
      { restart: { maxRestart: 2 } },
      { restart: { maxRestarts: -1 } },
      { healthCheck: { port: 80 } },
      { healthCheck: { type: "udp", port: 80 } },
      { healthCheck: { type: "tcp", port: 0 } },
      { healthCheck: { type: "tcp", port: 80, interval: 5 } },
    ];
    for (const options of bad) {
      await assert.rejects(sandbox.startProcess("sleep", options as never), /name|restart|healthCheck/, JSON.stringify(options));
    }
    assert.equal(fake.requests.length, 0);
  });

  it("restarts by pid and by a percent-encoded name", async () => {
    handler = () => ({ json: { ...PROC, pid: 1003 } });
    assert.equal((await sandbox.restartProcess(1002)).pid, 1003);
    const byPid = fake.requests.at(-1)!;
    assert.equal(byPid.method, "POST");
    assert.equal(byPid.url, `${API}/processes/1002/restart`);
    assert.equal(byPid.body.length, 0);
    await sandbox.restartProcess("my web");
    assert.equal(fake.requests.at(-1)!.url, `${API}/processes/my%20web/restart`);
  });

  it("sends a name as one encoded path segment from every process method", async () => {
    handler = (req) => {
      if (req.method === "GET" && /\/(stdout|stderr|output)$/.test(req.url)) return { json: { pid: 1, lines: [], line_count: 0 } };
      if (req.method === "GET" || req.url.endsWith("/restart")) return { json: PROC };
      if (req.url.endsWith("/signal")) return { json: { success: true } };
      return { status: 204 };
    };
    const name = "w?b#1/../x";
    await sandbox.getProcess(name);
    await sandbox.killProcess(name);
    await sandbox.sendSignal(name, 15);
    await sandbox.writeStdin(name, "x");
    await sandbox.closeStdin(name);
    await sandbox.getStdout(name);
    await sandbox.getStderr(name);
    await sandbox.getOutput(name);
    await sandbox.restartProcess(name);
    assert.equal(fake.requests.length, 9);
    for (const req of fake.requests) assert.ok(req.url.startsWith(`${API}/processes/w%3Fb%231%2F..%2Fx`), req.url);
  });

  it("maps restart errors as every other call", async () => {
    handler = () => ({ status: 404, json: { error: "no such process", code: "NOT_FOUND" } });
    await assert.rejects(sandbox.restartProcess("nope"), (e: unknown) => e instanceof RemoteAPIError && e.statusCode === 404);
    handler = () => ({ status: 400, json: { error: "not managed", code: "INVALID_ARGUMENT" } });
    await assert.rejects(sandbox.restartProcess(1002), (e: unknown) => e instanceof RemoteAPIError && e.code === "INVALID_ARGUMENT");
    handler = () => ({ status: 404, json: { message: "gone", code: "SANDBOX_NOT_FOUND" } });
    await assert.rejects(sandbox.restartProcess(1002), SandboxNotFoundError);
  });

  it("gets logs with repeated filters and reads the page", async () => {
    handler = () => ({ json: { logs: [RECORD], nextToken: "t2" } });
    const page = await sandbox.getLogs({
      levels: ["warn", "error", 3, "WARNING"],
      processIds: ["p1", "p 2"],
      nextToken: "t1",
      tail: 5,
      body: "exit ed",
    });
    const req = fake.requests.at(-1)!;
    assert.equal(req.path, `${SBX}/logs`);
    assert.deepEqual([...req.query], [
      ["level", "4"],
      ["level", "5"],
      ["level", "3"],
      ["level", "4"],
      ["processId", "p1"],
      ["processId", "p 2"],
      ["nextToken", "t1"],
      ["tail", "5"],
      ["body", "exit ed"],
    ]);
    assert.equal(page.nextToken, "t2");
    const [record] = page.logs;
    assert.equal(record!.body, "process exited with code 3");
    assert.equal(record!.sandboxId, "sbx1");
    assert.equal(record!.levelName, "warn");
    assert.deepEqual(record!.attributes, { process_id: "p1", pid: 1002, managed_name: "web", event: "process_exited" });
    assert.equal(record!.logAttributes, RECORD.logAttributes);
    assert.deepEqual(record!.resourceAttributes, [["host", "h1"]]);
    assert.equal(record!.time.getTime(), 1795711162444);
  });

  it("uses the client's namespace, tolerates odd records and refuses a record without timestamp", async () => {
    const other = new SandboxClient({ apiUrl: fake.url, namespace: "team-a" });
    handler = () => ({ json: { logs: [{ timestamp: 5, body: "x", logAttributes: "not json", level: 9, extra: 1 }] } });
    const [odd] = (await other.getLogs("my box", { head: 10 })).logs;
    assert.equal(fake.requests.at(-1)!.url, "/v1/namespaces/team-a/sandboxes/my%20box/logs?head=10");
    assert.deepEqual(odd!.attributes, {});
    assert.equal(odd!.levelName, null);
    handler = () => ({ json: { logs: [{ body: "no timestamp" }] } });
    await assert.rejects(other.getLogs("sbx1"), SandboxError);
  });

  it("checks log filters before sending", async () => {
    const bad: object[] = [
      { levels: "info" },
      { levels: ["loud"] },
      { levels: [7] },
      { processIds: "p1" },
      { processIds: [""] },
      { head: 0 },
      { tail: "5" },
      { head: 1, tail: 1 },
      { nextToken: "" },
      { body: "" },
    ];
    for (const options of bad) await assert.rejects(client.getLogs("sbx1", options as never), JSON.stringify(options));
    assert.equal(fake.requests.length, 0);
  });

  it("maps log errors", async () => {
    handler = () => ({ status: 404, json: { message: "no such sandbox", code: "NOT_FOUND" } });
    await assert.rejects(sandbox.getLogs(), SandboxNotFoundError);
    await assert.rejects(sandbox.listLogProcesses(), SandboxNotFoundError);
    handler = () => ({ status: 400, json: { message: "bad level", code: "INVALID_ARGUMENT" } });
    await assert.rejects(sandbox.getLogs({ levels: ["info"] }), (e: unknown) => e instanceof RemoteAPIError && e.statusCode === 400);
  });

  it("iterates over every page, and stops on a repeated token", async () => {
    const pages = [
      { logs: [{ ...RECORD, body: "a" }, { ...RECORD, body: "b" }], nextToken: "t1" },
      { logs: [{ ...RECORD, body: "c" }], nextToken: "t2" },
      { logs: [], nextToken: "t3" },
    ];
    handler = () => ({ json: pages.shift() });
    const bodies: string[] = [];
    for await (const record of sandbox.iterLogs({ levels: ["info"], processIds: ["p1"] })) bodies.push(record.body);
    assert.deepEqual(bodies, ["a", "b", "c"]);
    assert.deepEqual(fake.requests.map((r) => r.query.get("nextToken")), [null, "t1", "t2"]);
    assert.ok(fake.requests.every((r) => r.query.getAll("level")[0] === "3" && r.query.getAll("processId")[0] === "p1"));
    fake.requests.length = 0;
    handler = () => ({ json: { logs: [RECORD], nextToken: "same" } });
    let count = 0;
    for await (const _ of client.iterLogs("sbx1")) count++;
    assert.equal(count, 2);
    assert.equal(fake.requests.length, 2);
  });

  it("lists the processes of the logs", async () => {
    const entry = {
      processId: "p1",
      processPid: "1002",
      processCommand: "sh -c exit 3",
      processManagedId: "web",
      processManagedName: "web",
      firstSeen: 1795711162000,
      lastSeen: 1795711162444,
      logCount: 4,
    };
    handler = () => ({ json: { processes: [entry, { processId: "p2", processPid: 7 }] } });
    const { processes } = await sandbox.listLogProcesses();
    assert.equal(fake.requests.at(-1)!.path, `${SBX}/processes`);
    assert.deepEqual(processes[0], entry);
    assert.deepEqual(
      [processes[1]!.processPid, processes[1]!.processManagedName, processes[1]!.logCount],
      ["7", null, 0],
    );
  });
});
