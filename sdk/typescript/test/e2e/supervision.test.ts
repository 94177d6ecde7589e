/**
 * Supervised ("managed") processes and persisted logs of a real `alcove serve`: restart policy
 * and its limit, restart and kill by name, logs by level and process.
 *
 * Written ahead of the server side: while the server answers 501 NOT_IMPLEMENTED (or starts a
 * process with supervision fields as a plain one) a test is skipped with that reason. Run only
 * this file with `npm run build:test && node --test build/test/e2e/supervision.test.js`.
 */

import assert from "node:assert/strict";
import { after, before, describe, it, type TestContext } from "node:test";

import { RemoteAPIError, type ProcessInfo, type Sandbox, type SandboxClient } from "../../src/index.js";
import { AlcoveServer, eventually, shutdown } from "./harness.js";

const TIMEOUT = { timeout: 90_000 };

function notImplemented(error: unknown): boolean {
  return error instanceof RemoteAPIError && error.statusCode === 501;
}

describe("supervision and persisted logs of a real server", { timeout: 240_000 }, () => {
  let server: AlcoveServer;
  let client: SandboxClient;
  let sandbox: Sandbox;

  before(async () => {
    server = await AlcoveServer.start();
    client = server.client();
    sandbox = await client.createAndConnect();
  });

  after(async () => {
    await sandbox?.terminate().catch(() => undefined);
    const leaked = await shutdown(server);
    assert.deepEqual(leaked, [], "sandboxes left running");
  });

  /** Start a managed process, or undefined after skipping `t` when the server cannot. */
  async function startManaged(t: TestContext, ...args: Parameters<Sandbox["startProcess"]>): Promise<ProcessInfo | undefined> {
    try {
      const proc = await sandbox.startProcess(...args);
      if (proc.managed === null) {
        t.skip("the server started a managed process as a plain one (supervision not built yet)");
        return undefined;
      }
      return proc;
    } catch (error) {
      if (!notImplemented(error)) throw error;
      t.skip(`the server lacks managed processes: ${String(error)}`);
      return undefined;
    }
  }

  it("restarts on failure up to maxRestarts, then the logs tell", TIMEOUT, async (t) => {
    const proc = await startManaged(t, "sh", ["-c", "echo attempt; exit 3"], {
      stdinMode: "closed",
      name: "flaky",
      restart: { policy: "on_failure", maxRestarts: 2, initialBackoffMs: 50, maxBackoffMs: 100 },
    });
    if (!proc) return;
    const info = await eventually("the supervisor gives up", async () => {
      const current = await sandbox.getProcess("flaky");
      return current.managed?.status === "stopped" ? current : undefined;
    }, 30_000);
    assert.equal(info.managed!.restartCount, 2);
    assert.equal(info.managed!.lastExit?.exitCode, 3);
    assert.equal(info.exitCode, 3);

    try {
      await sandbox.listLogProcesses();
    } catch (error) {
      if (!notImplemented(error)) throw error;
      t.skip(`the server lacks persisted logs: ${String(error)}`);
      return;
    }
    const ids = await eventually("the log lists the managed process", async () => {
      const { processes } = await sandbox.listLogProcesses();
      const mine = processes.filter((p) => p.processManagedName === "flaky");
      return mine.length ? mine.map((p) => p.processId) : undefined;
    }, 30_000);
    const attempts = await eventually("three runs in the log", async () => {
      const lines = [];
      for await (const record of sandbox.iterLogs({ levels: ["info"], processIds: ids })) {
        assert.equal(record.level, 3);
        if (record.body === "attempt") lines.push(record);
      }
      return lines.length >= 3 ? lines : undefined;
    }, 30_000);
    assert.ok(attempts.every((r) => r.attributes.managed_name === "flaky" && r.attributes.stream === "stdout"));

    const page = await eventually("exit events in the log", async () => {
      const found = await sandbox.getLogs({ levels: ["warn", "error"], processIds: ids });
      return found.logs.some((r) => r.attributes.event === "process_exited" || r.attributes.event === "gave_up") ? found : undefined;
    }, 30_000);
    assert.ok(page.logs.every((r) => r.level === 4 || r.level === 5), JSON.stringify(page.logs.map((r) => r.level)));
    assert.ok(!page.logs.some((r) => r.body === "attempt"));
  });

  it("restarts by name to a new pid, and a kill by name ends the supervision", TIMEOUT, async (t) => {
    const first = await startManaged(t, "sleep", ["1000"], {
      stdinMode: "closed",
      name: "sleeper",
      restart: { policy: "always", initialBackoffMs: 50, maxBackoffMs: 100 },
    });
    if (!first) return;
    let restarted: ProcessInfo;
    try {
      restarted = await sandbox.restartProcess("sleeper");
    } catch (error) {
      if (!notImplemented(error)) throw error;
      await sandbox.killProcess("sleeper");
      t.skip(`the server lacks restart: ${String(error)}`);
      return;
    }
    assert.notEqual(restarted.pid, first.pid);
    assert.equal((await sandbox.getProcess("sleeper")).pid, restarted.pid);

    await sandbox.killProcess("sleeper");
    const ended = await eventually("the supervision stops", async () => {
      try {
        const info = await sandbox.getProcess("sleeper");
        return info.managed?.status === "stopped" && info.status !== "running" ? info : undefined;
      } catch (error) {
        if (error instanceof RemoteAPIError && error.statusCode === 404) return "gone" as const;
        throw error;
      }
    }, 30_000);
    if (ended !== "gone") assert.equal(ended.pid, restarted.pid);
    const running = (await sandbox.listProcesses()).filter((p) => p.managed?.name === "sleeper" && p.status === "running");
    assert.deepEqual(running, []);
  });
});
