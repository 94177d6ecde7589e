/** Persistent volumes against a real `alcove serve`: create, attach live, data across sandboxes, detach, delete. */

import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";

import { RemoteAPIError, SandboxClient, SandboxNameConflictError } from "../../src/index.js";
import { AlcoveServer, shutdown } from "./harness.js";

const TIMEOUT = { timeout: 90_000 };

describe("volumes against a real server", { timeout: 170_000 }, () => {
  let server: AlcoveServer;
  let client: SandboxClient;

  before(async () => {
    server = await AlcoveServer.start();
    client = server.client();
  });

  after(() => shutdown(server));

  it("keeps data across sandboxes, mounts live and read-only, and refuses a second writer", TIMEOUT, async () => {
    const volume = await client.createFileSystem("ts-vol", 32);
    assert.equal(volume.sizeMb, 32);
    assert.ok((await client.listFileSystems()).some((v) => v.name === "ts-vol"));
    const a = await client.createAndConnect({ fileSystems: [{ fileSystemId: "ts-vol", mountPath: "/data" }] });
    try {
      assert.deepEqual((await a.info()).fileSystems, [{ fileSystemId: "ts-vol", mountPath: "/data", readOnly: false }]);
      await a.writeFile("/data/hello", new TextEncoder().encode("from ts"));
      const b = await client.createAndConnect({});
      try {
        await assert.rejects(b.attachFileSystem({ fileSystemId: "ts-vol", mountPath: "/data" }), (e: unknown) => {
          return e instanceof RemoteAPIError && e.statusCode === 409;
        });
        // A create asking for it is refused for the volume, not as a taken name.
        await assert.rejects(client.create({ fileSystems: [{ fileSystemId: "ts-vol", mountPath: "/data" }] }), (e: unknown) => {
          return e instanceof RemoteAPIError && !(e instanceof SandboxNameConflictError) && e.code === "FILE_SYSTEM_IN_USE";
        });
        await a.detachFileSystem("/data");
        const info = await b.attachFileSystem({ fileSystemId: "ts-vol", mountPath: "/mnt/ro", readOnly: true });
        assert.deepEqual(info.fileSystems, [{ fileSystemId: "ts-vol", mountPath: "/mnt/ro", readOnly: true }]);
        assert.equal(new TextDecoder().decode(await b.readFile("/mnt/ro/hello")), "from ts");
        const denied = await b.run("sh", ["-c", "touch /mnt/ro/x 2>&1; echo rc=$?"]);
        assert.match(denied.stdout, /Read-only file system/);
        await assert.rejects(client.deleteFileSystem("ts-vol"), (e: unknown) => e instanceof RemoteAPIError && e.statusCode === 409);
        await b.detachFileSystem("/mnt/ro");
      } finally {
        await b.terminate();
      }
    } finally {
      await a.terminate();
    }
    await client.deleteFileSystem("ts-vol");
    await assert.rejects(client.getFileSystem("ts-vol"), (e: unknown) => e instanceof RemoteAPIError && e.statusCode === 404);
  });

  it("mounts a volume given at a claim, in the SDK's own spelling", TIMEOUT, async () => {
    await client.createFileSystem("ts-claim-vol", 16);
    const pool = await client.createPool({ warmContainers: 1, maxContainers: 1, cpus: 0.5, memoryMb: 512 });
    try {
      const info = await client.claim(pool.poolId, {
        fileSystems: [{ fileSystemId: "ts-claim-vol", mountPath: "/data", readOnly: true }],
      });
      try {
        assert.deepEqual(info.fileSystems, [{ fileSystemId: "ts-claim-vol", mountPath: "/data", readOnly: true }]);
        const sandbox = await client.connect(info.sandboxId);
        const denied = await sandbox.run("sh", ["-c", "touch /data/x 2>&1; echo rc=$?"]);
        assert.match(denied.stdout, /Read-only file system/);
      } finally {
        await client.delete(info.sandboxId);
      }
    } finally {
      await client.deletePool(pool.poolId);
      await client.deleteFileSystem("ts-claim-vol");
    }
  });
});
