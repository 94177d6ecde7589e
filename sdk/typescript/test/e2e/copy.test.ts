/** Copy of a running sandbox against a real `alcove serve`: handles, state carried, independence, refusals. */

import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";

import { RemoteAPIError, SandboxClient } from "../../src/index.js";
import { AlcoveServer, shutdown } from "./harness.js";

const TIMEOUT = { timeout: 120_000 };

describe("copy against a real server", { timeout: 200_000 }, () => {
  let server: AlcoveServer;
  let client: SandboxClient;

  before(async () => {
    server = await AlcoveServer.start();
    client = server.client();
  });

  after(() => shutdown(server));

  it("copies a running sandbox with its process and files; copies are independent", TIMEOUT, async () => {
    await using source = await client.createAndConnect({ name: "ts-copy-source" });
    await source.writeFile("/root/state.txt", "before");
    const sleeper = await source.startProcess("sleep", ["600"]);
    const copies = await source.copy({ times: 2 });
    try {
      assert.equal(copies.length, 2);
      const ids = new Set([source.sandboxId, ...copies.map((c) => c.sandboxId)]);
      assert.equal(ids.size, 3);
      for (const copy of copies) {
        assert.equal((await copy.readFile("/root/state.txt")).toString(), "before");
        const procs = await copy.listProcesses();
        assert.ok(
          procs.some((p) => p.pid === sleeper.pid && p.status === "running"),
          JSON.stringify(procs),
        );
        assert.equal((await client.get(copy.sandboxId)).name, null);
      }
      await copies[0]!.writeFile("/root/state.txt", "changed in a copy");
      assert.equal((await copies[1]!.readFile("/root/state.txt")).toString(), "before");
      assert.equal((await source.readFile("/root/state.txt")).toString(), "before");
    } finally {
      for (const copy of copies) await copy.terminate();
    }
  });

  it("answers partial results through copy() and refuses a suspended source", TIMEOUT, async () => {
    await using source = await client.createAndConnect({ name: "ts-copy-refused" });
    const result = await client.copy("ts-copy-refused", { times: 1 });
    assert.equal(result.sourceSandboxId, source.sandboxId);
    assert.equal(result.sandboxes.length, 1);
    assert.equal(result.sandboxes[0]!.status, "running");
    await client.delete(result.sandboxes[0]!.sandboxId);
    await client.suspend("ts-copy-refused");
    await assert.rejects(client.copy("ts-copy-refused"), (e: unknown) => e instanceof RemoteAPIError && e.statusCode === 409);
    await client.resume("ts-copy-refused");
  });
});
