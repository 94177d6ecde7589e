import assert from "node:assert/strict";
import { after, afterEach, before, describe, it } from "node:test";

import { createBody } from "../../src/client.js";
import {
  AuthenticationError,
  RemoteAPIError,
  SandboxClient,
  SandboxConnectionError,
  SandboxFailedError,
  SandboxNameConflictError,
  SandboxNotFoundError,
  SandboxTimeoutError,
  SnapshotNotFoundError,
} from "../../src/index.js";
import {
  BAD_NODE_SELECTORS,
  instantSleeps,
  sandboxJson,
  startFake,
  type Answer,
  type Fake,
  type Recorded,
} from "./fake.js";

const BASE = "/v1/namespaces/default";

describe("create body", () => {
  it("always sends resources for a fresh sandbox, with the defaults", () => {
    assert.deepEqual(createBody(), { resources: { cpus: 1.0, memory_mb: 1024 } });
  });

  it("sends every option under its wire name", () => {
    assert.deepEqual(
      createBody({
        name: "my-env",
        cpus: 2,
        memoryMb: 4096,
        timeoutSecs: 1800,
        image: "alcove/debian",
        secretNames: ["OPENAI_API_KEY"],
        exposePorts: [8080, 80, 8080],
        allowUnauthenticatedAccess: true,
        diskMb: 20480,
        entrypoint: ["/bin/sh", "-c", "sleep inf"],
      }),
      {
        resources: { cpus: 2, memory_mb: 4096, disk_mb: 20480 },
        name: "my-env",
        image: "alcove/debian",
        timeout_secs: 1800,
        secret_names: ["OPENAI_API_KEY"],
        exposed_ports: [80, 8080],
        allow_unauthenticated_access: true,
        entrypoint: ["/bin/sh", "-c", "sleep inf"],
      },
    );
  });

  it("restores a snapshot with only its id when nothing is overridden", () => {
    assert.deepEqual(createBody({ snapshotId: "snap1" }), { snapshot_id: "snap1" });
    // Only the sizes given: the rest is inherited from the snapshot, each on its own.
    assert.deepEqual(createBody({ snapshotId: "snap1", memoryMb: 2048 }), {
      snapshot_id: "snap1",
      resources: { memory_mb: 2048 },
    });
    assert.deepEqual(createBody({ snapshotId: "snap1", cpus: 1 }), { snapshot_id: "snap1", resources: { cpus: 1 } });
    assert.deepEqual(createBody({ snapshotId: "snap1", diskMb: 20480 }), {
      snapshot_id: "snap1",
      resources: { disk_mb: 20480 },
    });
  });

  it("rejects bad values before anything is sent", () => {
    assert.throws(() => createBody({ cpus: 0 }), RangeError);
    assert.throws(() => createBody({ memoryMb: 1.5 }), RangeError);
    assert.throws(() => createBody({ exposePorts: [9501] }), /reserved/);
    assert.throws(() => createBody({ name: " " }), TypeError);
    assert.throws(() => createBody({ secretNames: "A" as unknown as string[] }), TypeError);
  });

  it("sends a node selector as node_selector, only when it has pairs", () => {
    assert.deepEqual(createBody({ nodeSelector: { zone: "b", gpu: "a100" } }), {
      resources: { cpus: 1, memory_mb: 1024 },
      node_selector: { zone: "b", gpu: "a100" },
    });
    assert.deepEqual(createBody({ snapshotId: "snap1", nodeSelector: { zone: "" } }), {
      snapshot_id: "snap1",
      node_selector: { zone: "" },
    });
    assert.equal("node_selector" in createBody({ nodeSelector: {} }), false);
    assert.equal("node_selector" in createBody({ nodeSelector: undefined }), false);
    assert.equal("node_selector" in createBody(), false);
    const selector = { zone: "b" };
    const body = createBody({ nodeSelector: selector });
    assert.notEqual(body.node_selector, selector, "a copy, not the caller's object");
    const sixteen = Object.fromEntries(Array.from({ length: 16 }, (_, i) => [`k${i}`, "v"]));
    assert.deepEqual(createBody({ nodeSelector: sixteen }).node_selector, sixteen);
  });

  it("rejects a bad node selector before anything is sent", () => {
    for (const [selector, kind] of BAD_NODE_SELECTORS) {
      assert.throws(
        () => createBody({ nodeSelector: selector as Record<string, string> }),
        (error: unknown) => error instanceof kind && /nodeSelector/.test(String(error)),
        JSON.stringify(selector),
      );
    }
  });
});

describe("SandboxClient against a fake server", () => {
  let fake: Fake;
  let handler: (req: Recorded) => Answer | Promise<Answer>;
  let restoreSleeps: () => void;
  let client: SandboxClient;

  before(async () => {
    restoreSleeps = instantSleeps();
    fake = await startFake((req) => handler(req));
    client = new SandboxClient({ apiUrl: fake.url, apiKey: "secret-key" });
  });
  after(async () => {
    restoreSleeps();
    await fake.close();
  });
  afterEach(() => {
    fake.requests.length = 0;
  });

  it("creates with the timeout headers and polls while pending", async () => {
    let gets = 0;
    handler = (req) => {
      if (req.method === "POST") return { json: { sandbox_id: "sbx1", status: "pending", pending_reason: "scheduling" } };
      gets += 1;
      return { json: sandboxJson({ status: gets < 3 ? "pending" : "running", sandbox_url: fake.url }) };
    };
    const info = await client.create({ name: "my-env" });
    assert.equal(info.sandboxId, "sbx1");
    assert.equal(info.status, "running");
    assert.equal(gets, 3);
    const post = fake.requests[0]!;
    assert.equal(post.path, `${BASE}/sandboxes`);
    assert.deepEqual(JSON.parse(post.body.toString()), { resources: { cpus: 1, memory_mb: 1024 }, name: "my-env" });
    assert.equal(post.headers["content-type"], "application/json");
    assert.equal(post.headers.authorization, "Bearer secret-key");
    assert.match(post.headers["user-agent"] ?? "", /^alcove-typescript-sdk\/\d/);
    assert.equal(post.headers["x-tensorlake-request-timeout-ms"], "300000");
    assert.equal(post.headers["x-tensorlake-request-timeout-grace-ms"], "5000");
    assert.equal(fake.requests[1]!.path, `${BASE}/sandboxes/sbx1`);
  });

  it("takes a running sandbox's info from the create answer, without a GET", async () => {
    let embedded: Record<string, unknown> = sandboxJson({ sandbox_url: fake.url, name: "from-answer" });
    handler = (req) => {
      if (req.method === "POST") return { json: { sandbox_id: "sbx1", status: "running", sandbox: embedded } };
      return { json: sandboxJson({ sandbox_url: fake.url, name: "from-get" }) };
    };
    assert.equal((await client.create()).name, "from-answer");
    assert.deepEqual(
      fake.requests.map((req) => req.method),
      ["POST"],
    );
    // An embedded sandbox that does not run is not trusted: the client asks again.
    embedded = sandboxJson({ status: "pending", sandbox_url: null });
    assert.equal((await client.create()).name, "from-get");
  });

  it("sends the node selector from create and createAndConnect, and reads it back", async () => {
    handler = (req) => {
      if (req.method === "POST") return { json: { sandbox_id: "sbx1", status: "running" } };
      if (req.method === "DELETE") return { status: 200, body: "" };
      return { json: sandboxJson({ sandbox_url: fake.url, node_selector: { zone: "b" } }) };
    };
    assert.deepEqual((await client.create({ nodeSelector: { zone: "b" } })).nodeSelector, { zone: "b" });
    {
      await using sandbox = await client.createAndConnect({ snapshotId: "snap1", nodeSelector: { gpu: "a100" } });
      void sandbox;
    }
    const posts = fake.requests.filter((req) => req.method === "POST").map((req) => JSON.parse(req.body.toString()));
    assert.deepEqual(posts, [
      { resources: { cpus: 1, memory_mb: 1024 }, node_selector: { zone: "b" } },
      { snapshot_id: "snap1", node_selector: { gpu: "a100" } },
    ]);
    const sent = fake.requests.length;
    await assert.rejects(client.create({ nodeSelector: { zone: 1 } as unknown as Record<string, string> }), TypeError);
    assert.equal(fake.requests.length, sent);
  });

  it("passes on a 503 RESOURCE_EXHAUSTED when no node with the labels has room", async () => {
    handler = () => ({
      status: 503,
      json: { message: "no live active node whose labels match node_selector (zone=b) has room", code: "RESOURCE_EXHAUSTED" },
    });
    await assert.rejects(client.create({ nodeSelector: { zone: "b" } }), (error: unknown) => {
      assert.ok(error instanceof RemoteAPIError);
      assert.equal(error.statusCode, 503);
      assert.equal(error.code, "RESOURCE_EXHAUSTED");
      return true;
    });
    assert.equal(fake.requests.filter((req) => req.method === "POST").length, 1, "a create is never replayed");
  });

  it("accepts a 504 that carries the create answer", async () => {
    handler = (req) =>
      req.method === "POST"
        ? { status: 504, json: { sandbox_id: "sbx1", status: "pending" } }
        : { json: sandboxJson({ sandbox_url: fake.url }) };
    assert.equal((await client.create()).status, "running");
  });

  it("throws SandboxFailedError with the reason when the sandbox fails", async () => {
    handler = () => ({ json: { sandbox_id: "sbx1", status: "failed", termination_reason: "image_not_found", error_details: "no image x" } });
    await assert.rejects(client.create({ image: "x" }), (error: unknown) => {
      assert.ok(error instanceof SandboxFailedError);
      assert.equal(error.reason, "image_not_found");
      assert.match(error.message, /sbx1 failed \(image_not_found\): no image x/);
      return true;
    });
  });

  it("maps a 409 on create to SandboxNameConflictError", async () => {
    handler = () => ({ status: 409, json: { message: "name my-env is taken", code: "NAME_TAKEN" } });
    await assert.rejects(client.create({ name: "my-env" }), (error: unknown) => {
      assert.ok(error instanceof SandboxNameConflictError);
      assert.equal(error.statusCode, 409);
      assert.equal(error.code, "NAME_TAKEN");
      return true;
    });
  });

  it("sends any request again when a busy server refused it unread, but not a full pool's claim", async () => {
    let posts = 0;
    handler = (req) => {
      if (req.path.endsWith("/sandbox-pools/p1/sandboxes")) {
        return { status: 429, json: { message: "pool p1 is full", code: "POOL_AT_CAPACITY" } };
      }
      posts += 1;
      if (posts === 1) return { status: 429, headers: { "Retry-After": "1" }, json: { message: "slow down", code: "TOO_MANY_REQUESTS" } };
      if (posts === 2) return { status: 503, json: { message: "busy", code: "SERVER_BUSY" } };
      return { json: { sandbox_id: "sbx1", status: "running", sandbox: sandboxJson({ sandbox_url: fake.url }) } };
    };
    assert.equal((await client.create()).sandboxId, "sbx1");
    assert.equal(posts, 3);
    await assert.rejects(client.claim("p1"), (error: unknown) => error instanceof RemoteAPIError && error.statusCode === 429);
    assert.equal(fake.requests.filter((req) => req.path.endsWith("/sandbox-pools/p1/sandboxes")).length, 1);
  });

  it("gives up waiting at the client's timeout", async () => {
    const impatient = new SandboxClient({ apiUrl: fake.url, timeoutSecs: 0.05 });
    handler = (req) =>
      req.method === "POST" ? { json: { sandbox_id: "sbx1", status: "pending" } } : { json: sandboxJson({ status: "pending" }) };
    const restore = instantSleeps();
    try {
      await assert.rejects(impatient.create(), SandboxTimeoutError);
    } finally {
      restore();
    }
  });

  it("gets by name, lists, deletes, and maps 404 to SandboxNotFoundError", async () => {
    handler = (req) => {
      if (req.path === `${BASE}/sandboxes` && req.method === "GET") {
        return { json: { sandboxes: [sandboxJson({ name: "a" }), sandboxJson({ id: "sbx2", status: "suspended" })] } };
      }
      if (req.path.endsWith("/missing")) return { status: 404, json: { message: "sandbox missing not found", code: "NOT_FOUND" } };
      if (req.method === "DELETE") return { status: 200, body: "" };
      return { json: sandboxJson({ name: "my env" }) };
    };
    assert.equal((await client.get("my env")).name, "my env");
    assert.equal(fake.requests.at(-1)!.path, `${BASE}/sandboxes/my%20env`);
    assert.deepEqual((await client.list()).map((s) => [s.sandboxId, s.status]), [["sbx1", "running"], ["sbx2", "suspended"]]);
    await client.delete("sbx1");
    assert.equal(fake.requests.at(-1)!.method, "DELETE");
    await assert.rejects(client.get("missing"), (error: unknown) => error instanceof SandboxNotFoundError && error.sandboxId === "missing");
    await assert.rejects(client.delete("missing"), SandboxNotFoundError);
  });

  it("lists archived sandboxes a page at a time and gets one", async () => {
    const archived = (id: string) =>
      sandboxJson({ id, status: "terminated", sandbox_url: undefined, termination_reason: "deleted",
        terminated_at: 1767225660000, archived_at: 1767225660000 });
    handler = (req) => {
      if (req.path === `${BASE}/archived-sandboxes`) {
        return { json: { sandboxes: [archived("sbx1"), archived("sbx2")], prev_cursor: null, next_cursor: "bmV4dA" } };
      }
      if (req.path === `${BASE}/archived-sandboxes/sbx1`) return { json: { ...archived("sbx1"), name: "old-env" } };
      return { status: 404, json: { message: "archived sandbox not found", code: "NOT_FOUND" } };
    };
    const page = await client.listArchived({ limit: 2, cursor: "Y3Vy", direction: "backward" });
    assert.deepEqual(page.sandboxes.map((s) => [s.sandboxId, s.status, s.terminationReason]), [
      ["sbx1", "terminated", "deleted"],
      ["sbx2", "terminated", "deleted"],
    ]);
    assert.deepEqual([page.prevCursor, page.nextCursor], [null, "bmV4dA"]);
    assert.equal(page.sandboxes[0]!.archivedAt?.getTime(), 1767225660000);
    assert.deepEqual(Object.fromEntries(fake.requests.at(-1)!.query), { limit: "2", cursor: "Y3Vy", direction: "backward" });
    await client.listArchived();
    assert.equal(fake.requests.at(-1)!.query.toString(), "", "no argument, no query: the server's defaults");

    const one = await client.getArchived("sbx1");
    assert.deepEqual([one.sandboxId, one.name, one.archivedAt?.getTime()], ["sbx1", "old-env", 1767225660000]);
    await assert.rejects(client.getArchived("gone"), (error: unknown) => error instanceof SandboxNotFoundError && error.sandboxId === "gone");

    const sent = fake.requests.length;
    for (const bad of [{ limit: 0 }, { limit: 1.5 }, { cursor: "" }, { direction: "up" }] as object[]) {
      await assert.rejects(client.listArchived(bad), (error: unknown) => error instanceof RangeError || error instanceof TypeError);
    }
    await assert.rejects(client.getArchived(""), TypeError);
    assert.equal(fake.requests.length, sent, "bad arguments are refused before anything is sent");
  });

  it("refuses an archived sandbox without archived_at, as the official SDK does", async () => {
    handler = () => ({ json: sandboxJson({ status: "terminated" }) });
    await assert.rejects(client.getArchived("sbx1"), /archived_at/);
  });

  it("retries GETs on 503 and connection errors, not POSTs", async () => {
    let calls = 0;
    handler = () => {
      calls += 1;
      return calls < 3 ? { status: 503, body: "busy" } : { json: sandboxJson() };
    };
    assert.equal((await client.get("sbx1")).sandboxId, "sbx1");
    assert.equal(calls, 3);
    calls = 0;
    handler = () => {
      calls += 1;
      return { status: 503, body: "busy" };
    };
    await assert.rejects(client.get("sbx1"), (error: unknown) => (error as { statusCode?: number }).statusCode === 503);
    assert.equal(calls, 3);
    calls = 0;
    await assert.rejects(client.create(), /status 503/);
    assert.equal(calls, 1);
    const nobody = new SandboxClient({ apiUrl: "http://127.0.0.1:1" });
    await assert.rejects(nobody.list(), SandboxConnectionError);
  });

  it("maps 401 to AuthenticationError", async () => {
    handler = () => ({ status: 401, json: { message: "missing or invalid API key", code: "UNAUTHORIZED" } });
    await assert.rejects(client.list(), AuthenticationError);
  });

  it("renames with PATCH", async () => {
    handler = (req) => ({ json: sandboxJson({ name: JSON.parse(req.body.toString()).name }) });
    assert.equal((await client.updateSandbox("sbx1", "new-name")).name, "new-name");
    const patch = fake.requests.at(-1)!;
    assert.equal(patch.method, "PATCH");
    assert.deepEqual(JSON.parse(patch.body.toString()), { name: "new-name" });
  });

  it("suspends with wait_ms and polls after a 202", async () => {
    let gets = 0;
    handler = (req) => {
      if (req.method === "POST") return { status: 202, body: "" };
      gets += 1;
      return { json: sandboxJson({ status: gets < 2 ? "suspending" : "suspended" }) };
    };
    assert.equal((await client.suspend("my-env")).status, "suspended");
    const post = fake.requests[0]!;
    assert.equal(post.path, `${BASE}/sandboxes/my-env/suspend`);
    assert.equal(post.query.get("wait_ms"), "30000");
    assert.equal(post.headers["content-length"], "0");
    assert.equal(gets, 2);
  });

  it("treats a 409 on resume as success when the sandbox already runs", async () => {
    handler = (req) => (req.method === "POST" ? { status: 409, json: { message: "not suspended" } } : { json: sandboxJson() });
    assert.equal((await client.resume("my-env")).status, "running");
    handler = (req) =>
      req.method === "POST" ? { status: 409, json: { message: "suspending" } } : { json: sandboxJson({ status: "suspending" }) };
    await assert.rejects(client.resume("my-env"), /status 409/);
  });

  it("exposes and unexposes ports from the current list", async () => {
    const patches: unknown[] = [];
    handler = (req) => {
      if (req.method === "PATCH") {
        patches.push(JSON.parse(req.body.toString()));
        return { json: sandboxJson() };
      }
      return { json: sandboxJson({ exposed_ports: [3000], allow_unauthenticated_access: true }) };
    };
    await client.exposePorts("sbx1", [8080], { allowUnauthenticatedAccess: true });
    await client.unexposePorts("sbx1", [3000]);
    // Without the option the sandbox keeps its mode: a public sandbox stays public.
    await client.exposePorts("sbx1", [8080]);
    assert.deepEqual(patches, [
      { allow_unauthenticated_access: true, exposed_ports: [3000, 8080] },
      { allow_unauthenticated_access: false, exposed_ports: [] },
      { exposed_ports: [3000, 8080] },
    ]);
    await assert.rejects(client.exposePorts("sbx1", [9501]), RangeError);
  });

  it("snapshots and waits until the snapshot is usable", async () => {
    let gets = 0;
    handler = (req) => {
      if (req.method === "POST") return { status: 202, json: { snapshot_id: "snap1", status: "in_progress" } };
      gets += 1;
      return { json: { id: "snap1", namespace: "default", sandbox_id: "sbx1", status: gets < 2 ? "in_progress" : "completed" } };
    };
    const snap = await client.snapshotAndWait("sbx1", { snapshotType: "filesystem" });
    assert.equal(snap.snapshotId, "snap1");
    assert.equal(snap.status, "completed");
    assert.deepEqual(JSON.parse(fake.requests[0]!.body.toString()), { snapshot_type: "filesystem" });
    // The server is asked to wait for the end (75 % of the client's timeout, at most 30 s).
    assert.equal(fake.requests[0]!.query.get("wait_ms"), "30000");
    assert.equal(fake.requests[1]!.path, `${BASE}/snapshots/snap1`);
    fake.requests.length = 0;
    // Ended within the server's wait: one read of the whole record, no poll; a plain
    // snapshot does not wait.
    handler = (req) =>
      req.method === "POST"
        ? { json: { snapshot_id: "snap3", status: "completed" } }
        : { json: { id: "snap3", sandbox_id: "sbx1", status: "completed", size_bytes: 7 } };
    const done = await client.snapshotAndWait("sbx1");
    assert.equal(done.sizeBytes, 7);
    assert.deepEqual(fake.requests.map((r) => r.method), ["POST", "GET"]);
    await client.snapshot("sbx1");
    assert.equal(fake.requests[2]!.query.get("wait_ms"), "0");
    fake.requests.length = 0;
    handler = (req) =>
      req.method === "POST"
        ? { json: { snapshot_id: "snap2", status: "in_progress" } }
        : { json: { id: "snap2", sandbox_id: "sbx1", status: "failed", error: "disk full" } };
    await assert.rejects(client.snapshotAndWait("sbx1"), /snap2 of sandbox sbx1 failed: disk full/);
    assert.equal(fake.requests[0]!.headers["content-length"], "0");
  });

  it("lists, gets and deletes snapshots", async () => {
    handler = (req) => {
      if (req.path.endsWith("/gone")) return { status: 404, json: { message: "no snapshot gone" } };
      if (req.method === "DELETE") return { status: 204 };
      if (req.path === `${BASE}/snapshots`) return { json: { snapshots: [{ id: "s1", sandbox_id: "sbx1", status: "completed" }] } };
      return { json: { snapshot_id: "s1", status: "local_ready" } };
    };
    assert.deepEqual((await client.listSnapshots()).map((s) => s.snapshotId), ["s1"]);
    assert.equal((await client.getSnapshot("s1")).status, "local_ready");
    await client.deleteSnapshot("s1");
    await assert.rejects(client.getSnapshot("gone"), SnapshotNotFoundError);
  });

  it("connects by name: the handle carries the id", async () => {
    handler = () => ({ json: sandboxJson({ id: "sbx-uuid", name: "my-env", sandbox_url: fake.url }) });
    const sandbox = await client.connect("my-env");
    assert.equal(sandbox.sandboxId, "sbx-uuid");
    assert.equal(sandbox.name, "my-env");
    handler = () => ({ json: sandboxJson({ status: "terminated", sandbox_url: fake.url }) });
    await assert.rejects(client.connect("sbx1"), /can no longer be reached/);
    handler = () => ({ json: sandboxJson() });
    await assert.rejects(client.connect("sbx1"), /no sandbox_url/);
  });
});
