#!/usr/bin/env node
/**
 * One output-streaming sample through Alcove's TypeScript SDK, for bench/handle_bench.py (which
 * starts the server and the sandbox, passes the program, and compares with the other clients).
 *
 *   node bench/handle_bench_ts.mjs --api-url URL --sandbox ID --mode run|follow \
 *        --program JSON --gate PATH [--sdk sdk/typescript/dist/index.js]
 *
 * (`--mode follow-batches`: the same as `follow` through `followOutputBatches`, lines counted.)
 *
 * `--program` is the JSON list of `python3` arguments. `run` times `sandbox.run("python3", args)`;
 * `follow` starts the program (which prints `ready`, then waits for the file `--gate`), follows its
 * output, creates the gate on seeing `ready` and times from there to the end of the stream, like
 * the Python follower. Prints one JSON object: `{"seconds": s, "lines": lines received}`.
 */

import { parseArgs } from "node:util";
import { fileURLToPath, pathToFileURL } from "node:url";

const { values: args } = parseArgs({
  options: {
    "api-url": { type: "string" },
    sandbox: { type: "string" },
    mode: { type: "string" },
    program: { type: "string" },
    gate: { type: "string", default: "/tmp/go" },
    sdk: { type: "string", default: fileURLToPath(new URL("../sdk/typescript/dist/index.js", import.meta.url)) },
  },
});

const { SandboxClient } = await import(pathToFileURL(args.sdk).href);
const client = new SandboxClient({ apiUrl: args["api-url"] });
const sandbox = await client.connect(args.sandbox);
const program = JSON.parse(args.program);

async function viaRun() {
  const start = performance.now();
  const result = await sandbox.run("python3", program);
  const seconds = (performance.now() - start) / 1000;
  return { seconds, lines: result.stdout.split("\n").length };
}

async function viaFollow() {
  const proc = await sandbox.startProcess("python3", program);
  let start = null;
  let lines = 0;
  for await (const event of sandbox.followOutput(proc.pid)) {
    if (start === null) {
      if (event.line !== "ready") throw new Error(`expected "ready" first, got ${JSON.stringify(event)}`);
      await sandbox.writeFile(args.gate, "");
      start = performance.now();
    } else {
      lines += 1;
    }
  }
  const seconds = (performance.now() - start) / 1000;
  await sandbox.deleteFile(args.gate);
  await sandbox.killProcess(proc.pid); // removes it (it has exited): frees its output buffer
  return { seconds, lines };
}

async function viaFollowBatches() {
  const proc = await sandbox.startProcess("python3", program);
  let start = null;
  let lines = 0;
  for await (const batch of sandbox.followOutputBatches(proc.pid)) {
    if (start === null) {
      if (batch.lines[0] !== "ready") throw new Error(`expected "ready" first, got ${JSON.stringify(batch)}`);
      await sandbox.writeFile(args.gate, "");
      start = performance.now();
      lines += batch.lines.length - 1;
    } else {
      lines += batch.lines.length;
    }
  }
  const seconds = (performance.now() - start) / 1000;
  await sandbox.deleteFile(args.gate);
  await sandbox.killProcess(proc.pid);
  return { seconds, lines };
}

const modes = { run: viaRun, follow: viaFollow, "follow-batches": viaFollowBatches };
const sample = await modes[args.mode]();
console.log(JSON.stringify(sample));
// fetch keeps idle connections open for a while; the sample is taken, so do not wait for them.
process.exit(0);
