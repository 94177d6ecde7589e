/**
 * Supervised ("managed") processes and persisted logs of a real `alcove serve`: restart policy
 * and its limit, restart and kill by name, logs by level and process.
 *
 * Run only this file with `npm run build:test && node --test build/test/e2e/supervision.test.js`.
 */

import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";

import { RemoteAPIError, type ProcessInfo, type Sandbox, type SandboxClient } from "../../src/index.js";
import { AlcoveServer, eventually, shutdown } from "./harness.js";

const TIMEOUT = { timeout: 90_000 };

describe("supervision and persisted logs of a real server", { timeout: 240_000 }, () => {
  let server: AlcoveServer;
  let client: SandboxClient;
  let sandbox: Sandbox;

  before(async () => {
    server = await AlcoveServer.start();
    client = server.client();
    sandbox = await client.createAndConnect();
  });

  after(() => shutdown(server, sandbox));

  /** Start a managed process (a process started with supervision fields must be managed). */
  async function startManaged(...args: Parameters<Sandbox["startProcess"]>): Promise<ProcessInfo> {
    const proc = await sandbox.startProcess(...args);
    assert.notEqual(proc.managed, null, "a process started with supervision fields must be managed");
    return proc;
  }

  it("restarts on failure up to maxRestarts, then the logs tell", TIMEOUT, async () => {
    const proc = await startManaged("sh", ["-c", "echo attempt; exit 3"], {
      stdinMode: "closed",
      name: "flaky",
      restart: { policy: "on_failure", maxRestarts: 2, initialBackoffMs: 50, maxBackoffMs: 100 },
    });
    assert.equal(proc.managed!.name, "flaky");
    const info = await eventually("the supervisor gives up", async () => {
      const current = await sandbox.getProcess("flaky");
      return current.managed?.status === "stopped" ? current : undefined;
    }, 30_000);
    assert.equal(info.managed!.restartCount, 2);
    assert.equal(info.managed!.lastExit?.exitCode, 3);
    assert.equal(info.exitCode, 3);

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

  it("restarts by name to a new pid, and a kill by name ends the supervision", TIMEOUT, async () => {
    const first = await startManaged("sleep", ["1000"], {
      stdinMode: "closed",
      name: "sleeper",
      restart: { policy: "always", initialBackoffMs: 50, maxBackoffMs: 100 },
    });
    const restarted = await sandbox.restartProcess("sleeper");
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
