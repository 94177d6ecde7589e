/**
 * `getOrCreate`: one sandbox per name, however many callers race for it.
 */

import assert from "node:assert/strict";
import { after, afterEach, before, describe, it } from "node:test";

import { clock } from "../../src/http.js";
import { SandboxClient, SandboxError } from "../../src/index.js";
import { sandboxJson, startFake, type Answer, type Fake, type Recorded } from "./fake.js";

const BASE = "/v1/namespaces/default/sandboxes";
const NOT_FOUND: Answer = { status: 404, json: { message: "sandbox my-env not found", code: "SANDBOX_NOT_FOUND" } };
const TAKEN: Answer = { status: 409, json: { message: "name 'my-env' is taken", code: "NAME_TAKEN" } };

describe("SandboxClient.getOrCreate against a fake server", () => {
  let fake: Fake;
  let handler: (req: Recorded) => Answer | Promise<Answer>;
  let client: SandboxClient;
  let sleeps: number[];
  const originalSleep = clock.sleep;

  const running = (fields: Record<string, unknown> = {}): Answer => ({
    json: sandboxJson({ name: "my-env", sandbox_url: fake.url, ...fields }),
  });
  const created = (): Answer => ({ json: { sandbox_id: "sbx1", status: "running", sandbox: sandboxJson({ name: "my-env", sandbox_url: fake.url }) } });
  const calls = (method: string, path: string): number =>
    fake.requests.filter((req) => req.method === method && req.path === path).length;

  before(async () => {
    clock.sleep = async (ms: number) => {
      sleeps.push(ms);
    };
    fake = await startFake((req) => handler(req));
    client = new SandboxClient({ apiUrl: fake.url });
  });
  after(async () => {
    clock.sleep = originalSleep;
    await fake.close();
  });
  afterEach(() => {
    fake.requests.length = 0;
  });
  const reset = (): void => {
    sleeps = [];
  };

  it("creates a free name with the given options, and the handle does not delete it", async () => {
    reset();
    handler = (req) => (req.method === "GET" ? NOT_FOUND : created());
    {
      await using sandbox = await client.getOrCreate("my-env", { cpus: 2, memoryMb: 4096, secretNames: ["K"] });
      assert.equal(sandbox.bindOutcome, "created");
      assert.equal(sandbox.sandboxId, "sbx1");
    }
    const post = fake.requests.find((req) => req.method === "POST");
    const body = JSON.parse(post!.body.toString()) as Record<string, unknown>;
    assert.equal(body.name, "my-env");
    assert.deepEqual(body.resources, { cpus: 2, memory_mb: 4096 });
    assert.deepEqual(body.secret_names, ["K"]);
    assert.equal(calls("DELETE", `${BASE}/sbx1`), 0);
  });

  it("attaches to a running holder without creating", async () => {
    reset();
    handler = () => running();
    const sandbox = await client.getOrCreate("my-env", { cpus: 4 });
    assert.equal(sandbox.bindOutcome, "attached");
    assert.equal(fake.requests.filter((req) => req.method === "POST").length, 0);
  });

  it("attaches to the winner after losing a create race", async () => {
    reset();
    let gets = 0;
    handler = (req) => {
      if (req.method === "POST") return TAKEN;
      gets += 1;
      return gets === 1 ? NOT_FOUND : running();
    };
    assert.equal((await client.getOrCreate("my-env")).bindOutcome, "attached");
    assert.equal(calls("POST", BASE), 1);
  });

  it("waits for a holder still starting, at growing intervals", async () => {
    reset();
    let gets = 0;
    handler = () => {
      gets += 1;
      return gets < 4 ? running({ status: "pending", sandbox_url: null }) : running();
    };
    assert.equal((await client.getOrCreate("my-env")).bindOutcome, "attached");
    assert.deepEqual(sleeps, [20, 40, 80]);
  });

  it("resumes a suspended holder unless asked not to", async () => {
    reset();
    let resumed = false;
    handler = (req) => {
      if (req.method === "POST") resumed = true;
      return running({ status: resumed ? "running" : "suspended" });
    };
    assert.equal((await client.getOrCreate("my-env", { resume: false })).bindOutcome, "attached");
    assert.equal(calls("POST", `${BASE}/sbx1/resume`), 0);
    assert.equal((await client.getOrCreate("my-env")).bindOutcome, "resumed");
    assert.equal(calls("POST", `${BASE}/sbx1/resume`), 1);
  });

  it("creates again when the holder ends while it is looked at", async () => {
    reset();
    let byName = 0;
    handler = (req) => {
      if (req.method === "POST") return created();
      if (req.path === `${BASE}/my-env`) {
        byName += 1;
        return byName === 1 ? running({ status: "pending", sandbox_url: null }) : NOT_FOUND;
      }
      return running({ status: "failed", sandbox_url: null });
    };
    assert.equal((await client.getOrCreate("my-env")).bindOutcome, "created");
  });

  it("gives up on a name that stays held but cannot be attached to", async () => {
    reset();
    handler = (req) => (req.method === "POST" ? TAKEN : NOT_FOUND);
    await assert.rejects(client.getOrCreate("my-env"), (error: unknown) => {
      assert.ok(error instanceof SandboxError);
      assert.match(error.message, /stayed held after 5 attempts/);
      return true;
    });
    assert.equal(calls("POST", BASE), 5);
  });

  it("refuses bad arguments before any request, and an id for a name", async () => {
    reset();
    handler = () => running({ id: "sbx1", name: "other" });
    await assert.rejects(client.getOrCreate(""), TypeError);
    await assert.rejects(client.getOrCreate("my-env", { cpus: 0 }), RangeError);
    assert.equal(fake.requests.length, 0);
    await assert.rejects(client.getOrCreate("sbx1"), /is the id of a sandbox/);
    assert.equal(fake.requests.filter((req) => req.method === "POST").length, 0);
  });

  it("gives handles from connect no outcome", async () => {
    reset();
    handler = () => running();
    assert.equal((await client.connect("sbx1")).bindOutcome, null);
  });
});
