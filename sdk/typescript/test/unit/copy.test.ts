import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";

import { RemoteAPIError, SandboxClient, SandboxCopyError } from "../../src/index.js";
import { sandboxJson, startFake, type Answer, type Fake, type Recorded } from "./fake.js";

const BASE = "/v1/namespaces/default/sandboxes";

describe("copy", () => {
  let fake: Fake;
  let client: SandboxClient;
  let copyAnswer: Answer = {};

  before(async () => {
    fake = await startFake((req: Recorded): Answer => {
      if (req.method === "POST" && req.path === `${BASE}/sbx1/copy`) return copyAnswer;
      const got = /^\/v1\/namespaces\/default\/sandboxes\/([^/]+)$/.exec(req.path);
      if (req.method === "GET" && got) return { json: sandboxJson({ id: got[1], sandbox_url: fake.url }) };
      if (req.method === "DELETE" && got) return { json: sandboxJson({ id: got[1], status: "terminated" }) };
      return { status: 404, json: { code: "NOT_FOUND", message: "no route" } };
    });
    client = new SandboxClient({ apiUrl: fake.url });
  });
  after(async () => {
    await fake.close();
  });

  const answer = (status: number, ...copies: [string, string, string?][]): Answer => ({
    status,
    json: {
      source_sandbox_id: "sbx1",
      sandboxes: copies.map(([id, st, reason]) => ({ sandbox_id: id, status: st, ...(reason ? { reason } : {}) })),
    },
  });

  it("sends times in the query with an empty body, once", async () => {
    copyAnswer = answer(200, ["c1", "running"], ["c2", "running"]);
    fake.requests.length = 0;
    const result = await client.copy("sbx1", { times: 2 });
    assert.equal(result.sourceSandboxId, "sbx1");
    assert.deepEqual(
      result.sandboxes.map((c) => c.sandboxId),
      ["c1", "c2"],
    );
    const posts = fake.requests.filter((r) => r.method === "POST");
    assert.equal(posts.length, 1);
    assert.equal(posts[0]!.query.get("times"), "2");
    assert.equal(posts[0]!.body.length, 0);
  });

  it("reads a 422 as a partial answer", async () => {
    copyAnswer = answer(422, ["c1", "running"], ["c2", "failed", "restore failed"]);
    const result = await client.copy("sbx1", { times: 2 });
    assert.equal(result.sandboxes[1]!.status, "failed");
    assert.equal(result.sandboxes[1]!.reason, "restore failed");
  });

  it("refuses times out of range before sending", async () => {
    fake.requests.length = 0;
    for (const times of [0, -1, 17, 1.5]) {
      await assert.rejects(client.copy("sbx1", { times }), TypeError);
    }
    assert.equal(fake.requests.length, 0);
  });

  it("maps a 409 to RemoteAPIError", async () => {
    copyAnswer = { status: 409, json: { code: "INVALID_STATE", message: "cannot copy sandbox sbx1: it is suspended" } };
    await assert.rejects(client.copy("sbx1"), (e: unknown) => e instanceof RemoteAPIError && e.statusCode === 409);
  });

  it("gives handles of the copies, all or nothing", async () => {
    copyAnswer = answer(200, ["c1", "running"], ["c2", "running"]);
    const sandbox = await client.connect("sbx1");
    const copies = await sandbox.copy({ times: 2 });
    assert.deepEqual(
      copies.map((c) => c.sandboxId),
      ["c1", "c2"],
    );
    copyAnswer = answer(422, ["c1", "running"], ["c2", "failed", "no room"]);
    fake.requests.length = 0;
    await assert.rejects(sandbox.copy({ times: 2 }), (e: unknown) => e instanceof SandboxCopyError && /no room/.test(e.message));
    const deletes = fake.requests.filter((r) => r.method === "DELETE").map((r) => r.path);
    assert.deepEqual(deletes, [`${BASE}/c1`], "the copy that ran is deleted");
  });
});
