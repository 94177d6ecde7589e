/**
 * Images through the TypeScript SDK against a real `alcove serve`: an image described with the
 * `Image` DSL on the built-in `alcove/debian` base and built with `buildImage` (followed with
 * `onProgress`), sandboxes of it, `listImages` / `getImage` (`usedBy`), `deleteImage` refused
 * while a sandbox uses the image, then allowed, and `buildImageFromDockerfile` of a directory
 * with a `.dockerignore`. No registry is needed.
 *
 * The images directory is shared by every test server: each image is named
 * `e2e-ts-<random>/...` and deleted at the end of its test.
 */

import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";

import {
  Image,
  ImageBuildError,
  ImageInUseError,
  ImageNotFoundError,
  type BuildStepEvent,
  type ImageProgressEvent,
  type SandboxClient,
} from "../../src/index.js";
import { AlcoveServer, shutdown } from "./harness.js";

const TIMEOUT = { timeout: 240_000 };
const BASE = "alcove/debian";

describe("images through the SDK against a real server", { timeout: 600_000 }, () => {
  let server: AlcoveServer;
  let client: SandboxClient;
  let scratch: string;
  const token = randomBytes(4).toString("hex");
  /** Every image name a test made: deleted after the suite if a test left one behind. */
  const made: string[] = [];

  function imageName(label: string): string {
    const name = `e2e-ts-${token}/${label}-${randomBytes(3).toString("hex")}:1`;
    made.push(name);
    return name;
  }

  async function deleteIfThere(ref: string): Promise<void> {
    await client.deleteImage(ref).catch((error: unknown) => {
      if (!(error instanceof ImageNotFoundError)) throw error;
    });
  }

  before(async () => {
    server = await AlcoveServer.start();
    client = server.client({ timeoutSecs: 300 });
    scratch = await mkdtemp(join(tmpdir(), "alcove-ts-images-"));
  });

  after(async () => {
    try {
      if (client) for (const name of made) await deleteIfThere(name).catch(() => undefined);
    } finally {
      await rm(scratch, { recursive: true, force: true }).catch(() => undefined);
      await shutdown(server);
    }
  });

  it("builds an Image with the DSL, runs a sandbox of it, refuses to delete it while in use", TIMEOUT, async () => {
    const name = imageName("dsl");
    const image = new Image(name, { base: BASE })
      .run("echo hi > /hi.txt")
      .env({ A: "b" })
      .workdir("/srv");
    const total = image.dockerfile().trim().split("\n").length;
    assert.equal(total, 4);
    const events: ImageProgressEvent[] = [];
    const info = await client.buildImage(image, {
      noCache: true,
      allowInternet: false,
      onProgress: (event) => {
        events.push(event);
      },
    });
    try {
      const steps = events.filter((event): event is BuildStepEvent => event.event === "step");
      assert.deepEqual(steps.map((step) => step.number), [1, 2, 3, 4]);
      assert.ok(steps.every((step) => step.total === total), JSON.stringify(steps));
      assert.equal(steps[0]!.instruction, `FROM ${BASE}`);
      assert.equal(steps[1]!.instruction, "RUN echo hi > /hi.txt");
      assert.ok(steps.slice(1).every((step) => !step.cached), JSON.stringify(steps));
      const last = events[events.length - 1]!;
      assert.equal(last.event, "done");
      assert.equal(last.event === "done" && last.image.id, info.id);
      assert.equal(info.source, "build");
      assert.ok(info.names.includes(name), info.names.join(","));
      assert.ok(info.config.env.includes("A=b"), info.config.env.join(","));
      assert.equal(info.config.workingDir, "/srv");
      // The base's layers, then the build's own.
      const base = await client.getImage(BASE);
      assert.deepEqual(info.layers.slice(0, base.layers.length).map((l) => l.diffId), base.layers.map((l) => l.diffId));
      assert.ok(info.layers.length > base.layers.length);

      const listed = (await client.listImages()).find((i) => i.id === info.id);
      assert.ok(listed && listed.names.includes(name), "the built image is listed");
      const got = await client.getImage(name);
      assert.equal(got.id, info.id);
      assert.deepEqual(got.usedBy?.sandboxes, []);

      const sandbox = await client.createAndConnect({ image: name });
      try {
        assert.equal((await sandbox.readFile("/hi.txt")).toString(), "hi\n");
        assert.ok((await sandbox.run("env")).stdout.split("\n").includes("A=b"));
        assert.equal((await sandbox.run("pwd")).stdout, "/srv");
        const used = await client.getImage(name);
        assert.ok(used.usedBy?.sandboxes.includes(sandbox.sandboxId), JSON.stringify(used.usedBy));
        await assert.rejects(client.deleteImage(name), (error: unknown) => {
          assert.ok(error instanceof ImageInUseError, String(error));
          assert.equal(error.code, "IMAGE_IN_USE");
          assert.equal(error.statusCode, 409);
          return true;
        });
        assert.equal((await client.getImage(name)).id, info.id);
      } finally {
        await sandbox.terminate();
      }
      assert.deepEqual((await client.getImage(name)).usedBy?.sandboxes, []);
      const deleted = await client.deleteImage(name);
      assert.deepEqual(deleted.untagged, [name]);
      assert.deepEqual(deleted.deleted, [info.id]);
      await assert.rejects(client.getImage(name), ImageNotFoundError);
      assert.ok(!(await client.listImages()).some((i) => i.id === info.id));
      await assert.rejects(client.deleteImage(name), ImageNotFoundError);
    } finally {
      await deleteIfThere(name);
    }
  });

  it("builds from a Dockerfile directory, leaving out what .dockerignore lists", TIMEOUT, async () => {
    const dir = join(scratch, "ctx");
    await mkdir(join(dir, "sub"), { recursive: true });
    await mkdir(join(dir, "logs"));
    await writeFile(join(dir, "Dockerfile"), `FROM ${BASE}\nARG WHO=nobody\nCOPY . /ctx\nRUN echo "hi $WHO" > /who.txt\nWORKDIR /ctx\n`);
    await writeFile(join(dir, ".dockerignore"), "secret.env\nlogs\n*.tmp\n!keep.tmp\n");
    await writeFile(join(dir, "kept.txt"), "kept\n");
    await writeFile(join(dir, "sub", "nested.txt"), "nested\n");
    await writeFile(join(dir, "secret.env"), "TOKEN=must-not-be-sent\n");
    await writeFile(join(dir, "logs", "build.log"), "noise\n");
    await writeFile(join(dir, "scratch.tmp"), "scratch\n");
    await writeFile(join(dir, "keep.tmp"), "re-included\n");
    const name = imageName("dockerfile");
    const steps: number[] = [];
    const info = await client.buildImageFromDockerfile(dir, name, {
      buildArgs: { WHO: "ts" },
      noCache: true,
      allowInternet: false,
      onProgress: async (event) => {
        if (event.event === "step") steps.push(event.number);
      },
    });
    try {
      assert.deepEqual(steps, [1, 2, 3, 4, 5]);
      assert.ok(info.names.includes(name));
      assert.equal(info.config.workingDir, "/ctx");
      const sandbox = await client.createAndConnect({ image: name });
      try {
        const listing = new Set((await sandbox.run("ls", ["-A", "/ctx"])).stdout.split(/\s+/));
        for (const kept of ["Dockerfile", "kept.txt", "sub", "keep.tmp"]) assert.ok(listing.has(kept), `${kept} in ${[...listing]}`);
        for (const left of ["secret.env", "logs", "scratch.tmp"]) assert.ok(!listing.has(left), `${left} in ${[...listing]}`);
        assert.equal((await sandbox.readFile("/ctx/sub/nested.txt")).toString(), "nested\n");
        assert.equal((await sandbox.readFile("/who.txt")).toString(), "hi ts\n");
        assert.equal((await sandbox.run("pwd")).stdout, "/ctx");
      } finally {
        await sandbox.terminate();
      }
      await client.deleteImage(name);
      await assert.rejects(client.getImage(name), ImageNotFoundError);
    } finally {
      await deleteIfThere(name);
    }
  });

  it("throws ImageBuildError with the exit code when a RUN step fails", TIMEOUT, async () => {
    const name = imageName("fails");
    const image = new Image(name, { base: BASE }).run("echo boom-ts-1234 && exit 9");
    const events: ImageProgressEvent[] = [];
    await assert.rejects(
      client.buildImage(image, { noCache: true, allowInternet: false, onProgress: (event) => void events.push(event) }),
      (error: unknown) => {
        assert.ok(error instanceof ImageBuildError, String(error));
        assert.equal(error.code, "BUILD_FAILED");
        assert.match(error.serverMessage, /exit code 9\b/);
        assert.match(error.serverMessage, /boom-ts-1234/);
        return true;
      },
    );
    assert.equal(events[events.length - 1]?.event, "error");
    await assert.rejects(client.buildImage(image, { noCache: true, allowInternet: false }), ImageBuildError);
    await assert.rejects(client.getImage(name), ImageNotFoundError);
  });
});
