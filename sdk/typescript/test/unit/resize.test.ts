/**
 * Live resize (`PATCH {B}/sandboxes/{id}` with `resources`), as the Python SDK's
 * `update()` / `wait_for_resource_resize()`: the request sends only the dimensions given, the
 * wait polls GET until the resize's generation has succeeded, and a failed, superseded or
 * overdue resize throws SandboxResizeError.
 */

import assert from "node:assert/strict";
import { after, afterEach, before, describe, it } from "node:test";

import { resizeBody } from "../../src/client.js";
import { sandboxInfoFromWire } from "../../src/models.js";
import { RemoteAPIError, SandboxClient, SandboxError, SandboxResizeError } from "../../src/index.js";
import { instantSleeps, sandboxJson, startFake, type Answer, type Fake, type Recorded } from "./fake.js";

const BASE = "/v1/namespaces/default";
const REQUESTED = { cpus: 2, memory_mb: 2048, disk_mb: 10240 };

function resize(generation: number, status: string, extra: Record<string, unknown> = {}): Record<string, unknown> {
  return { generation, requested: REQUESTED, status, ...extra };
}

describe("resize body", () => {
  it("sends only the dimensions given, under their wire names", () => {
    assert.deepEqual(resizeBody({ memoryMb: 2048 }), { memory_mb: 2048 });
    assert.deepEqual(resizeBody({ cpus: 0.5 }), { cpus: 0.5 });
    assert.deepEqual(resizeBody({ diskMb: 20480, wait: false }), { disk_mb: 20480 });
    assert.deepEqual(resizeBody({ cpus: 2, memoryMb: 4096, diskMb: 20480 }), { cpus: 2, memory_mb: 4096, disk_mb: 20480 });
  });

  it("rejects bad values, and no values at all", () => {
    assert.throws(() => resizeBody({}), TypeError);
    for (const bad of [{ cpus: 0 }, { cpus: -1 }, { cpus: Number.NaN }, { cpus: Infinity }, { memoryMb: 1.5 }, { memoryMb: 0 }, { diskMb: -10 }]) {
      assert.throws(() => resizeBody(bad), RangeError, JSON.stringify(bad));
    }
  });
});

describe("resource_resize in SandboxInfo", () => {
  it("reads the latest resize in camelCase, null before the first", () => {
    const info = sandboxInfoFromWire(sandboxJson({ resource_resize: resize(3, "failed", { error_message: "no room" }) }));
    assert.deepEqual(info.resourceResize, {
      generation: 3,
      requested: { cpus: 2, memoryMb: 2048, diskMb: 10240 },
      status: "failed",
      errorMessage: "no room",
    });
    assert.equal(sandboxInfoFromWire(sandboxJson()).resourceResize, null);
    assert.throws(() => sandboxInfoFromWire(sandboxJson({ resource_resize: { status: "pending" } })), SandboxError);
  });
});

describe("update and waitForResourceResize against a fake server", () => {
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

  /** PATCH answers `patched`; each GET answers the next of `gets` (the last one repeats). */
  function serve(patched: Record<string, unknown>, gets: Record<string, unknown>[] = []): void {
    let seen = 0;
    handler = (req) => {
      if (req.method === "PATCH") return { json: sandboxJson({ sandbox_url: fake.url, resource_resize: patched }) };
      const next = gets[Math.min(seen, gets.length - 1)]!;
      seen += 1;
      return { json: sandboxJson({ sandbox_url: fake.url, resource_resize: next }) };
    };
  }

  it("PATCHes only the dimensions given and polls GET until its generation succeeds", async () => {
    serve(resize(4, "pending"), [resize(4, "pending"), resize(4, "pending"), resize(4, "succeeded")]);
    const info = await client.update("my-env", { memoryMb: 2048 });
    assert.equal(info.resourceResize?.status, "succeeded");
    assert.equal(info.resourceResize?.generation, 4);
    const [patch, ...gets] = fake.requests;
    assert.equal(patch!.method, "PATCH");
    assert.equal(patch!.path, `${BASE}/sandboxes/my-env`);
    assert.deepEqual(JSON.parse(patch!.body.toString()), { resources: { memory_mb: 2048 } });
    assert.equal(patch!.headers.authorization, "Bearer secret-key");
    assert.deepEqual(gets.map((r) => [r.method, r.path]), Array(3).fill(["GET", `${BASE}/sandboxes/my-env`]));
  });

  it("returns at once when the PATCH answer already says succeeded", async () => {
    serve(resize(1, "succeeded"));
    const info = await client.update("sbx1", { cpus: 2, diskMb: 20480 });
    assert.equal(info.resourceResize?.status, "succeeded");
    assert.deepEqual(fake.requests.map((r) => r.method), ["PATCH"]);
    assert.deepEqual(JSON.parse(fake.requests[0]!.body.toString()), { resources: { cpus: 2, disk_mb: 20480 } });
  });

  it("with wait: false, returns the pending resize; waitForResourceResize waits for it", async () => {
    serve(resize(2, "pending"), [resize(2, "pending"), resize(2, "succeeded")]);
    const pending = await client.update("sbx1", { cpus: 2, wait: false });
    assert.equal(pending.resourceResize?.status, "pending");
    assert.deepEqual(fake.requests.map((r) => r.method), ["PATCH"]);
    const done = await client.waitForResourceResize("sbx1", pending.resourceResize!.generation);
    assert.equal(done.resourceResize?.status, "succeeded");
    assert.deepEqual(fake.requests.map((r) => r.method), ["PATCH", "GET", "GET"]);
  });

  it("throws SandboxResizeError with the server's error_message when the resize fails", async () => {
    serve(resize(5, "pending"), [resize(5, "failed", { error_message: "resize2fs: no space left on device" })]);
    await assert.rejects(client.update("sbx1", { diskMb: 40960 }), (error: unknown) => {
      assert.ok(error instanceof SandboxResizeError);
      assert.ok(error instanceof SandboxError);
      assert.equal(error.reason, "failed");
      assert.equal(error.generation, 5);
      assert.equal(error.sandboxId, "sbx1");
      assert.equal(error.message, "sandbox sbx1 resize generation 5: resize2fs: no space left on device");
      assert.equal(error.info?.resourceResize?.errorMessage, "resize2fs: no space left on device");
      return true;
    });
  });

  it("throws SandboxResizeError (superseded) when a later generation replaced it", async () => {
    serve(resize(6, "pending"), [resize(6, "pending"), resize(7, "pending")]);
    await assert.rejects(client.update("sbx1", { cpus: 3 }), (error: unknown) => {
      assert.ok(error instanceof SandboxResizeError);
      assert.equal(error.reason, "superseded");
      assert.equal(error.generation, 6);
      assert.match(error.message, /generation 7 replaced it/);
      return true;
    });
  });

  it("throws SandboxResizeError (timeout) when still pending at timeoutSecs", async () => {
    serve(resize(1, "pending"), [resize(1, "pending")]);
    await assert.rejects(client.waitForResourceResize("sbx1", 1, { timeoutSecs: 0 }), (error: unknown) => {
      assert.ok(error instanceof SandboxResizeError);
      assert.equal(error.reason, "timeout");
      assert.match(error.message, /still pending after 0s/);
      return true;
    });
  });

  it("throws SandboxResizeError (incompatible_response) when the server does not describe the resize", async () => {
    handler = () => ({ json: sandboxJson() });
    await assert.rejects(client.update("sbx1", { cpus: 2 }), (error: unknown) => {
      assert.ok(error instanceof SandboxResizeError);
      assert.equal(error.reason, "incompatible_response");
      return true;
    });
    serve(resize(1, "succeeded"), [resize(1, "succeeded")]);
    await assert.rejects(client.waitForResourceResize("sbx1", 2), (error: unknown) => {
      assert.ok(error instanceof SandboxResizeError);
      assert.equal(error.reason, "incompatible_response");
      return true;
    });
  });

  it("passes the server's refusals on as RemoteAPIError", async () => {
    handler = () => ({ status: 409, json: { message: "memory below current usage", code: "CONFLICT" } });
    await assert.rejects(client.update("sbx1", { memoryMb: 16 }), (error: unknown) => {
      assert.ok(error instanceof RemoteAPIError);
      assert.equal(error.statusCode, 409);
      return true;
    });
  });

  it("refuses bad arguments before anything is sent", async () => {
    handler = () => ({ json: sandboxJson() });
    await assert.rejects(client.update("sbx1", {}), TypeError);
    await assert.rejects(client.update("sbx1", { memoryMb: 1.5 }), RangeError);
    await assert.rejects(client.update("sbx1", { cpus: 1, timeoutSecs: -1 }), RangeError);
    await assert.rejects(client.update("sbx1", { cpus: 1, pollIntervalSecs: 0 }), RangeError);
    await assert.rejects(client.waitForResourceResize("sbx1", 0), RangeError);
    await assert.rejects(client.waitForResourceResize("sbx1", 1.5), RangeError);
    assert.equal(fake.requests.length, 0);
  });

  it("resizes through the sandbox handle, which keeps the new description", async () => {
    serve(resize(1, "pending"), [resize(1, "succeeded")]);
    const sandbox = await client.connect("sbx1");
    fake.requests.length = 0;
    const info = await sandbox.update({ cpus: 2, memoryMb: 2048 });
    assert.equal(info.resourceResize?.status, "succeeded");
    assert.deepEqual(JSON.parse(fake.requests[0]!.body.toString()), { resources: { cpus: 2, memory_mb: 2048 } });
    assert.equal(fake.requests[0]!.path, `${BASE}/sandboxes/sbx1`);

    serve(resize(1, "succeeded"), [resize(2, "failed", { error_message: "runc update failed" })]);
    await assert.rejects(sandbox.waitForResourceResize(2), (error: unknown) =>
      error instanceof SandboxResizeError && error.reason === "failed" && /runc update failed/.test(error.message),
    );
    serve(resize(1, "succeeded"), [resize(2, "succeeded")]);
    assert.equal((await sandbox.waitForResourceResize(2, { timeoutSecs: 5 })).resourceResize?.generation, 2);
  });
});
