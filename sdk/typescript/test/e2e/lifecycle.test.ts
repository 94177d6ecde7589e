/** Sandbox lifecycle against a real `alcove serve`: names, suspend/resume, snapshots, ports, auth. */

import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";

import {
  AuthenticationError,
  SandboxClient,
  SandboxNameConflictError,
  SandboxNotFoundError,
  SnapshotNotFoundError,
} from "../../src/index.js";
import { AlcoveServer, eventually, shutdown } from "./harness.js";

const TIMEOUT = { timeout: 90_000 };

const COUNTER = ["import time", "i = 0", "while True:", "    i += 1", "    print(i, flush=True)", "    time.sleep(0.05)"].join("\n");

describe("sandbox lifecycle against a real server", { timeout: 170_000 }, () => {
  let server: AlcoveServer;
  let client: SandboxClient;

  before(async () => {
    server = await AlcoveServer.start();
    client = server.client();
  });

  after(() => shutdown(server));

  it("creates, gets, lists and deletes an ephemeral sandbox", TIMEOUT, async () => {
    const info = await client.create({ cpus: 1.0, memoryMb: 2048 });
    try {
      assert.equal(info.status, "running");
      assert.equal(info.name, null);
      const got = await client.get(info.sandboxId);
      assert.equal(got.sandboxId, info.sandboxId);
      assert.equal(got.namespace, "default");
      assert.equal(got.resources?.memoryMb, 2048);
      assert.ok(got.createdAt instanceof Date && Math.abs(got.createdAt.getTime() - Date.now()) < 600_000);
      assert.ok((await client.list()).some((s) => s.sandboxId === info.sandboxId && s.status === "running"));
    } finally {
      await client.delete(info.sandboxId);
    }
    const after = await client.get(info.sandboxId).catch((error: unknown) => error);
    assert.ok(after instanceof SandboxNotFoundError || (after as { status?: string }).status === "terminated", String(after));
    assert.ok(!(await server.liveSandboxes()).some((s) => s.sandboxId === info.sandboxId));
    await assert.rejects(client.get("no-such-sandbox"), SandboxNotFoundError);
  });

  it("moves an ended sandbox out of list() into the archive, paged newest first", TIMEOUT, async () => {
    const first = await client.create({ name: "ts-archived" });
    await client.delete(first.sandboxId);
    const second = await client.create({ memoryMb: 2048 });
    await client.delete(second.sandboxId);
    assert.ok(!(await client.list()).some((s) => s.sandboxId === first.sandboxId || s.sandboxId === second.sandboxId));

    const archived = await client.getArchived(first.sandboxId);
    assert.equal(archived.status, "terminated");
    assert.equal(archived.terminationReason, "deleted");
    assert.equal(archived.name, "ts-archived");
    assert.ok(archived.archivedAt instanceof Date);
    assert.equal(archived.archivedAt.getTime(), archived.terminatedAt?.getTime());

    // Newest first: the second one ended last; one per page, then back.
    const newest = await client.listArchived({ limit: 1 });
    assert.deepEqual(newest.sandboxes.map((s) => s.sandboxId), [second.sandboxId]);
    assert.equal(newest.sandboxes[0]!.resources?.memoryMb, 2048);
    assert.equal(newest.prevCursor, null);
    const older = await client.listArchived({ limit: 1, cursor: newest.nextCursor!, direction: "forward" });
    assert.deepEqual(older.sandboxes.map((s) => s.sandboxId), [first.sandboxId]);
    const back = await client.listArchived({ limit: 1, cursor: older.prevCursor!, direction: "backward" });
    assert.deepEqual(back.sandboxes.map((s) => s.sandboxId), [second.sandboxId]);

    await assert.rejects(client.getArchived("no-such-sandbox"), SandboxNotFoundError);
    await assert.rejects(client.listArchived({ cursor: "not-a-cursor" }), (error: unknown) =>
      (error as { statusCode?: number }).statusCode === 400 && /cursor/.test(String(error)));
  });

  it("holds names: 409 on a duplicate, connect and rename by name, free once deleted", TIMEOUT, async () => {
    const sandbox = await client.createAndConnect({ name: "ts-named" });
    try {
      assert.equal(sandbox.name, "ts-named");
      await assert.rejects(client.create({ name: "ts-named" }), (error: unknown) => error instanceof SandboxNameConflictError && error.statusCode === 409);
      const again = await client.connect("ts-named");
      assert.equal(again.sandboxId, sandbox.sandboxId);
      assert.equal((await again.run("hostname")).exitCode, 0);
      const renamed = await client.updateSandbox("ts-named", "ts-renamed");
      assert.equal(renamed.name, "ts-renamed");
      assert.equal((await client.get("ts-renamed")).sandboxId, sandbox.sandboxId);
      await assert.rejects(client.get("ts-named"), SandboxNotFoundError);
      assert.equal((await sandbox.info()).name, "ts-renamed");
      assert.equal(sandbox.name, "ts-renamed");
    } finally {
      await sandbox.terminate();
    }
    await assert.rejects(client.get("ts-renamed"), SandboxNotFoundError);
    // The name is free again.
    const reused = await client.create({ name: "ts-renamed" });
    await client.delete("ts-renamed");
    assert.notEqual(reused.sandboxId, sandbox.sandboxId);
  });

  it("getOrCreate converges racing callers on one sandbox and resumes it when suspended", TIMEOUT, async () => {
    const handles = await Promise.all([0, 1, 2, 3, 4].map(() => client.getOrCreate("ts-session")));
    const id = handles[0]!.sandboxId;
    try {
      assert.equal(new Set(handles.map((h) => h.sandboxId)).size, 1);
      assert.deepEqual(handles.map((h) => h.bindOutcome).sort(), ["attached", "attached", "attached", "attached", "created"]);
      await handles[0]!.writeFile("/root/state.txt", "session state");
      await client.suspend("ts-session");
      const resumed = await client.getOrCreate("ts-session", { cpus: 4 });
      assert.equal(resumed.bindOutcome, "resumed");
      assert.equal(resumed.sandboxId, id);
      assert.equal(new TextDecoder().decode(await resumed.readFile("/root/state.txt")), "session state");
      assert.equal((await client.get(id)).resources?.cpus, 1);
    } finally {
      await client.delete(id);
    }
    const fresh = await client.getOrCreate("ts-session");
    try {
      assert.equal(fresh.bindOutcome, "created");
      assert.notEqual(fresh.sandboxId, id);
    } finally {
      await client.delete(fresh.sandboxId);
    }
  });

  it("names an ephemeral sandbox, then suspends and resumes it keeping a file and a process", TIMEOUT, async () => {
    await using sandbox = await client.createAndConnect();
    await client.updateSandbox(sandbox.sandboxId, "ts-suspendable");
    const counter = await sandbox.startProcess("python", ["-c", COUNTER]);
    await sandbox.writeFile("/root/note.txt", "kept across suspend");
    const count = async (): Promise<number> => {
      const lines = (await sandbox.getOutput(counter.pid)).lines;
      return lines.length > 0 ? Number(lines[lines.length - 1]) : 0;
    };
    const before = await eventually("counter output", async () => ((await count()) > 0 ? count() : undefined));

    const suspended = await client.suspend("ts-suspendable");
    assert.equal(suspended.status, "suspended");
    assert.equal((await client.get(sandbox.sandboxId)).status, "suspended");

    const resumed = await client.resume("ts-suspendable");
    assert.equal(resumed.status, "running");
    const again = await client.connect("ts-suspendable");
    assert.equal(again.sandboxId, sandbox.sandboxId);
    assert.equal((await again.readFile("/root/note.txt")).toString(), "kept across suspend");
    assert.equal((await again.getProcess(counter.pid)).status, "running");
    const afterResume = await count();
    assert.ok(afterResume >= before, `${afterResume} < ${before}`);
    await eventually("the counter to go on", async () => ((await count()) > afterResume ? true : undefined));
  });

  it("snapshots a sandbox and restores it into a new one", TIMEOUT, async () => {
    let snapshotId: string;
    {
      await using source = await client.createAndConnect({ name: "ts-snapshot-source" });
      await source.writeFile("/root/state.txt", "from the snapshot");
      const snapshot = await client.snapshotAndWait(source.sandboxId);
      assert.ok(["completed", "local_ready"].includes(snapshot.status), snapshot.status);
      assert.equal(snapshot.sandboxId, source.sandboxId);
      snapshotId = snapshot.snapshotId;
      assert.ok((await client.listSnapshots()).some((s) => s.snapshotId === snapshotId));
      assert.equal((await client.getSnapshot(snapshotId)).snapshotId, snapshotId);
      // The source goes on after its snapshot.
      assert.equal((await source.run("cat", ["/root/state.txt"])).stdout, "from the snapshot");
    }
    {
      await using restored = await client.createAndConnect({ snapshotId });
      assert.equal((await restored.readFile("/root/state.txt")).toString(), "from the snapshot");
      assert.equal((await restored.run("python", ["-c", "print(2 + 2)"])).stdout, "4");
    }
    await client.deleteSnapshot(snapshotId);
    await assert.rejects(client.getSnapshot(snapshotId), SnapshotNotFoundError);
  });

  it("exposes and unexposes ports", TIMEOUT, async () => {
    const info = await client.create({ exposePorts: [3000] });
    try {
      assert.deepEqual(info.exposedPorts, [3000]);
      const exposed = await client.exposePorts(info.sandboxId, [8080], { allowUnauthenticatedAccess: true });
      assert.deepEqual(exposed.exposedPorts, [3000, 8080]);
      assert.equal(exposed.allowUnauthenticatedAccess, true);
      const rest = await client.unexposePorts(info.sandboxId, [3000, 8080]);
      assert.deepEqual(rest.exposedPorts, []);
      assert.equal(rest.allowUnauthenticatedAccess, false);
    } finally {
      await client.delete(info.sandboxId);
    }
  });
});

describe("a server that requires an API key", { timeout: 120_000 }, () => {
  let server: AlcoveServer;

  before(async () => {
    server = await AlcoveServer.start({ apiKeys: ["ts-e2e-key"] });
  });

  after(() => shutdown(server));

  it("refuses a client without the key and serves one with it, proxy and PTY included", TIMEOUT, async () => {
    await assert.rejects(new SandboxClient({ apiUrl: server.url, apiKey: "wrong" }).list(), AuthenticationError);
    const client = server.client();
    await using sandbox = await client.createAndConnect();
    assert.equal((await sandbox.run("echo", ["authorized"])).stdout, "authorized");
    const pty = await sandbox.createPty({ command: "sh", args: ["-c", "exit 4"] });
    await pty.connect();
    assert.equal(await pty.wait(15_000), 4);
    await pty.close();
  });
});
