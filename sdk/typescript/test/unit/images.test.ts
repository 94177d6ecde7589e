/**
 * Images: the Image DSL and its Dockerfile, build contexts (tar contents, .dockerignore, links),
 * and the image calls against a fake server (requests, answers, progress streams, errors,
 * secrets kept out of sight).
 */

import assert from "node:assert/strict";
import { existsSync, readFileSync, promises as fs } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { after, afterEach, before, beforeEach, describe, it } from "node:test";

import { buildQuery, createBody, pullBody } from "../../src/client.js";
import { contextFile, DockerIgnore, writeDirectoryContext } from "../../src/context.js";
import { imagesUrl } from "../../src/http.js";
import { deleteImageResultFromWire, imageInfoFromWire, imageProgressEventFromWire } from "../../src/models.js";
import {
  AuthenticationError,
  Image,
  ImageBuildError,
  ImageInUseError,
  ImageNotFoundError,
  RegistryAuthenticationError,
  RegistryError,
  RemoteAPIError,
  SandboxClient,
  SandboxConnectionError,
  SnapshotNotFoundError,
  type ImageProgressEvent,
} from "../../src/index.js";
import { resolveConfig } from "../../src/config.js";
import { instantSleeps, startFake, type Answer, type Fake, type Recorded } from "./fake.js";

const B = "/v1/namespaces/default";
const IMAGES = `${B}/images`;
const PASSWORD = "s3cr3t-registry-token";

function imageJson(extra: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    id: `sha256:${"ab".repeat(32)}`,
    names: ["localhost:5000/tools/busybox:1.36"],
    manifest_digest: `sha256:${"cd".repeat(32)}`,
    source: "pull",
    created_at: "2026-12-02T07:15:50Z",
    size_bytes: 4_500_000,
    layers: [{ diff_id: `sha256:${"01".repeat(32)}`, digest: `sha256:${"02".repeat(32)}`, size_bytes: 2, unpacked_size_bytes: 3 }],
    config: { env: ["PATH=/bin"], working_dir: "/srv", entrypoint: [], cmd: ["sh"], exposed_ports: [8080] },
    ...extra,
  };
}

/** An event stream as the server writes it, cut into small chunks. */
function eventStream(...events: Record<string, unknown>[]): Answer {
  const text = events.map((event) => `event: ${String(event.event)}\ndata: ${JSON.stringify(event)}\n\n`).join("");
  const chunks: string[] = [];
  for (let at = 0; at < text.length; at += 40) chunks.push(text.slice(at, at + 40));
  return { headers: { "content-type": "text/event-stream" }, chunks };
}

interface TarEntry {
  type: string;
  size: number;
  linkname: string;
  mode: number;
  data: Buffer;
}

/** A small tar reader (ustar + PAX path/linkpath), enough to check the archives the SDK writes. */
function readTar(archive: Buffer): Map<string, TarEntry> {
  const entries = new Map<string, TarEntry>();
  let pax: Record<string, string> = {};
  for (let at = 0; at + 512 <= archive.length; ) {
    const head = archive.subarray(at, at + 512);
    if (head.every((byte) => byte === 0)) break;
    const field = (offset: number, width: number): string => head.subarray(offset, offset + width).toString("utf8").replace(/\0.*$/s, "");
    const size = parseInt(field(124, 12), 8);
    const type = field(156, 1);
    const data = archive.subarray(at + 512, at + 512 + size);
    at += 512 + Math.ceil(size / 512) * 512;
    if (type === "x") {
      pax = {};
      for (const record of data.toString("utf8").split("\n").filter(Boolean)) {
        const [key, ...value] = record.slice(record.indexOf(" ") + 1).split("=");
        pax[key!] = value.join("=");
      }
      continue;
    }
    const name = (pax.path ?? field(0, 100)).replace(/\/$/, "");
    entries.set(name, { type, size, linkname: pax.linkpath ?? field(157, 100), mode: parseInt(field(100, 8), 8), data: Buffer.from(data) });
    pax = {};
  }
  return entries;
}

async function tarOf(write: Parameters<typeof contextFile>[0]): Promise<Map<string, TarEntry>> {
  const context = await contextFile(write);
  try {
    return readTar(await fs.readFile(context.path));
  } finally {
    await context.remove();
  }
}

let scratch: string;
beforeEach(async () => {
  scratch = await fs.mkdtemp(path.join(tmpdir(), "alcove-images-test-"));
});
afterEach(async () => {
  await fs.rm(scratch, { recursive: true, force: true });
});

// -- the Image DSL -------------------------------------------------------------------------------

describe("Image", () => {
  it("renders each step in order", () => {
    const image = new Image("tools/jq:1", { base: "alcove/debian" })
      .run("apt-get update && apt-get install -y jq")
      .copy("/tmp/app.py", "/srv/app.py")
      .env({ LANG: "C.UTF-8", PATH: "/opt/bin:$PATH" })
      .workdir("/srv")
      .user("app")
      .entrypoint(["/bin/sh", "-c"])
      .cmd(["python3", "app.py"])
      .expose(8080, 9000);
    assert.equal(
      image.dockerfile(),
      [
        "FROM alcove/debian",
        "RUN apt-get update && apt-get install -y jq",
        "COPY ctx/0/app.py /srv/app.py",
        'ENV LANG="C.UTF-8" PATH="/opt/bin:$PATH"',
        "WORKDIR /srv",
        "USER app",
        'ENTRYPOINT ["/bin/sh", "-c"]',
        'CMD ["python3", "app.py"]',
        "EXPOSE 8080 9000",
        "",
      ].join("\n"),
    );
    assert.equal(new Image("x:1").dockerfile(), "FROM alcove/debian\n");
  });

  it("is immutable: every step returns a new image", () => {
    const base = new Image("x:1").run("true");
    const a = base.run("echo a");
    assert.equal(base.dockerfile(), "FROM alcove/debian\nRUN true\n");
    assert.ok(a.dockerfile().endsWith("RUN echo a\n"));
    assert.equal(String(a), "Image(name=x:1, base=alcove/debian, steps=2)");
  });

  it("keeps the meaning of a command of several lines", () => {
    const script = 'set -e\napt-get update\necho "done" \\\n  now';
    const lines = new Image("x:1").run(script).run("echo one \\").dockerfile().trimEnd().split("\n");
    assert.equal(lines.length, 3);
    assert.deepEqual(JSON.parse(lines[1]!.slice(4)), ["/bin/sh", "-c", script]);
    assert.deepEqual(JSON.parse(lines[2]!.slice(4)), ["/bin/sh", "-c", "echo one \\"]);
  });

  it("JSON-quotes ENV values and checks names and values", () => {
    assert.equal(new Image("x:1").env({ MSG: 'say "hi" \\ é', EMPTY: "" }).dockerfile().split("\n")[1], 'ENV MSG="say \\"hi\\" \\\\ é" EMPTY=""');
    assert.throws(() => new Image("x:1").env({ "1BAD": "v" }), TypeError);
    assert.throws(() => new Image("x:1").env({ K: "a\nRUN evil" }), /one line/);
  });

  it("never lets two copy sources collide, and makes odd names safe", () => {
    const image = new Image("x:1").copy("/a/conf", "/etc/a/").copy("/b/conf", "/etc/b/").copy("/c/we*ird [name]", "/opt/dir with space");
    assert.deepEqual(image.contextFiles().map(([name]) => name), ["ctx/0/conf", "ctx/1/conf", "ctx/2/we_ird__name_"]);
    assert.deepEqual(image.dockerfile().trimEnd().split("\n").slice(1), [
      "COPY ctx/0/conf /etc/a/",
      "COPY ctx/1/conf /etc/b/",
      'COPY ["ctx/2/we_ird__name_", "/opt/dir with space"]',
    ]);
  });

  it("checks its arguments", () => {
    assert.throws(() => new Image(""), TypeError);
    assert.throws(() => new Image("x:1", { base: "a b" }), TypeError);
    assert.throws(() => new Image("x:1").run(" "), TypeError);
    assert.throws(() => new Image("x:1").workdir("/srv\nRUN evil"), /one line/);
    assert.throws(() => new Image("x:1").user("app\nRUN evil"), /one line/);
    assert.throws(() => new Image("x:1").cmd("echo" as unknown as string[]), TypeError);
    assert.throws(() => new Image("x:1").entrypoint([]), TypeError);
    assert.throws(() => new Image("x:1").expose(0), RangeError);
  });
});

// -- build contexts ------------------------------------------------------------------------------

describe("build contexts", () => {
  it("hold the Dockerfile and the copied sources, links kept as links", async () => {
    await fs.writeFile(path.join(scratch, "one.txt"), "one");
    await fs.mkdir(path.join(scratch, "tree", "sub"), { recursive: true });
    await fs.writeFile(path.join(scratch, "tree", "sub", "two.txt"), "two");
    await fs.symlink("/etc/passwd", path.join(scratch, "tree", "link"));
    await fs.symlink(path.join(scratch, "one.txt"), path.join(scratch, "via-link"));
    const image = new Image("x:1")
      .copy(path.join(scratch, "one.txt"), "/a")
      .copy(path.join(scratch, "tree"), "/b")
      .copy(path.join(scratch, "via-link"), "/c");
    const entries = await tarOf((tar) => image.writeContext(tar));
    assert.deepEqual([...entries.keys()].sort(), [
      "Dockerfile",
      "ctx",
      "ctx/0",
      "ctx/0/one.txt",
      "ctx/1",
      "ctx/1/tree",
      "ctx/1/tree/link",
      "ctx/1/tree/sub",
      "ctx/1/tree/sub/two.txt",
      "ctx/2",
      "ctx/2/via-link",
    ]);
    assert.equal(entries.get("Dockerfile")!.data.toString(), image.dockerfile());
    assert.equal(entries.get("ctx/1/tree/sub/two.txt")!.data.toString(), "two");
    assert.equal(entries.get("ctx/1/tree/link")!.type, "2");
    assert.equal(entries.get("ctx/1/tree/link")!.linkname, "/etc/passwd");
    assert.equal(entries.get("ctx/2/via-link")!.type, "0");
    assert.equal(entries.get("ctx/2/via-link")!.data.toString(), "one");
  });

  it("throws at build time for a missing copy source", async () => {
    const image = new Image("x:1").copy(path.join(scratch, "nope"), "/x");
    await assert.rejects(tarOf((tar) => image.writeContext(tar)), /nope/);
  });

  it("keeps long and non-ASCII names through PAX headers", async () => {
    const deep = path.join(scratch, "d".repeat(120), "é".repeat(60));
    await fs.mkdir(deep, { recursive: true });
    await fs.writeFile(path.join(deep, "f".repeat(150)), "x".repeat(1000));
    await fs.symlink("t".repeat(150), path.join(deep, "long-link"));
    const entries = await tarOf((tar) => new Image("x:1").copy(path.join(scratch, "d".repeat(120)), "/x").writeContext(tar));
    const dir = `ctx/0/${"d".repeat(120)}/${"é".repeat(60)}`;
    assert.equal(entries.get(`${dir}/${"f".repeat(150)}`)!.data.toString(), "x".repeat(1000));
    assert.equal(entries.get(`${dir}/long-link`)!.linkname, "t".repeat(150));
  });

  it("reads .dockerignore patterns", () => {
    const ignore = new DockerIgnore(["# comment", "", "*.log", "/build/", "**/secret*", "!keep.log", "docs/*/draft?.md"]);
    assert.ok(ignore.excluded("a.log") && !ignore.excluded("keep.log"));
    assert.ok(!ignore.excluded("sub/a.log"));
    assert.ok(ignore.excluded("build") && ignore.excluded("build/out/x.o"));
    assert.ok(ignore.excluded("secret.txt") && ignore.excluded("deep/er/secret.key"));
    assert.ok(ignore.excluded("docs/v1/draft1.md") && !ignore.excluded("docs/v1/v2/draft1.md"));
    assert.ok(!ignore.excluded("src/main.py"));
    assert.ok(new DockerIgnore([]).empty);
  });

  it("of a directory honour its .dockerignore and keep links as links", async () => {
    await writeTree(scratch);
    const entries = await tarOf((tar) => writeDirectoryContext(tar, scratch, "Dockerfile"));
    assert.deepEqual([...entries.keys()].sort(), [
      ".dockerignore",
      "Dockerfile",
      "build/out/keep.txt",
      "outside-link",
      "src",
      "src/main.py",
      "src/rel-link",
    ]);
    assert.equal(entries.get("outside-link")!.type, "2");
    assert.equal(entries.get("outside-link")!.linkname, "/etc");
    assert.equal(entries.get("src/rel-link")!.linkname, "../Dockerfile");
  });
});

async function writeTree(root: string): Promise<void> {
  await fs.mkdir(path.join(root, "src"), { recursive: true });
  await fs.writeFile(path.join(root, "src", "main.py"), "print('hi')\n");
  await fs.writeFile(path.join(root, "src", "debug.log"), "noise");
  await fs.mkdir(path.join(root, "build", "out"), { recursive: true });
  await fs.writeFile(path.join(root, "build", "out", "big.o"), Buffer.alloc(10));
  await fs.writeFile(path.join(root, "build", "out", "keep.txt"), "kept");
  await fs.writeFile(path.join(root, "Dockerfile"), "FROM alcove/debian\nCOPY src /srv\n");
  await fs.writeFile(path.join(root, ".dockerignore"), "**/*.log\nbuild\n!build/out/keep.txt\nDockerfile\n");
  await fs.symlink("/etc", path.join(root, "outside-link"));
  await fs.symlink("../Dockerfile", path.join(root, "src", "rel-link"));
}

// -- bodies and URLs -----------------------------------------------------------------------------

describe("image requests", () => {
  it("percent-encode references but for / : @ and refuse dot segments", () => {
    const config = resolveConfig({ apiUrl: "http://localhost:8900" });
    const ref = `reg:5000/a/b@sha256:${"0".repeat(64)}`;
    assert.ok(imagesUrl(config, ref).endsWith(`/images/${ref}`));
    assert.ok(imagesUrl(config, "a+b~c_d.e-f").endsWith("/images/a%2Bb~c_d.e-f"));
    assert.ok(imagesUrl(config, "name?x#y%!").endsWith("/images/name%3Fx%23y%25%21"));
    for (const bad of ["", "  ", "../sandboxes", "a/./b", "a/..", "a b"]) assert.throws(() => imagesUrl(config, bad), TypeError);
  });

  it("build the pull body and refuse half credentials, never echoing the password", () => {
    assert.deepEqual(pullBody("r/x:1", { name: "x:stable", username: "bob", password: PASSWORD }), {
      reference: "r/x:1",
      name: "x:stable",
      username: "bob",
      password: PASSWORD,
    });
    assert.deepEqual(pullBody("r/x:1", { authSecret: "REGISTRY" }), { reference: "r/x:1", auth_secret: "REGISTRY" });
    assert.throws(() => pullBody("r/x:1", { username: "bob" }), /together/);
    assert.throws(() => pullBody("r/x:1", { password: PASSWORD }), (error: Error) => !error.message.includes(PASSWORD));
    assert.throws(() => pullBody("r/x:1", { username: "bob", password: PASSWORD, authSecret: "R" }), /not both/);
    assert.throws(
      () => pullBody("r/x:1", { username: "bob", password: 42 as unknown as string }),
      (error: Error) => !error.message.includes("42"),
    );
  });

  it("build the build query", () => {
    assert.deepEqual(buildQuery("app:1"), [["name", "app:1"]]);
    assert.deepEqual(buildQuery("app:1", { dockerfile: "./docker//Dockerfile.dev", buildArgs: { V: "1=2", E: "" }, noCache: true, allowInternet: false }), [
      ["name", "app:1"],
      ["dockerfile", "docker/Dockerfile.dev"],
      ["build_arg", "V=1=2"],
      ["build_arg", "E="],
      ["no_cache", "true"],
      ["allow_internet", "false"],
    ]);
    assert.throws(() => buildQuery("app:1", { dockerfile: "../Dockerfile" }), TypeError);
    assert.throws(() => buildQuery("app:1", { buildArgs: { "A=B": "c" } }), TypeError);
  });

  it("send pull_image on create only when asked", () => {
    assert.equal(createBody({ image: "r/x:1", pullImage: true }).pull_image, true);
    assert.equal("pull_image" in createBody({ image: "r/x:1" }), false);
  });
});

// -- against a fake server -----------------------------------------------------------------------

const PULL_EVENTS = [
  {
    event: "resolved",
    manifest_digest: `sha256:${"cd".repeat(32)}`,
    layers: [{ digest: `sha256:${"02".repeat(32)}`, status: "waiting", current_bytes: 0, total_bytes: 100 }],
  },
  { event: "layer", digest: `sha256:${"02".repeat(32)}`, status: "downloading", current_bytes: 50, total_bytes: 100 },
  { event: "layer", digest: `sha256:${"02".repeat(32)}`, status: "done", current_bytes: 100, total_bytes: 100 },
  { event: "some_future_event", whatever: 1 },
  { event: "done", image: imageJson() },
];

const BUILD_EVENTS = [
  { event: "step", number: 1, total: 2, instruction: "FROM alcove/debian", cached: true },
  { event: "step", number: 2, total: 2, instruction: "RUN make", cached: false },
  { event: "output", stream: "stderr", line: "make: *** no rule" },
];

describe("SandboxClient images", () => {
  let fake: Fake;
  let client: SandboxClient;
  let restore: () => void;
  let routes: Map<string, Answer | ((req: Recorded) => Answer)>;

  before(async () => {
    restore = instantSleeps();
    routes = new Map();
    fake = await startFake((req) => {
      const answer = routes.get(`${req.method} ${req.path}`);
      if (answer === undefined) return { status: 404, json: { message: `no route ${req.method} ${req.path}`, code: "NO_ROUTE" } };
      return typeof answer === "function" ? answer(req) : answer;
    });
    client = new SandboxClient({ apiUrl: fake.url, apiKey: "k" });
  });
  after(async () => {
    restore();
    await fake.close();
  });
  beforeEach(() => {
    routes.clear();
    fake.requests.length = 0;
  });

  it("lists, gets and deletes images", async () => {
    const ref = "localhost:5000/tools/busybox:1.36";
    routes.set(`GET ${IMAGES}`, { json: { images: [imageJson(), imageJson({ source: "builtin", extra: 1 })] } });
    routes.set(`GET ${IMAGES}/${ref}`, { json: imageJson({ used_by: { sandboxes: ["sbx-1"], snapshots: [] } }) });
    routes.set(`DELETE ${IMAGES}/${ref}`, { json: { untagged: [ref], deleted: [`sha256:${"ab".repeat(32)}`], freed_bytes: 4096 } });
    const images = await client.listImages();
    assert.deepEqual(images.map((image) => image.source), ["pull", "builtin"]);
    assert.equal(images[0]!.usedBy, null);
    assert.equal(images[0]!.layers[0]!.unpackedSizeBytes, 3);
    assert.equal(images[0]!.createdAt?.toISOString(), "2026-12-02T07:15:50.000Z");
    assert.deepEqual(images[0]!.config.exposedPorts, [8080]);
    assert.deepEqual((await client.getImage(ref)).usedBy, { sandboxes: ["sbx-1"], snapshots: [] });
    assert.deepEqual(await client.deleteImage(ref), { untagged: [ref], deleted: [`sha256:${"ab".repeat(32)}`], freedBytes: 4096 });
    assert.equal(fake.requests[1]!.url, `${IMAGES}/${ref}`);
  });

  it("maps 404 and IMAGE_IN_USE", async () => {
    routes.set(`GET ${IMAGES}/nope:1`, { status: 404, json: { message: "no image nope:1", code: "NOT_FOUND" } });
    routes.set(`DELETE ${IMAGES}/busy:1`, { status: 409, json: { message: "used by sbx-1", code: "IMAGE_IN_USE" } });
    await assert.rejects(client.getImage("nope:1"), (error) => error instanceof ImageNotFoundError && error.code === "NOT_FOUND");
    await assert.rejects(
      client.deleteImage("busy:1"),
      (error) => error instanceof ImageInUseError && error.code === "IMAGE_IN_USE" && error.serverMessage === "used by sbx-1",
    );
  });

  it("pulls without progress", async () => {
    routes.set(`POST ${IMAGES}/pull`, { json: imageJson() });
    const info = await client.pullImage("localhost:5000/tools/busybox:1.36", { name: "busybox:stable" });
    assert.equal(info.manifestDigest, `sha256:${"cd".repeat(32)}`);
    const post = fake.requests[0]!;
    assert.deepEqual(JSON.parse(post.body.toString()), { reference: "localhost:5000/tools/busybox:1.36", name: "busybox:stable" });
    assert.notEqual(post.headers.accept, "text/event-stream");
    assert.equal(post.headers["content-type"], "application/json");
  });

  it("pulls with progress", async () => {
    routes.set(`POST ${IMAGES}/pull`, eventStream(...PULL_EVENTS));
    const seen: ImageProgressEvent[] = [];
    const info = await client.pullImage("r/x:1", {
      onProgress: async (event) => {
        seen.push(event);
      },
    });
    assert.equal(info.id, `sha256:${"ab".repeat(32)}`);
    assert.deepEqual(seen.map((event) => event.event), ["resolved", "layer", "layer", "done"]);
    const [resolved, downloading] = seen;
    assert.ok(resolved!.event === "resolved" && resolved!.layers[0]!.status === "waiting");
    assert.ok(downloading!.event === "layer" && downloading!.currentBytes === 50 && downloading!.totalBytes === 100);
    assert.equal(fake.requests[0]!.headers.accept, "text/event-stream");
  });

  for (const [code, status, Cls] of [
    ["REGISTRY_UNAUTHORIZED", 401, RegistryAuthenticationError],
    ["REGISTRY_ERROR", 502, RegistryError],
    ["NOT_FOUND", 404, ImageNotFoundError],
    ["INVALID_ARGUMENT", 400, RemoteAPIError],
  ] as const) {
    it(`throws the mapped error of an error event (${code})`, async () => {
      const error = { event: "error", code, message: "registry said no", status };
      routes.set(`POST ${IMAGES}/pull`, eventStream(PULL_EVENTS[0]!, error, PULL_EVENTS[4]!));
      const seen: string[] = [];
      await assert.rejects(client.pullImage("r/x:1", { onProgress: (event) => void seen.push(event.event) }), (thrown) => {
        assert.equal((thrown as object).constructor, Cls);
        assert.ok(!(thrown instanceof AuthenticationError));
        const remote = thrown as RemoteAPIError;
        return remote.code === code && remote.statusCode === status && remote.serverMessage === "registry said no";
      });
      assert.deepEqual(seen, ["resolved", "error"]);
    });
  }

  it("maps registry refusals of a blocking pull, and keeps Alcove's own 401 an AuthenticationError", async () => {
    routes.set(`POST ${IMAGES}/pull`, { status: 403, json: { message: "denied: wrong token", code: "REGISTRY_UNAUTHORIZED" } });
    await assert.rejects(client.pullImage("r/x:1", { username: "bob", password: PASSWORD }), (error) => {
      assert.ok(error instanceof RegistryAuthenticationError);
      assert.ok(!error.message.includes(PASSWORD) && !String(error.stack).includes(PASSWORD));
      return true;
    });
    routes.set(`POST ${IMAGES}/pull`, { status: 401, json: { message: "bad key", code: "UNAUTHORIZED" } });
    await assert.rejects(client.pullImage("r/x:1"), AuthenticationError);
  });

  it("fails a stream that ends without done", async () => {
    routes.set(`POST ${IMAGES}/pull`, eventStream(PULL_EVENTS[0]!));
    await assert.rejects(client.pullImage("r/x:1", { onProgress: () => undefined }), (error) => error instanceof SandboxConnectionError && /ended before/.test(error.message));
  });

  it("imports an archive, streamed", async () => {
    const archive = path.join(scratch, "busybox.tar");
    const data = Buffer.alloc(300_000, 7);
    await fs.writeFile(archive, data);
    routes.set(`POST ${IMAGES}/import`, { json: imageJson({ source: "import" }) });
    assert.equal((await client.importImage(archive, "busybox:1.36")).source, "import");
    const post = fake.requests[0]!;
    assert.equal(post.query.get("name"), "busybox:1.36");
    assert.equal(post.headers["content-type"], "application/x-tar");
    assert.equal(post.headers["transfer-encoding"], "chunked");
    assert.ok(post.body.equals(data));
    await client.importImage(archive);
    assert.equal(fake.requests[1]!.query.has("name"), false);
    await assert.rejects(client.importImage(path.join(scratch, "missing.tar")), /ENOENT/);
  });

  it("builds an Image", async () => {
    await fs.writeFile(path.join(scratch, "app.py"), "print(1)\n");
    const image = new Image("tools/app:1").copy(path.join(scratch, "app.py"), "/srv/app.py").cmd(["python3", "/srv/app.py"]);
    routes.set(`POST ${IMAGES}/build`, { json: imageJson({ source: "build", names: ["tools/app:1"] }) });
    const info = await client.buildImage(image, { buildArgs: { VERSION: "1.2" }, noCache: true, allowInternet: false });
    assert.deepEqual(info.names, ["tools/app:1"]);
    const post = fake.requests[0]!;
    assert.deepEqual([...post.query], [
      ["name", "tools/app:1"],
      ["build_arg", "VERSION=1.2"],
      ["no_cache", "true"],
      ["allow_internet", "false"],
    ]);
    assert.equal(post.headers["content-type"], "application/x-tar");
    const entries = readTar(post.body);
    assert.equal(entries.get("Dockerfile")!.data.toString(), image.dockerfile());
    assert.equal(entries.get("ctx/0/app.py")!.data.toString(), "print(1)\n");
    await client.buildImage(image);
    assert.deepEqual([...fake.requests[1]!.query], [["name", "tools/app:1"]]);
    await assert.rejects(client.buildImage("tools/app:1" as unknown as Image), TypeError);
  });

  it("builds from a Dockerfile directory", async () => {
    await writeTree(scratch);
    await fs.mkdir(path.join(scratch, "docker"));
    await fs.writeFile(path.join(scratch, "docker", "Dockerfile.dev"), "FROM alcove/debian\n");
    routes.set(`POST ${IMAGES}/build`, { json: imageJson({ source: "build" }) });
    await client.buildImageFromDockerfile(scratch, "app:dev", { dockerfile: "docker/Dockerfile.dev" });
    assert.deepEqual([...fake.requests[0]!.query], [
      ["name", "app:dev"],
      ["dockerfile", "docker/Dockerfile.dev"],
    ]);
    const entries = readTar(fake.requests[0]!.body);
    assert.ok(entries.has("docker/Dockerfile.dev") && !entries.has("src/debug.log") && !entries.has("build/out/big.o"));
    await client.buildImageFromDockerfile(scratch, "app:1");
    assert.ok(readTar(fake.requests[1]!.body).has("Dockerfile"));
    await assert.rejects(client.buildImageFromDockerfile(scratch, "app:1", { dockerfile: "Nope" }), /no Dockerfile/);
    await assert.rejects(client.buildImageFromDockerfile(scratch, "app:1", { dockerfile: "../Dockerfile" }), TypeError);
  });

  it("follows a build and throws ImageBuildError with message and code", async () => {
    routes.set(`POST ${IMAGES}/build`, eventStream(...BUILD_EVENTS, { event: "done", image: imageJson({ source: "build" }) }));
    const seen: ImageProgressEvent[] = [];
    assert.equal((await client.buildImage(new Image("x:1").run("make"), { onProgress: (event) => void seen.push(event) })).source, "build");
    assert.deepEqual(seen.map((event) => event.event), ["step", "step", "output", "done"]);
    const [step, , output] = seen;
    assert.ok(step!.event === "step" && step!.cached && step!.instruction === "FROM alcove/debian");
    assert.ok(output!.event === "output" && output!.stream === "stderr" && output!.line === "make: *** no rule");
    assert.equal(fake.requests[0]!.headers.accept, "text/event-stream");

    const message = "step 2 (RUN make) exited with 2: make: *** no rule";
    routes.set(`POST ${IMAGES}/build`, eventStream(...BUILD_EVENTS, { event: "error", code: "BUILD_FAILED", message, status: 422 }));
    const failed = (error: unknown): boolean =>
      error instanceof ImageBuildError && error.code === "BUILD_FAILED" && error.serverMessage === message && error.statusCode === 422 && error.message.includes(message);
    await assert.rejects(client.buildImage(new Image("x:1").run("make"), { onProgress: () => undefined }), failed);
    routes.set(`POST ${IMAGES}/build`, { status: 422, json: { message, code: "BUILD_FAILED" } });
    await assert.rejects(client.buildImage(new Image("x:1").run("make")), failed);
  });

  it("saves a snapshot as an image", async () => {
    routes.set(`POST ${B}/snapshots/snap-1/image`, { json: imageJson({ source: "snapshot", names: ["mine:1"] }) });
    routes.set(`POST ${B}/snapshots/gone/image`, { status: 404, json: { message: "no snapshot gone", code: "NOT_FOUND" } });
    assert.equal((await client.saveSnapshotAsImage("snap-1", "mine:1")).source, "snapshot");
    assert.deepEqual(JSON.parse(fake.requests[0]!.body.toString()), { name: "mine:1" });
    await assert.rejects(client.saveSnapshotAsImage("gone", "mine:1"), SnapshotNotFoundError);
    await assert.rejects(client.saveSnapshotAsImage("snap-1", ""), TypeError);
  });

  it("never shows the password in what it logs", async () => {
    const logged: string[] = [];
    const originals = { log: console.log, error: console.error, warn: console.warn, debug: console.debug, info: console.info };
    for (const name of Object.keys(originals) as (keyof typeof originals)[]) {
      console[name] = (...args: unknown[]) => void logged.push(args.map(String).join(" "));
    }
    try {
      routes.set(`POST ${IMAGES}/pull`, { status: 401, json: { message: "unauthorized", code: "REGISTRY_UNAUTHORIZED" } });
      await assert.rejects(client.pullImage("r/x:1", { username: "bob", password: PASSWORD }), RegistryAuthenticationError);
    } finally {
      Object.assign(console, originals);
    }
    assert.ok(!logged.join("\n").includes(PASSWORD));
  });
});

// -- the models against the server's wire types --------------------------------------------------

const WIRE_TYPES = new URL("../../../../../crates/wire/src/image.rs", import.meta.url);

function rustFields(source: string, pattern: RegExp): string[] {
  const match = pattern.exec(source);
  assert.ok(match, `${String(pattern)} not found in crates/wire/src/image.rs`);
  return [...match[1]!.matchAll(/^\s*(?:pub )?(\w+):/gm)].map((field) => field[1]!).sort();
}

function camelKeys(value: object): string[] {
  return Object.keys(value).sort();
}

function camel(name: string): string {
  return name.replace(/_([a-z])/g, (_, letter: string) => letter.toUpperCase());
}

describe("image models", { skip: !existsSync(WIRE_TYPES) && "the server's sources are not next to the SDK" }, () => {
  it("have the fields of the server's wire types", () => {
    const source = readFileSync(WIRE_TYPES, "utf8");
    const struct = (name: string) => new RegExp(`pub struct ${name} \\{([\\s\\S]*?)\\n\\}`);
    const variant = (name: string) => new RegExp(`\\n    ${name} \\{([\\s\\S]*?)\\n    \\},`);
    const info = imageInfoFromWire(imageJson({ used_by: { sandboxes: [], snapshots: [] } }));
    assert.deepEqual(camelKeys(info), rustFields(source, struct("ImageInfo")).map(camel).sort());
    assert.deepEqual(camelKeys(info.config), rustFields(source, struct("ImageRunConfig")).map(camel).sort());
    assert.deepEqual(camelKeys(info.layers[0]!), rustFields(source, struct("ImageLayerInfo")).map(camel).sort());
    assert.deepEqual(camelKeys(info.usedBy!), rustFields(source, struct("ImageUsers")).map(camel).sort());
    assert.deepEqual(camelKeys(deleteImageResultFromWire({})), rustFields(source, struct("DeleteImageResponse")).map(camel).sort());
    const events: Record<string, Record<string, unknown>> = {
      Resolved: PULL_EVENTS[0]!,
      Step: BUILD_EVENTS[0]!,
      Output: BUILD_EVENTS[2]!,
      Done: PULL_EVENTS[4]!,
      Error: { event: "error", code: "X", message: "m", status: 500 },
    };
    for (const [name, wire] of Object.entries(events)) {
      const event = imageProgressEventFromWire(wire)!;
      assert.deepEqual(camelKeys(event), [...rustFields(source, variant(name)).map(camel), "event"].sort(), name);
    }
    assert.ok(source.includes("Layer(LayerProgress)"));
    assert.deepEqual(camelKeys(imageProgressEventFromWire(PULL_EVENTS[1]!)!), [...rustFields(source, struct("LayerProgress")).map(camel), "event"].sort());
    assert.deepEqual(
      Object.keys(pullBody("r/x:1", { name: "n:1", username: "u", password: "p" })).concat("auth_secret").sort(),
      rustFields(source, struct("PullImageRequest")),
    );
  });
});
