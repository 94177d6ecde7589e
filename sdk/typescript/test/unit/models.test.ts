import assert from "node:assert/strict";
import { describe, it } from "node:test";

import { SandboxError } from "../../src/errors.js";
import {
  archivedSandboxInfoFromWire,
  directoryEntryFromWire,
  listFromWire,
  outputEventFromWire,
  outputResponseFromWire,
  parseTimestamp,
  processInfoFromWire,
  ptySessionInfoFromWire,
  sandboxInfoFromWire,
  snapshotInfoFromWire,
  urlForPort,
} from "../../src/models.js";

const MS = 1795711005478;

describe("timestamps", () => {
  it("reads epoch seconds, milliseconds, microseconds and nanoseconds alike", () => {
    const expected = new Date(MS).getTime();
    assert.equal(parseTimestamp(MS / 1000)?.getTime(), expected);
    assert.equal(parseTimestamp(MS)?.getTime(), expected);
    assert.equal(parseTimestamp(MS * 1000)?.getTime(), expected);
    assert.equal(parseTimestamp(MS * 1_000_000)?.getTime(), expected);
    assert.equal(parseTimestamp(String(MS))?.getTime(), expected);
  });

  it("reads ISO-8601 strings, with or without a zone and with long fractions", () => {
    assert.equal(parseTimestamp("2026-11-26T18:00:00Z")?.toISOString(), "2026-11-26T18:00:00.000Z");
    assert.equal(parseTimestamp("2026-11-26T20:00:00+02:00")?.toISOString(), "2026-11-26T18:00:00.000Z");
    assert.equal(parseTimestamp("2026-11-26T18:00:00.123456789Z")?.toISOString(), "2026-11-26T18:00:00.123Z");
    assert.equal(parseTimestamp("2026-11-26T18:00:00")?.toISOString(), "2026-11-26T18:00:00.000Z");
    assert.equal(parseTimestamp("2026-11-26 18:00:00.5")?.toISOString(), "2026-11-26T18:00:00.500Z");
  });

  it("gives null for absent or unreadable values", () => {
    for (const value of [null, undefined, "", true, "yesterday", {}, Number.NaN]) {
      assert.equal(parseTimestamp(value), null, String(value));
    }
  });
});

describe("SandboxInfo", () => {
  const wire = {
    id: "sbx4c70",
    namespace: "default",
    status: "running",
    name: "my-env",
    image: "alcove/debian",
    resources: { cpus: 2.0, memory_mb: 4096, disk_mb: 10240, ephemeral_disk_mb: 10240, gpus: [{ count: 1, model: "H100" }] },
    sandbox_url: "http://localhost:8900",
    secret_names: ["OPENAI_API_KEY"],
    timeout_secs: 1800,
    exposed_ports: [8080],
    allow_unauthenticated_access: true,
    entrypoint: ["/bin/sh"],
    created_at: MS,
    terminated_at: null,
    network_policy: { allow_internet_access: false, allow_out: ["8.8.8.8"], deny_out: null },
    auto_resume: false,
    routing_hint: "node-1",
    some_future_field: 1,
  };

  it("maps snake_case wire fields to camelCase", () => {
    const info = sandboxInfoFromWire(wire);
    assert.equal(info.sandboxId, "sbx4c70");
    assert.equal(info.name, "my-env");
    assert.equal(info.status, "running");
    assert.deepEqual(info.resources, {
      cpus: 2,
      memoryMb: 4096,
      diskMb: 10240,
      ephemeralDiskMb: 10240,
      gpus: [{ count: 1, model: "H100" }],
    });
    assert.equal(info.sandboxUrl, "http://localhost:8900");
    assert.deepEqual(info.secretNames, ["OPENAI_API_KEY"]);
    assert.equal(info.timeoutSecs, 1800);
    assert.deepEqual(info.exposedPorts, [8080]);
    assert.equal(info.allowUnauthenticatedAccess, true);
    assert.deepEqual(info.entrypoint, ["/bin/sh"]);
    assert.equal(info.createdAt?.getTime(), MS);
    assert.equal(info.terminatedAt, null);
    assert.deepEqual(info.networkPolicy, { allowInternetAccess: false, allowOut: ["8.8.8.8"], denyOut: [] });
    assert.equal(info.autoResume, false);
    assert.equal(info.routingHint, "node-1");
  });

  it("accepts sandbox_id as well as id, and defaults what is optional", () => {
    const info = sandboxInfoFromWire({ sandbox_id: "abc", status: "pending" });
    assert.equal(info.sandboxId, "abc");
    assert.equal(info.name, null);
    assert.equal(info.resources, null);
    assert.deepEqual(info.exposedPorts, []);
    assert.equal(info.allowUnauthenticatedAccess, false);
    assert.equal(info.autoResume, true);
    assert.equal(info.sandboxUrl, null);
  });

  it("maps node_selector to nodeSelector, {} when absent", () => {
    assert.deepEqual(sandboxInfoFromWire({ ...wire, node_selector: { zone: "b", gpu: "a100" } }).nodeSelector, { zone: "b", gpu: "a100" });
    assert.deepEqual(sandboxInfoFromWire(wire).nodeSelector, {});
    assert.deepEqual(sandboxInfoFromWire({ ...wire, node_selector: null }).nodeSelector, {});
    assert.deepEqual(sandboxInfoFromWire({ ...wire, node_selector: { zone: "b", bad: 1 } }).nodeSelector, { zone: "b" });
    const archived = archivedSandboxInfoFromWire({ ...wire, archived_at: MS, node_selector: { zone: "b" } });
    assert.deepEqual(archived.nodeSelector, { zone: "b" });
  });

  it("keeps a status it does not know", () => {
    assert.equal(sandboxInfoFromWire({ id: "a", status: "hibernating" }).status, "hibernating");
  });

  it("rejects an object without its required fields", () => {
    assert.throws(() => sandboxInfoFromWire({ status: "running" }), (e: unknown) => e instanceof SandboxError && /sandbox_id/.test(String(e)));
    assert.throws(() => sandboxInfoFromWire({ id: "a" }), /status/);
    assert.throws(() => sandboxInfoFromWire("nope"), SandboxError);
  });

  it("builds user-port URLs from the ingress endpoint", () => {
    const info = sandboxInfoFromWire({ ...wire, ingress_endpoint: "http://sandbox.localhost:8900/" });
    assert.equal(urlForPort(info, 8080), "http://8080-sbx4c70.sandbox.localhost:8900");
    assert.equal(urlForPort(info, 9501), "http://localhost:8900");
    assert.equal(urlForPort(sandboxInfoFromWire(wire), 8080), null);
  });
});

describe("other models", () => {
  it("maps snapshots (id or snapshot_id)", () => {
    const snap = snapshotInfoFromWire({
      id: "snap1",
      namespace: "default",
      sandbox_id: "sbx1",
      status: "completed",
      snapshot_type: "memory",
      size_bytes: 1234,
      created_at: "2026-11-26T18:00:00Z",
    });
    assert.equal(snap.snapshotId, "snap1");
    assert.equal(snap.sandboxId, "sbx1");
    assert.equal(snap.snapshotType, "memory");
    assert.equal(snap.sizeBytes, 1234);
    assert.equal(snap.createdAt?.toISOString(), "2026-11-26T18:00:00.000Z");
    assert.equal(snapshotInfoFromWire({ snapshot_id: "s2", status: "in_progress" }).snapshotId, "s2");
  });

  it("maps processes", () => {
    const proc = processInfoFromWire({
      pid: 1002,
      status: "exited",
      exit_code: 3,
      signal: null,
      stdin_writable: true,
      command: "cat",
      args: ["-n"],
      started_at: MS,
      ended_at: MS + 5,
      oom_killed: false,
    });
    assert.deepEqual(
      { pid: proc.pid, status: proc.status, exitCode: proc.exitCode, signal: proc.signal, stdinWritable: proc.stdinWritable },
      { pid: 1002, status: "exited", exitCode: 3, signal: null, stdinWritable: true },
    );
    assert.deepEqual(proc.args, ["-n"]);
    assert.equal(proc.endedAt?.getTime(), MS + 5);
    assert.equal(proc.oomKilled, false);
    assert.throws(() => processInfoFromWire({ status: "running" }), /pid/);
  });

  it("maps directory entries, output and PTY sessions", () => {
    const entries = listFromWire(
      { path: "/tmp", entries: [
        { name: "a.txt", is_dir: false, size: 3, modified_at: MS },
        { name: "sub", is_dir: true, size: null, modified_at: null },
      ] },
      "entries",
      directoryEntryFromWire,
      "directory listing",
    );
    assert.deepEqual(entries, [
      { name: "a.txt", isDir: false, size: 3, modifiedAt: new Date(MS) },
      { name: "sub", isDir: true, size: null, modifiedAt: null },
    ]);
    assert.throws(() => directoryEntryFromWire({ name: "x" }), /is_dir/);
    assert.deepEqual(outputResponseFromWire({ pid: 1, lines: ["a", "b"], line_count: 2 }), {
      pid: 1,
      lines: ["a", "b"],
      lineCount: 2,
      continued: [],
    });
    // The pieces of a line the agent cut (over 1 MiB): indexes into `lines`.
    assert.deepEqual(outputResponseFromWire({ pid: 1, lines: ["a", "b", "c"], line_count: 3, continued: [0, 1] }).continued, [0, 1]);
    assert.deepEqual(ptySessionInfoFromWire({ session_id: "p1", token: "t" }), { sessionId: "p1", token: "t" });
    assert.throws(() => ptySessionInfoFromWire({ session_id: "p1" }), /token/);
  });

  it("reads output events, defaulting the stream and skipping non-lines", () => {
    assert.deepEqual(outputEventFromWire({ line: "x", timestamp: MS }, "stderr"), { line: "x", timestamp: new Date(MS), stream: "stderr" });
    assert.equal(outputEventFromWire({ line: "x", timestamp: MS, stream: "stdout" }, "stderr")?.stream, "stdout");
    assert.equal(outputEventFromWire({}, null), null);
  });

  it("marks a piece of a cut line continued, and leaves the field out on other lines", () => {
    const piece = outputEventFromWire({ line: "x", timestamp: MS, stream: "stdout", continued: true });
    assert.deepEqual(piece, { line: "x", timestamp: new Date(MS), stream: "stdout", continued: true });
    for (const continued of [false, undefined, null, 1, "true"]) {
      const event = outputEventFromWire({ line: "x", timestamp: MS, stream: "stdout", continued });
      assert.deepEqual(Object.keys(event!), ["line", "timestamp", "stream"], String(continued));
    }
  });

  it("treats a missing or null list as empty and rejects a non-list", () => {
    assert.deepEqual(listFromWire({}, "sandboxes", sandboxInfoFromWire, "sandbox list"), []);
    assert.deepEqual(listFromWire({ snapshots: null }, "snapshots", snapshotInfoFromWire, "snapshot list"), []);
    assert.throws(() => listFromWire({ sandboxes: 3 }, "sandboxes", sandboxInfoFromWire, "sandbox list"), SandboxError);
  });
});
