/**
 * Nodes against a fake server: server-level routes (not under a namespace), decoding, error
 * mapping, name checks, and the 503s a draining node or an unreachable store answer.
 */

import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { after, afterEach, before, beforeEach, describe, it } from "node:test";

import { resolveConfig } from "../../src/config.js";
import { clock, GET_ATTEMPTS, MAX_RETRY_AFTER_MS, nodesUrl, retryAfterMs } from "../../src/http.js";
import { nodeInfoFromWire } from "../../src/models.js";
import {
  RemoteAPIError,
  SandboxClient,
  SandboxError,
  SandboxNotFoundError,
  type NodeInfo,
  type NodeResources,
  type NodeState,
} from "../../src/index.js";
import { startFake, type Answer, type Fake, type Recorded } from "./fake.js";

const NODES = "/nodes";
const NODE = `${NODES}/node-a`;
const DRAIN = `${NODE}/drain`;
const ACTIVATE = `${NODE}/activate`;
const SANDBOXES = "/v1/namespaces/team-a/sandboxes"; // the client below is in namespace team-a

function nodeJson(fields: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    name: "node-a",
    address: "http://10.0.0.5:8900",
    state: "active",
    labels: { zone: "eu-1", disk: "ssd" },
    subnet: "10.200.0.0/16",
    capacity: { cpus: 16.0, memory_mb: 65536 },
    used: { cpus: 2.5, memory_mb: 4096 },
    running_sandboxes: 3,
    suspended_sandboxes: 1,
    version: "0.1.0",
    started_at: 1795711162444,
    lease_expires_at: 1795711177444,
    ...fields,
  };
}

const error = (status: number, code: string, message: string, headers: Record<string, string> = {}): Answer => ({
  status,
  headers,
  json: { message, code },
});

describe("node URLs and names", () => {
  it("are server routes, outside any namespace", () => {
    const config = resolveConfig({ apiUrl: "http://localhost:8900/prefix/", namespace: "team-a" }, {});
    assert.equal(nodesUrl(config), "http://localhost:8900/prefix/nodes");
    assert.equal(nodesUrl(config, "a/b", "/drain"), "http://localhost:8900/prefix/nodes/a%2Fb/drain");
  });

  it("match the routes of docs/protocol/openapi.json", () => {
    const doc = JSON.parse(readFileSync(new URL("../../../../../docs/protocol/openapi.json", import.meta.url), "utf8")) as {
      paths: Record<string, Record<string, unknown>>;
    };
    assert.ok(doc.paths["/nodes"]?.get);
    assert.ok(doc.paths["/nodes/{node}/drain"]?.post);
    assert.ok(doc.paths["/nodes/{node}/activate"]?.post);
  });

  it("reads every field of a node", () => {
    const node: NodeInfo = nodeInfoFromWire(nodeJson());
    const state: NodeState = node.state;
    const capacity: NodeResources = node.capacity;
    assert.equal(state, "active");
    assert.deepEqual(capacity, { cpus: 16, memoryMb: 65536 });
    assert.deepEqual(node.used, { cpus: 2.5, memoryMb: 4096 });
    assert.deepEqual(node.labels, { zone: "eu-1", disk: "ssd" });
    assert.equal(node.address, "http://10.0.0.5:8900");
    assert.equal(node.subnet, "10.200.0.0/16");
    assert.equal(node.version, "0.1.0");
    assert.equal(node.runningSandboxes, 3);
    assert.equal(node.suspendedSandboxes, 1);
    assert.equal(node.startedAt?.getTime(), 1795711162444);
    assert.equal(node.leaseExpiresAt?.getTime(), 1795711177444);
    // Older servers do not send `lost_at`; a lost node says when.
    assert.equal(node.lostAt, null);
    assert.equal(nodeInfoFromWire(nodeJson({ lost_at: 1795711180000 })).lostAt?.getTime(), 1795711180000);
    // A state a newer server may add is kept as a string; a label that is not a string is dropped.
    assert.equal(nodeInfoFromWire(nodeJson({ state: "retiring" })).state, "retiring");
    assert.deepEqual(nodeInfoFromWire(nodeJson({ labels: { a: "1", b: 2 } })).labels, { a: "1" });
    assert.throws(() => nodeInfoFromWire({ name: "node-a" }), SandboxError);
    assert.throws(() => nodeInfoFromWire(nodeJson({ capacity: undefined })), SandboxError);
    assert.throws(() => nodeInfoFromWire(nodeJson({ running_sandboxes: "3" })), /running_sandboxes/);
  });

  it("reads Retry-After in whole seconds, within a cap", () => {
    const of = (value?: string) => retryAfterMs({ headers: new Headers(value === undefined ? {} : { "Retry-After": value }) });
    assert.equal(of("2"), 2000);
    assert.equal(of(" 1 "), 1000);
    assert.equal(of("60"), MAX_RETRY_AFTER_MS);
    assert.equal(of("soon"), 0);
    assert.equal(of("Wed, 21 Oct 2015 07:28:00 GMT"), 0);
    assert.equal(of(), 0);
  });
});

describe("SandboxClient nodes against a fake server", () => {
  let fake: Fake;
  let handler: (req: Recorded) => Answer | Promise<Answer>;
  let sleeps: number[] = [];
  let restoreSleep: typeof clock.sleep;
  let client: SandboxClient;

  before(async () => {
    restoreSleep = clock.sleep;
    clock.sleep = async (ms: number) => {
      sleeps.push(ms);
    };
    fake = await startFake((req) => handler(req));
    client = new SandboxClient({ apiUrl: fake.url, namespace: "team-a" });
  });
  after(async () => {
    clock.sleep = restoreSleep;
    await fake.close();
  });
  beforeEach(() => {
    sleeps = [];
  });
  afterEach(() => {
    fake.requests.length = 0;
  });

  it("lists nodes from GET /nodes, whatever the client's namespace", async () => {
    handler = () => ({ json: { nodes: [nodeJson(), nodeJson({ name: "node-b", state: "draining", labels: {} })] } });
    const nodes = await client.listNodes();
    assert.deepEqual(fake.requests.map((r) => [r.method, r.url]), [["GET", NODES]]);
    assert.deepEqual(nodes.map((n) => [n.name, n.state]), [["node-a", "active"], ["node-b", "draining"]]);
    assert.equal(nodes[0]!.capacity.memoryMb, 65536);
    assert.deepEqual(nodes[1]!.labels, {});
    handler = () => ({ json: { nodes: [] } });
    assert.deepEqual(await client.listNodes(), []);
  });

  it("drains and activates with a POST to the node", async () => {
    handler = (req) => ({ json: nodeJson({ state: req.path.endsWith("/drain") ? "draining" : "active" }) });
    const drained = await client.drainNode("node-a");
    const activated = await client.activateNode("node-a");
    assert.deepEqual(fake.requests.map((r) => [r.method, r.path]), [["POST", DRAIN], ["POST", ACTIVATE]]);
    assert.equal(fake.requests[0]!.body.length, 0);
    assert.equal(drained.state, "draining");
    assert.equal(activated.state, "active");
    assert.equal(activated.name, "node-a");
  });

  it("encodes a node name as one path segment", async () => {
    handler = () => ({ json: nodeJson({ name: "a/b" }) });
    await client.drainNode("a/b");
    assert.equal(fake.requests[0]!.url, `${NODES}/a%2Fb/drain`);
  });

  it("refuses bad names before anything is sent", async () => {
    handler = () => ({ json: nodeJson() });
    for (const bad of ["", "   ", ".", "..", undefined, 7]) {
      await assert.rejects(client.drainNode(bad as never), TypeError);
      await assert.rejects(client.activateNode(bad as never), TypeError);
    }
    assert.equal(fake.requests.length, 0);
  });

  it("maps an unknown node to RemoteAPIError 404", async () => {
    handler = () => error(404, "NOT_FOUND", "node node-a not found");
    for (const call of [() => client.drainNode("node-a"), () => client.activateNode("node-a")]) {
      await assert.rejects(call(), (e: unknown) => {
        assert.ok(e instanceof RemoteAPIError && !(e instanceof SandboxNotFoundError));
        assert.equal(e.statusCode, 404);
        assert.equal(e.code, "NOT_FOUND");
        assert.equal(e.serverMessage, "node node-a not found");
        return true;
      });
    }
    assert.equal(fake.requests.length, 2);
  });

  it("surfaces NODE_DRAINING on create and resume, sent once", async () => {
    handler = () => error(503, "NODE_DRAINING", "node node-a is draining");
    const draining = (e: unknown): boolean => e instanceof RemoteAPIError && e.statusCode === 503 && e.code === "NODE_DRAINING";
    await assert.rejects(client.create({ name: "job" }), draining);
    await assert.rejects(client.resume("sbx1"), draining);
    assert.deepEqual(fake.requests.map((r) => [r.method, r.path]), [
      ["POST", SANDBOXES],
      ["POST", `${SANDBOXES}/sbx1/resume`],
    ]);
    assert.deepEqual(sleeps, []);
  });

  it("retries a GET on STORE_UNAVAILABLE after Retry-After, and surfaces it after the last attempt", async () => {
    let calls = 0;
    handler = () =>
      calls++ === 0
        ? error(503, "STORE_UNAVAILABLE", "the database cannot be reached", { "Retry-After": "2" })
        : { json: { nodes: [nodeJson()] } };
    assert.equal((await client.listNodes()).length, 1);
    assert.deepEqual(sleeps, [2000]);
    fake.requests.length = 0;
    sleeps = [];
    handler = () => error(503, "STORE_UNAVAILABLE", "the database cannot be reached", { "Retry-After": "2" });
    await assert.rejects(client.listNodes(), (e: unknown) => e instanceof RemoteAPIError && e.code === "STORE_UNAVAILABLE");
    assert.equal(fake.requests.length, GET_ATTEMPTS);
    assert.deepEqual(sleeps, [2000, 2000]);
  });

  it("keeps the short back-off without Retry-After, and never retries a POST on STORE_UNAVAILABLE", async () => {
    let calls = 0;
    handler = () => (calls++ === 0 ? error(503, "SERVER_BUSY", "busy") : { json: { nodes: [] } });
    await client.listNodes();
    assert.deepEqual(sleeps, [200]);
    fake.requests.length = 0;
    sleeps = [];
    handler = () => error(503, "STORE_UNAVAILABLE", "the database cannot be reached", { "Retry-After": "2" });
    await assert.rejects(client.drainNode("node-a"), (e: unknown) => e instanceof RemoteAPIError && e.statusCode === 503);
    assert.equal(fake.requests.length, 1);
    assert.deepEqual(sleeps, []);
  });
});
