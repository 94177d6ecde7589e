/**
 * Warm pools and claims against a fake server: request shapes, decoding and error mapping.
 */

import assert from "node:assert/strict";
import { after, afterEach, before, describe, it } from "node:test";

import { claimBody, poolBody } from "../../src/client.js";
import { sandboxPoolInfoFromWire } from "../../src/models.js";
import {
  ImageNotFoundError,
  PoolAtCapacityError,
  PoolInUseError,
  PoolNotFoundError,
  RemoteAPIError,
  Sandbox,
  SandboxClient,
  SandboxFailedError,
  SandboxNameConflictError,
  SandboxNotFoundError,
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

const POOLS = "/v1/namespaces/default/sandbox-pools";
const POOL = `${POOLS}/pool-1`;
const CLAIM = `${POOL}/sandboxes`;
const SBX = "/v1/namespaces/default/sandboxes/sbx1";

function poolJson(fields: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    id: "pool-1",
    namespace: "default",
    image: "default",
    resources: { cpus: 1.0, memory_mb: 1024, disk_mb: 10240, ephemeral_disk_mb: 10240 },
    timeout_secs: 0,
    entrypoint: [],
    max_containers: null,
    warm_containers: 2,
    network_policy: { allow_internet_access: true, allow_out: [], deny_out: [] },
    created_at: 1795711162444,
    updated_at: 1795711162444,
    ...fields,
  };
}

const idle = (id: string, state = "Idle") => ({ id, state, sandbox_id: id, executor_id: "local" });
const error = (status: number, code: string, message: string): Answer => ({ status, json: { message, code } });
const bodyOf = (req: Recorded): unknown => JSON.parse(req.body.toString());

describe("pool and claim bodies", () => {
  it("sends the defaults: resources and no timeout", () => {
    assert.deepEqual(poolBody(), { resources: { cpus: 1, memory_mb: 1024 }, timeout_secs: 0 });
  });

  it("sends every option under its wire name", () => {
    assert.deepEqual(
      poolBody({
        image: "ubuntu",
        cpus: 2,
        memoryMb: 2048,
        diskMb: 20480,
        timeoutSecs: 600,
        entrypoint: ["sleep", "infinity"],
        maxContainers: 4,
        warmContainers: 2,
        network: { allowInternetAccess: false, allowOut: ["10.0.0.1"], denyOut: [] },
      }),
      {
        resources: { cpus: 2, memory_mb: 2048, disk_mb: 20480 },
        timeout_secs: 600,
        image: "ubuntu",
        entrypoint: ["sleep", "infinity"],
        max_containers: 4,
        warm_containers: 2,
        network: { allow_internet_access: false, allow_out: ["10.0.0.1"], deny_out: [] },
      },
    );
  });

  it("rejects bad pool values before anything is sent", () => {
    assert.throws(() => poolBody({ warmContainers: 0 }), RangeError);
    assert.throws(() => poolBody({ warmContainers: 65 }), RangeError);
    assert.throws(() => poolBody({ maxContainers: 1001 }), RangeError);
    assert.throws(() => poolBody({ maxContainers: 1, warmContainers: 2 }), /must not exceed/);
    assert.throws(() => poolBody({ timeoutSecs: -1 }), RangeError);
    assert.throws(() => poolBody({ cpus: 0 }), RangeError);
    assert.throws(() => poolBody({ image: " " }), TypeError);
    assert.throws(() => poolBody({ network: { allowIn: [] } as never }), /network takes only/);
    assert.throws(() => poolBody({ network: { allowInternetAccess: "no" as never } }), TypeError);
  });

  it("sends a node selector as node_selector, only when it has pairs", () => {
    assert.deepEqual(poolBody({ nodeSelector: { gpu: "a100", zone: "" } }), {
      resources: { cpus: 1, memory_mb: 1024 },
      timeout_secs: 0,
      node_selector: { gpu: "a100", zone: "" },
    });
    assert.equal("node_selector" in poolBody({ nodeSelector: {} }), false);
    assert.equal("node_selector" in poolBody({ nodeSelector: undefined }), false);
    assert.equal("node_selector" in poolBody(), false);
    const selector = { zone: "b" };
    const body = poolBody({ nodeSelector: selector });
    assert.notEqual(body.node_selector, selector, "a copy, not the caller's object");
    const sixteen = Object.fromEntries(Array.from({ length: 16 }, (_, i) => [`k${i}`, "v"]));
    assert.deepEqual(poolBody({ nodeSelector: sixteen }).node_selector, sixteen);
  });

  it("rejects a bad node selector as create does", () => {
    for (const [selector, kind] of BAD_NODE_SELECTORS) {
      assert.throws(
        () => poolBody({ nodeSelector: selector as Record<string, string> }),
        (error: unknown) => error instanceof kind && /nodeSelector/.test(String(error)),
        JSON.stringify(selector),
      );
    }
  });

  it("claims send only what is given", () => {
    assert.deepEqual(claimBody(), {});
    assert.deepEqual(claimBody({ env: {}, secretNames: [], fileSystems: [] }), {});
    assert.deepEqual(
      claimBody({
        name: "job-1",
        env: { A: "1" },
        secretNames: ["K"],
        network: { denyOut: ["1.1.1.1"] },
        fileSystems: [{ fileSystemId: "data", mountPath: "/data", readOnly: true }],
      }),
      {
        name: "job-1",
        env: { A: "1" },
        secret_names: ["K"],
        network: { deny_out: ["1.1.1.1"] },
        file_systems: [{ file_system_id: "data", mount_path: "/data", read_only: true }],
      },
    );
    assert.throws(() => claimBody({ name: "" }), TypeError);
    assert.throws(() => claimBody({ env: { A: 1 } as never }), TypeError);
    assert.throws(() => claimBody({ secretNames: "K" as never }), TypeError);
  });
});

describe("SandboxClient pools against a fake server", () => {
  let fake: Fake;
  let handler: (req: Recorded) => Answer | Promise<Answer>;
  let restoreSleeps: () => void;
  let client: SandboxClient;

  before(async () => {
    restoreSleeps = instantSleeps();
    fake = await startFake((req) => handler(req));
    client = new SandboxClient({ apiUrl: fake.url });
  });
  after(async () => {
    restoreSleeps();
    await fake.close();
  });
  afterEach(() => {
    fake.requests.length = 0;
  });

  it("creates a pool and reads it back with its containers", async () => {
    handler = (req) =>
      req.method === "POST"
        ? { json: { pool_id: "pool-1", namespace: "default" } }
        : { json: poolJson({ containers: [idle("sbx-a"), idle("sbx-b", "Running")] }) };
    const pool = await client.createPool({ warmContainers: 2, memoryMb: 2048 });
    assert.equal(fake.requests[0]!.path, POOLS);
    assert.deepEqual(bodyOf(fake.requests[0]!), {
      resources: { cpus: 1, memory_mb: 2048 },
      timeout_secs: 0,
      warm_containers: 2,
    });
    assert.equal(fake.requests[1]!.method, "GET");
    assert.equal(fake.requests[1]!.path, POOL);
    assert.equal(pool.poolId, "pool-1");
    assert.equal(pool.maxContainers, null);
    assert.equal(pool.warmContainers, 2);
    assert.equal(pool.resources.memoryMb, 1024);
    assert.equal(pool.createdAt?.getUTCFullYear(), 2026);
    assert.deepEqual(
      pool.containers?.map((c) => [c.sandboxId, c.state, c.executorId]),
      [["sbx-a", "Idle", "local"], ["sbx-b", "Running", "local"]],
    );
  });

  it("lists, updates (a whole PUT, network kept when absent) and deletes pools", async () => {
    handler = (req) => {
      if (req.method === "GET") return { json: { pools: [poolJson(), poolJson({ id: "pool-2", max_containers: 3 })] } };
      if (req.method === "PUT") return { json: poolJson({ resources: { cpus: 1, memory_mb: 2048, disk_mb: 10240 } }) };
      return { status: 204 };
    };
    const pools = await client.listPools();
    assert.deepEqual(pools.map((p) => [p.poolId, p.maxContainers, p.containers]), [["pool-1", null, null], ["pool-2", 3, null]]);
    const updated = await client.updatePool("pool-1", { memoryMb: 2048 });
    assert.equal(updated.resources.memoryMb, 2048);
    assert.deepEqual(bodyOf(fake.requests[1]!), { resources: { cpus: 1, memory_mb: 2048 }, timeout_secs: 0 });
    await client.updatePool("pool-1", { network: {} });
    assert.deepEqual((bodyOf(fake.requests[2]!) as Record<string, unknown>).network, {});
    await client.deletePool("pool-1");
    assert.equal(fake.requests[3]!.method, "DELETE");
    assert.equal(fake.requests[3]!.path, POOL);
  });

  it("sends the node selector from createPool and updatePool (left out when absent), and reads it back", async () => {
    handler = (req) => {
      if (req.method === "POST") return { json: { pool_id: "pool-1", namespace: "default" } };
      if (req.method === "PUT") return { json: poolJson({ node_selector: { zone: "b" } }) };
      return { json: poolJson({ containers: [], node_selector: { gpu: "a100" } }) };
    };
    assert.deepEqual((await client.createPool({ nodeSelector: { gpu: "a100" } })).nodeSelector, { gpu: "a100" });
    await client.createPool();
    assert.deepEqual((await client.updatePool("pool-1", { nodeSelector: { zone: "b" } })).nodeSelector, { zone: "b" });
    await client.updatePool("pool-1", { memoryMb: 2048 });
    const sent = (method: string) =>
      fake.requests.filter((req) => req.method === method).map((req) => (bodyOf(req) as Record<string, unknown>).node_selector);
    assert.deepEqual(sent("POST"), [{ gpu: "a100" }, undefined]);
    assert.deepEqual(sent("PUT"), [{ zone: "b" }, undefined]);
    const count = fake.requests.length;
    await assert.rejects(client.createPool({ nodeSelector: { zone: 1 } as unknown as Record<string, string> }), TypeError);
    const seventeen = Object.fromEntries(Array.from({ length: 17 }, (_, i) => [`k${i}`, "v"]));
    await assert.rejects(client.updatePool("pool-1", { nodeSelector: seventeen }), RangeError);
    assert.equal(fake.requests.length, count, "nothing is sent");
  });

  it("reads a pool's node_selector as nodeSelector, {} when absent or null", async () => {
    assert.deepEqual(sandboxPoolInfoFromWire(poolJson({ node_selector: { zone: "b", gpu: "a100" } })).nodeSelector, {
      zone: "b",
      gpu: "a100",
    });
    assert.deepEqual(sandboxPoolInfoFromWire(poolJson()).nodeSelector, {});
    assert.deepEqual(sandboxPoolInfoFromWire(poolJson({ node_selector: null })).nodeSelector, {});
    assert.deepEqual(sandboxPoolInfoFromWire(poolJson({ node_selector: { zone: "b", bad: 1 } })).nodeSelector, { zone: "b" });
    handler = () => ({ json: { pools: [poolJson({ node_selector: { zone: "b" } }), poolJson({ id: "pool-2" }), poolJson({ id: "pool-3", node_selector: null })] } });
    assert.deepEqual((await client.listPools()).map((p) => p.nodeSelector), [{ zone: "b" }, {}, {}]);
  });

  it("maps a 404 on pool calls to PoolNotFoundError, and one naming an image to ImageNotFoundError", async () => {
    handler = (req) =>
      req.method === "POST" && req.path === POOLS
        ? error(404, "NOT_FOUND", 'image "nope" not found')
        : error(404, "NOT_FOUND", 'pool "pool-1" not found');
    for (const call of [
      () => client.getPool("pool-1"),
      () => client.updatePool("pool-1"),
      () => client.deletePool("pool-1"),
      () => client.claim("pool-1"),
    ]) {
      await assert.rejects(call(), (e: unknown) => {
        assert.ok(e instanceof PoolNotFoundError && !(e instanceof SandboxNotFoundError));
        assert.equal(e.statusCode, 404);
        return true;
      });
    }
    await assert.rejects(client.createPool({ image: "nope" }), ImageNotFoundError);
    assert.equal(fake.requests.filter((r) => r.path === CLAIM).length, 1, "a claim is never sent twice");
  });

  it("maps POOL_IN_USE, POOL_AT_CAPACITY and NAME_TAKEN", async () => {
    handler = (req) => {
      if (req.method === "DELETE") return error(409, "POOL_IN_USE", "claimed sandboxes still run: sbx1");
      const body = bodyOf(req) as Record<string, unknown>;
      return body.name ? error(409, "NAME_TAKEN", "name job is taken") : error(429, "POOL_AT_CAPACITY", "at capacity");
    };
    await assert.rejects(client.deletePool("pool-1"), (e: unknown) => e instanceof PoolInUseError && e.statusCode === 409);
    await assert.rejects(client.claim("pool-1"), (e: unknown) => e instanceof PoolAtCapacityError && e.code === "POOL_AT_CAPACITY");
    await assert.rejects(client.claim("pool-1", { name: "job" }), SandboxNameConflictError);
    assert.equal(fake.requests.filter((r) => r.method === "POST").length, 2, "429 is not retried on a POST");
    for (const cls of [PoolNotFoundError, PoolInUseError, PoolAtCapacityError]) assert.ok(cls.prototype instanceof RemoteAPIError);
  });

  it("claims with the binding and the create headers, then reads the sandbox back", async () => {
    handler = (req) =>
      req.method === "POST"
        ? { json: { sandbox_id: "sbx1", status: "running", sandbox_url: fake.url, claim_configuration_applied: true } }
        : { json: sandboxJson({ name: "job-1", pool_id: "pool-1", sandbox_url: fake.url }) };
    const info = await client.claim("pool-1", { name: "job-1", env: { GREETING: "hi" }, secretNames: ["K"] });
    const post = fake.requests[0]!;
    assert.equal(post.path, CLAIM);
    assert.deepEqual(bodyOf(post), { name: "job-1", env: { GREETING: "hi" }, secret_names: ["K"] });
    assert.equal(post.headers["x-tensorlake-request-timeout-ms"], "300000");
    assert.equal(fake.requests[1]!.path, SBX);
    assert.equal(info.poolId, "pool-1");
    assert.equal(info.name, "job-1");
  });

  it("throws SandboxFailedError when a claim had to start a sandbox that failed", async () => {
    handler = () => ({ json: { sandbox_id: "sbx1", status: "failed", termination_reason: "startup_failed", error_details: "boom" } });
    await assert.rejects(client.claim("pool-1"), /sbx1 failed \(startup_failed\): boom/);
    await assert.rejects(client.claim("pool-1"), SandboxFailedError);
  });

  it("claimAndConnect returns a handle that deletes the sandbox when disposed", async () => {
    handler = (req) => {
      if (req.method === "POST") return { json: { sandbox_id: "sbx1", status: "running", sandbox_url: fake.url } };
      if (req.method === "DELETE") return { json: {} };
      return { json: sandboxJson({ pool_id: "pool-1", sandbox_url: fake.url }) };
    };
    {
      await using sandbox = await client.claimAndConnect("pool-1", { env: { A: "1" } });
      assert.ok(sandbox instanceof Sandbox);
      assert.equal(sandbox.sandboxId, "sbx1");
    }
    assert.deepEqual(
      fake.requests.map((r) => [r.method, r.path]),
      [["POST", CLAIM], ["GET", SBX], ["DELETE", SBX]],
    );
  });

  it("checks pool ids and encodes them as one path segment", async () => {
    handler = () => ({ json: poolJson({ containers: [] }) });
    await client.getPool("a/b");
    assert.equal(fake.requests[0]!.url, `${POOLS}/a%2Fb`);
    await assert.rejects(client.getPool(""), TypeError);
  });
});
