/**
 * Warm pools and claims against a real `alcove serve`: a pool fills, a claim hands out a running
 * sandbox with its environment bound, and the pool is deleted (with a check that it is refused
 * while the claimed sandbox lives). Idle pool sandboxes are invisible to `list()`, so the suite
 * deletes its pool in `finally` whatever happens.
 */

import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";

import { PoolInUseError, PoolNotFoundError, SandboxClient } from "../../src/index.js";
import { AlcoveServer, eventually, shutdown } from "./harness.js";

describe("warm pools against a real server", { timeout: 150_000 }, () => {
  let server: AlcoveServer;
  let client: SandboxClient;

  before(async () => {
    server = await AlcoveServer.start();
    client = server.client();
  });

  after(() => shutdown(server));

  it("creates a pool, claims a sandbox with env, runs in it and deletes both", { timeout: 120_000 }, async () => {
    const pool = await client.createPool({ warmContainers: 1, cpus: 0.5, memoryMb: 512 });
    try {
      assert.equal(pool.warmContainers, 1);
      assert.equal(pool.resources.memoryMb, 512);
      const idle = await eventually(
        "an idle sandbox in the pool",
        async () => (await client.getPool(pool.poolId)).containers?.find((c) => c.state === "Idle"),
        90_000,
      );
      assert.ok(!(await client.list()).some((s) => s.sandboxId === idle.sandboxId), "idle sandboxes are not listed");

      {
        await using sandbox = await client.claimAndConnect(pool.poolId, { env: { GREETING: "hello from a pool" } });
        assert.equal(sandbox.sandboxId, idle.sandboxId);
        assert.equal((await sandbox.run("sh", ["-c", "echo $GREETING"])).stdout, "hello from a pool");
        assert.equal((await client.get(sandbox.sandboxId)).poolId, pool.poolId);
        await assert.rejects(client.deletePool(pool.poolId), PoolInUseError);
      }
      await client.deletePool(pool.poolId);
      await assert.rejects(client.getPool(pool.poolId), PoolNotFoundError);
    } finally {
      for (const info of await client.list()) {
        if (info.poolId === pool.poolId) await client.delete(info.sandboxId).catch(() => undefined);
      }
      await client.deletePool(pool.poolId).catch((error: unknown) => {
        if (!(error instanceof PoolNotFoundError)) throw error;
      });
    }
  });
});
