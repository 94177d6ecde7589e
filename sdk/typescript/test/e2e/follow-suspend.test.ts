/** `followOutput` open while its sandbox is suspended and resumed, against a real `alcove serve`: every line once, in order. */

import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";

import type { SandboxClient } from "../../src/index.js";
import { AlcoveServer, shutdown } from "./harness.js";

const TIMEOUT = { timeout: 120_000 };
const LINES = 30;
// Numbered lines, slowly: the follow is still open when the sandbox is suspended.
const PRINTER = `for i in $(seq 1 ${LINES}); do echo line$i; sleep 0.2; done`;
const WANT = Array.from({ length: LINES }, (_, i) => `line${i + 1}`);

describe("follow streams across a suspend and resume", { timeout: 300_000 }, () => {
  let server: AlcoveServer;
  let client: SandboxClient;

  before(async () => {
    server = await AlcoveServer.start();
    client = server.client();
  });

  after(() => shutdown(server));

  it("hands out every line once, in order, for followOutput and followOutputBatches", TIMEOUT, async () => {
    await using sandbox = await client.createAndConnect({ name: "ts-follow-sr" });
    const proc = await sandbox.startProcess("sh", ["-c", PRINTER], { stdinMode: "closed" });
    const lines: string[] = [];
    const batched: string[] = [];
    // Each follower settles with its error (or null): none is left to reject unhandled.
    const settle = (follow: () => Promise<void>): Promise<unknown> => follow().then(() => null, (error: unknown) => error);
    const following = settle(async () => {
      for await (const event of sandbox.followOutput(proc.pid)) lines.push(event.line);
    });
    const followingBatches = settle(async () => {
      for await (const batch of sandbox.followOutputBatches(proc.pid)) batched.push(...batch.lines);
    });
    const deadline = Date.now() + 30_000;
    while (lines.length < 3) {
      assert.ok(Date.now() < deadline, "no output");
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    assert.equal((await client.suspend("ts-follow-sr")).status, "suspended");
    assert.ok(lines.length < LINES, "the process ended before the suspend: nothing was tested");
    await client.resume("ts-follow-sr");
    assert.deepEqual(await Promise.all([following, followingBatches]), [null, null]);
    assert.deepEqual(lines, WANT);
    assert.deepEqual(batched, WANT);
    assert.equal((await sandbox.getProcess(proc.pid)).status, "exited");
  });

  it("tells a follower how many lines the 16 MiB buffer let go before it came", TIMEOUT, async () => {
    const flood = 1_500_000;
    await using sandbox = await client.createAndConnect();
    const proc = await sandbox.startProcess("seq", ["1", String(flood)], { stdinMode: "closed" });
    const deadline = Date.now() + 60_000;
    while ((await sandbox.getProcess(proc.pid)).status === "running") {
      assert.ok(Date.now() < deadline, "seq did not finish");
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    let dropped = 0;
    let toldFirst: number | undefined;
    let received = 0;
    let first: string | undefined;
    let last: string | undefined;
    for await (const batch of sandbox.followOutputBatches(proc.pid)) {
      toldFirst ??= batch.dropped;
      dropped += batch.dropped;
      received += batch.lines.length;
      first ??= batch.lines[0];
      last = batch.lines.at(-1);
    }
    assert.ok(dropped > 0, "the oldest lines are gone");
    assert.equal(toldFirst, dropped, "the first batch carries the count");
    assert.equal(dropped + received, flood, "each line received or counted");
    assert.equal(Number(first), dropped + 1);
    assert.equal(Number(last), flood);
    // The per-line follow has no place for it among its events: a process warning says it.
    const warnings: Error[] = [];
    const onWarning = (warning: Error): void => {
      warnings.push(warning);
    };
    process.on("warning", onWarning);
    try {
      let lines = 0;
      for await (const _event of sandbox.followOutput(proc.pid)) lines += 1;
      assert.equal(lines, received);
      await new Promise((resolve) => setImmediate(resolve)); // warnings are emitted on the next tick
    } finally {
      process.off("warning", onWarning);
    }
    const ours = warnings.filter((w) => (w as Error & { code?: string }).code === "ALCOVE_OUTPUT_DROPPED");
    assert.equal(ours.length, 1, String(warnings));
    assert.match(ours[0].message, new RegExp(`${dropped} lines`));
  });
});
