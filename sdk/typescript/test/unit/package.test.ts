/**
 * The built package as a user imports it: `import … from "alcove"` resolves through the
 * `exports` map to dist/ (ESM + .d.ts), and exposes what the sources export. The README's
 * examples are compiled here against the published declarations (never run).
 */

import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { writeFile } from "node:fs/promises";
import { describe, it } from "node:test";

import * as alcove from "alcove";
import {
  Image,
  ImageBuildError,
  ImageInUseError,
  KEY_NAMES,
  PoolAtCapacityError,
  PoolInUseError,
  SandboxClient,
  type Desktop,
  type NodeInfo,
  type NodeResources,
  type NodeState,
  type Sandbox,
} from "alcove";

import * as source from "../../src/index.js";

describe("the built package", () => {
  it("resolves `alcove` to dist/ and exports what the sources export", () => {
    assert.deepEqual(Object.keys(alcove).sort(), Object.keys(source).sort());
    assert.notEqual(alcove.SandboxClient, source.SandboxClient, "expected the built copy, not the sources");
    const pkg = JSON.parse(readFileSync(new URL("../../../package.json", import.meta.url), "utf8")) as {
      type: string;
      exports: Record<string, { types: string; import: string }>;
      dependencies: Record<string, string>;
    };
    assert.equal(pkg.type, "module");
    assert.deepEqual(pkg.exports["."], { types: "./dist/index.d.ts", import: "./dist/index.js" });
    assert.deepEqual(Object.keys(pkg.dependencies), ["ws"]);
  });
});

// -- README examples: type-checked by the test build, never called -------------------------------

export async function readmeExample(): Promise<void> {
  const client = new SandboxClient();
  {
    await using sandbox = await client.createAndConnect({ cpus: 1.0, memoryMb: 1024 });
    const result = await sandbox.run("python", ["-c", "print('hello')"], { timeoutSecs: 30 });
    console.log(result.stdout, result.exitCode);
    await sandbox.writeFile("/workspace/data.csv", "name,score\nAlice,95\n");
    console.log((await sandbox.readFile("/workspace/data.csv")).toString());
    for (const entry of await sandbox.listDirectory("/workspace")) console.log(entry.name, entry.isDir, entry.size);
    const proc = await sandbox.startProcess("bash", ["-c", "for i in 1 2 3; do echo $i; sleep 1; done"]);
    for await (const event of sandbox.followOutput(proc.pid)) console.log(event.line);
  }
  const info = await client.create({ name: "my-env" });
  await client.suspend("my-env");
  await client.resume("my-env");
  const snapshot = await client.snapshotAndWait("my-env");
  await client.delete(info.sandboxId);
  await using restored = await client.createAndConnect({ snapshotId: snapshot.snapshotId });
  void restored;
}

export async function readmeResize(client: SandboxClient, sandbox: Sandbox): Promise<void> {
  await sandbox.update({ cpus: 2, memoryMb: 2048 });
  const pending = await client.update("my-env", { diskMb: 20480, wait: false });
  await client.waitForResourceResize("my-env", pending.resourceResize!.generation, { timeoutSecs: 60 });
}

export async function readmePty(sandbox: Sandbox): Promise<void> {
  const pty = await sandbox.createPty({ command: "bash", cols: 120, rows: 40, env: { PS1: "$ " } });
  await pty.connect();
  await pty.readUntil("$ ", 10_000);
  await pty.send("ls /workspace\n");
  console.log((await pty.readUntil("$ ", 10_000)).toString());
  await pty.resize(100, 30);
  await pty.send("exit 3\n");
  console.log(await pty.wait(10_000));
  await pty.close();
  const again = await sandbox.connectPty(pty.sessionId, pty.token);
  await again.kill();
}

export async function readmeTunnel(sandbox: Sandbox): Promise<void> {
  await sandbox.startProcess("python", ["-m", "http.server", "8080"]);
  const tunnel = await sandbox.createTunnel(8080);
  const res = await fetch(`http://${tunnel.localHost}:${tunnel.localPort}/`);
  console.log(res.status, tunnel.localAddress.port);
  await tunnel.close();
}

export async function readmeStdin(sandbox: Sandbox): Promise<void> {
  const proc = await sandbox.startProcess("python", ["-c", "import sys; print(sys.stdin.read())"]);
  await sandbox.writeStdin(proc.pid, "hello from stdin\n");
  await sandbox.closeStdin(proc.pid);
  await sandbox.startProcess("cat", { stdinMode: "closed" });
}

export async function readmeCutLines(sandbox: Sandbox, proc: { pid: number }): Promise<void> {
  let head = ""; // the pieces of a cut line so far
  for await (const { line, continued } of sandbox.followStdout(proc.pid)) {
    if (continued) {
      head += line;
    } else {
      console.log(head + line);
      head = "";
    }
  }
  const output = await sandbox.getOutput(proc.pid);
  const pieces: readonly number[] = output.continued;
  for await (const batch of sandbox.followOutputBatches(proc.pid)) console.log(batch.continued ?? [], pieces);
}

export async function readmeDesktop(client: SandboxClient): Promise<void> {
  await using sandbox = await client.createAndConnect({ image: "desktop" });
  await using desktop = await sandbox.connectDesktop({ password: "tensorlake" });
  const png = await desktop.screenshot();
  await writeFile("screen.png", png);
  await desktop.click(640, 400);
  await desktop.typeText("hello, wörld\n");
  await desktop.press(["ctrl", "s"]);
  await desktop.scrollDown(3, 640, 400);
  const other: Desktop = await sandbox.connectDesktop({ port: 5901, shared: true, connectTimeoutSecs: 10 });
  console.log(other.width, other.height, KEY_NAMES.length, (await other.screenshot({ timeoutSecs: 5 })).length);
  await other.doubleClick(1, 2, "left", 50);
  await other.mousePress("left", 10, 10);
  await other.moveMouse(20, 20);
  await other.mouseRelease();
  await other.close();
}

export async function readmePools(): Promise<void> {
  const client = new SandboxClient();
  const pool = await client.createPool({
    image: "alcove/debian",
    cpus: 1.0,
    memoryMb: 1024,
    timeoutSecs: 600,
    warmContainers: 2,
    maxContainers: 10,
    network: { allowInternetAccess: false, allowOut: ["10.0.0.5"] },
  });
  console.log((await client.getPool(pool.poolId)).containers);
  {
    await using sandbox = await client.claimAndConnect(pool.poolId, {
      name: "job-42",
      env: { JOB: "42" },
      secretNames: ["OPENAI_API_KEY"],
    });
    console.log((await sandbox.run("sh", ["-c", "echo $JOB"])).stdout);
  }
  try {
    await client.claim(pool.poolId);
  } catch (error) {
    if (!(error instanceof PoolAtCapacityError)) throw error;
  }
  await client.updatePool(pool.poolId, { memoryMb: 2048, warmContainers: 2, maxContainers: 10 });
  await client.listPools();
  const gpuPool = await client.createPool({ nodeSelector: { gpu: "a100" } });
  const selector: Record<string, string> = gpuPool.nodeSelector;
  await client.updatePool(gpuPool.poolId, { nodeSelector: selector });
  try {
    await client.deletePool(pool.poolId);
  } catch (error) {
    if (!(error instanceof PoolInUseError)) throw error;
  }
}

export async function readmeImages(): Promise<void> {
  const client = new SandboxClient();
  for (const info of await client.listImages()) console.log(info.id, info.names, info.source, info.sizeBytes);
  const debian = await client.getImage("alcove/debian");
  console.log(debian.usedBy?.sandboxes);
  await client.pullImage("localhost:5000/tools/busybox:1.36", { name: "busybox:stable" });
  await client.pullImage("ghcr.io/acme/app:2", { authSecret: "GHCR_AUTH", onProgress: (event) => console.log(event.event) });
  await client.importImage("busybox.tar", "busybox:1.36");
  await client.buildImageFromDockerfile("./app", "app:1", { buildArgs: { VERSION: "1.2" } });
  const image = new Image("tools/jq:1", { base: "alcove/debian" })
    .run("apt-get update && apt-get install -y jq")
    .copy("scripts/", "/opt/scripts")
    .env({ LANG: "C.UTF-8" })
    .workdir("/opt/scripts")
    .cmd(["bash"]);
  console.log(image.dockerfile());
  try {
    await client.buildImage(image, { noCache: true, onProgress: (e) => console.log(e.event === "output" ? e.line : e.event) });
  } catch (error) {
    if (error instanceof ImageBuildError) console.log(error.serverMessage);
    else throw error;
  }
  const snapshot = await client.snapshotAndWait("my-env", { snapshotType: "filesystem" });
  await client.saveSnapshotAsImage(snapshot.snapshotId, "my-env:saved");
  await using sandbox = await client.createAndConnect({ image: "localhost:5000/tools/busybox:1.36", pullImage: true });
  void sandbox;
  try {
    await client.deleteImage("tools/jq:1");
  } catch (error) {
    if (!(error instanceof ImageInUseError)) throw error;
  }
}

export async function readmeNodes(): Promise<void> {
  const client = new SandboxClient();
  for (const node of await client.listNodes()) {
    console.log(node.name, node.state, node.address, node.labels, node.used.cpus, node.capacity.cpus, node.leaseExpiresAt);
  }
  const drained: NodeInfo = await client.drainNode("node-a");
  const state: NodeState = drained.state;
  const used: NodeResources = drained.used;
  console.log(state, used.memoryMb, drained.runningSandboxes, drained.startedAt);
  await client.activateNode("node-a");
  const info = await client.create({ nodeSelector: { gpu: "a100" } });
  console.log(info.nodeSelector);
}
