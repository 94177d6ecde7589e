/**
 * Typed models of the objects the Alcove server sends (docs/protocol/control-plane.md and
 * sandbox-api.md).
 *
 * Fields are camelCase here and snake_case on the wire; the `…FromWire` functions convert and
 * check the required fields (a missing one throws {@link SandboxError}). Statuses are string
 * literal unions spelled exactly as on the wire; a status the SDK does not know yet is kept as
 * a plain string. Timestamps arrive as epoch seconds, milliseconds, microseconds or nanoseconds,
 * or as ISO-8601 strings (UTC when they name no zone); all become `Date` objects (`null` when absent).
 */

import { SandboxError } from "./errors.js";

// ---------------------------------------------------------------------------------------------
// Statuses and modes (spelled as on the wire)

/** An open string union: the known values, plus any string a newer server may send. */
type Open<T extends string> = T | (string & {});

/** Sandbox lifecycle status (docs/protocol/control-plane.md, Sandbox status). */
export type SandboxStatus = Open<
  "pending" | "running" | "snapshotting" | "suspending" | "suspended" | "terminated" | "timeout" | "failed"
>;
/** Snapshot status (docs/protocol/control-plane.md, Snapshots). */
export type SnapshotStatus = Open<"in_progress" | "local_ready" | "completed" | "failed" | "deleting" | "replicating">;
/** Where a live resize stands (`resource_resize.status`). */
export type ResizeStatus = Open<"pending" | "succeeded" | "failed">;
/** What a snapshot captures. */
export type SnapshotType = "memory" | "filesystem";
/** Status of a process inside a sandbox. */
export type ProcessStatus = Open<"running" | "exited" | "signaled" | "oom_killed">;
/** Whether a started process gets a writable stdin pipe. */
export type StdinMode = "closed" | "pipe";
/** Whether a started process's stdout/stderr is captured or discarded. */
export type OutputMode = "capture" | "discard";
/** Which output stream a line came from. */
export type OutputStream = Open<"stdout" | "stderr">;
/** When the sandbox's supervisor restarts a managed process after it exits. */
export type RestartPolicy = "never" | "on_failure" | "always";
/** How a managed process's health is checked: an HTTP GET or a TCP connect to a local port. */
export type ProcessHealthCheckType = "http" | "tcp";
/** The supervisor's status of a managed process. */
export type ManagedProcessStatus = Open<"starting" | "running" | "backing_off" | "stopped">;
/** The latest health of a managed process (`disabled` without a health check). */
export type ManagedProcessHealthStatus = Open<"disabled" | "starting" | "healthy" | "unhealthy">;
/** Severity of a persisted log record; the log query sends it as its number ({@link LOG_LEVEL_NUMBERS}). */
export type SandboxLogLevel = "trace" | "debug" | "info" | "warn" | "error" | "fatal";

/**
 * Whether a sandbox of a pool waits for a claim (`Idle`: running, invisible to `list()`) or has
 * been claimed (`Running`: an ordinary sandbox with the pool's `poolId`).
 */
export type PoolContainerState = Open<"Idle" | "Running">;

/**
 * Whether a node (an Alcove server sharing the store) takes work: `active`, `draining` (it serves
 * the sandboxes it has but starts and resumes none, `drainNode()`) or `offline` (its lease ran
 * out: stopped, or cut off from the store).
 */
export type NodeState = Open<"active" | "draining" | "offline">;

/** How an image came into the server's store. */
export type ImageSource = Open<"builtin" | "pull" | "import" | "build" | "snapshot">;
/** Where one layer blob of a pull is ({@link LayerProgress}). */
export type LayerStatus = Open<"waiting" | "exists" | "downloading" | "verifying" | "unpacking" | "done">;

/** The wire number of each log level. */
export const LOG_LEVEL_NUMBERS: Readonly<Record<SandboxLogLevel, number>> = Object.freeze({
  trace: 1,
  debug: 2,
  info: 3,
  warn: 4,
  error: 5,
  fatal: 6,
});

/** Sandbox statuses after which a sandbox never runs again. */
export const TERMINAL_STATUSES: readonly string[] = ["terminated", "failed", "timeout"];

// ---------------------------------------------------------------------------------------------
// Models

/** GPUs attached to a sandbox. */
export interface GPUResources {
  count: number;
  model: string;
}

/** Resources allocated to a sandbox. */
export interface ContainerResourcesInfo {
  cpus: number;
  memoryMb: number;
  diskMb: number | null;
  ephemeralDiskMb: number | null;
  gpus: GPUResources[];
}

/** The target of a live resize: every dimension, those not asked for at their value then. */
export interface ResizeResources {
  cpus: number;
  memoryMb: number;
  diskMb: number;
}

/**
 * The latest live resize of a sandbox (`resourceResize` of {@link SandboxInfo});
 * `SandboxInfo.resources` are the limits in force. `generation` counts the sandbox's resizes,
 * from 1; `errorMessage` says why a `failed` one failed.
 */
export interface SandboxResourceResizeInfo {
  generation: number;
  requested: ResizeResources | null;
  status: ResizeStatus;
  errorMessage: string | null;
}

/** Outbound network rules of a sandbox (the `network_policy` response field). */
export interface NetworkPolicy {
  allowInternetAccess: boolean;
  allowOut: string[];
  denyOut: string[];
}

/**
 * A sandbox as described by the control plane.
 *
 * Returned by `create()`, `get()`, `list()`, `updateSandbox()`, `update()`, `waitForResourceResize()`,
 * `suspend()`, `resume()`, `exposePorts()` and `unexposePorts()`.
 */
export interface SandboxInfo {
  /** Server-assigned id (from `sandbox_id` or `id` on the wire). */
  sandboxId: string;
  name: string | null;
  namespace: string | null;
  status: SandboxStatus;
  image: string | null;
  resources: ContainerResourcesInfo | null;
  secretNames: string[];
  timeoutSecs: number | null;
  exposedPorts: number[];
  allowUnauthenticatedAccess: boolean;
  entrypoint: string[];
  createdAt: Date | null;
  terminatedAt: Date | null;
  sandboxUrl: string | null;
  ingressEndpoint: string | null;
  routingHint: string | null;
  pendingReason: string | null;
  terminationReason: string | null;
  outcome: unknown;
  errorDetails: unknown;
  networkPolicy: NetworkPolicy | null;
  poolId: string | null;
  autoResume: boolean;
  runtime: string | null;
  /** The latest live resize (`SandboxClient.update`), `null` before the first. */
  resourceResize: SandboxResourceResizeInfo | null;
  /** The volumes mounted in it (docs/volumes.md). */
  fileSystems: FileSystemMount[];
  /** Alcove: the labels its node must have (`nodeSelector` of its create); empty: any node. */
  nodeSelector: Record<string, string>;
}

/** A volume mounted (or to be mounted) into a sandbox; `fileSystemId` is the volume's name. */
export interface FileSystemMount {
  fileSystemId: string;
  /** Absolute, normalized path inside the sandbox. */
  mountPath: string;
  /** Mount read-only (default false). */
  readOnly?: boolean;
  /** Accepted and ignored by Alcove (a volume is a local disk). */
  prefetch?: boolean;
  /** Refused by Alcove with 400: volumes have no snapshots. */
  snapshotId?: string;
  /** Refused by Alcove with 400: a volume's files keep their own owners. */
  owner?: string;
}

/** Where a volume is mounted. */
export interface FileSystemAttachment {
  sandboxId: string;
  mountPath: string;
  readOnly: boolean;
}

/** A persistent volume (its id is its name). */
export interface FileSystemInfo {
  id: string;
  name: string;
  sizeMb: number;
  /** MiB its files take, when known. */
  usedMb: number | null;
  createdAt: Date | null;
  /** The live sandboxes it is mounted in. */
  attachments: FileSystemAttachment[];
}

/**
 * One sandbox of a pool, as `getPool()` lists it: an idle one (running, waiting for a claim) or
 * a claimed one that has not ended.
 */
export interface PoolContainerInfo {
  id: string;
  state: PoolContainerState;
  sandboxId: string;
  executorId: string | null;
}

/**
 * A warm pool: the configuration its sandboxes are started with, and how many it keeps.
 *
 * Returned by `createPool()`, `getPool()`, `listPools()` and `updatePool()`. `containers` lists
 * the pool's sandboxes (idle and claimed live ones) in `getPool()`'s answer (and `createPool()`'s,
 * which reads the pool back); it is `null` in `listPools()` and `updatePool()`. `maxContainers`
 * is `null` when the pool has no limit but the host's capacity.
 */
export interface SandboxPoolInfo {
  /** The pool's id (`id` on the wire). */
  poolId: string;
  namespace: string | null;
  image: string;
  resources: ContainerResourcesInfo;
  /** Lifetime of a claimed sandbox in seconds, counted from its claim (0: none). */
  timeoutSecs: number;
  entrypoint: string[];
  maxContainers: number | null;
  warmContainers: number;
  networkPolicy: NetworkPolicy | null;
  containers: PoolContainerInfo[] | null;
  createdAt: Date | null;
  updatedAt: Date | null;
  /** Alcove: the labels its sandboxes' nodes must have (`nodeSelector` of its create or update); empty: any node. */
  nodeSelector: Record<string, string>;
}

/** CPUs and memory (MiB) of a node: what the machine has, or what its sandboxes reserve. */
export interface NodeResources {
  cpus: number;
  memoryMb: number;
}

/**
 * One node: an Alcove server registered in the store it shares with the others.
 *
 * Returned by `listNodes()`, `drainNode()` and `activateNode()`.
 */
export interface NodeInfo {
  /** Its name (`--node-name`), unique among live nodes. */
  name: string;
  /** The URL other nodes reach it at (`--advertise-url`). */
  address: string;
  state: NodeState;
  /** Its labels (`--node-label key=value`). */
  labels: Record<string, string>;
  /** Its sandboxes' subnet, unique among live nodes. */
  subnet: string;
  /** What the machine has. */
  capacity: NodeResources;
  /** What its running sandboxes reserve (reported each time it renews its lease). */
  used: NodeResources;
  /** Sandboxes running there. */
  runningSandboxes: number;
  /** Suspended sandboxes whose dumps are there. */
  suspendedSandboxes: number;
  /** The server's version. */
  version: string;
  /** When this run of the server registered. */
  startedAt: Date | null;
  /** Until when its lease holds unless renewed (every few seconds). */
  leaseExpiresAt: Date | null;
  /**
   * When the other nodes declared it lost (its lease ran out): its running sandboxes were marked
   * lost and its suspended sandboxes in the blob store moved away. `null` while it is not.
   */
  lostAt: Date | null;
}

/**
 * An ended sandbox kept in the server's archive until its retention (`--archive-ttl`) runs
 * out: every field of {@link SandboxInfo} plus `archivedAt`. Returned by `getArchived()` and,
 * a page at a time, by `listArchived()`.
 */
export interface ArchivedSandboxInfo extends SandboxInfo {
  /** When it was archived (the moment it ended). */
  archivedAt: Date | null;
}

/**
 * One page of archived sandboxes, newest first. Pass `nextCursor` back as `cursor` (direction
 * `"forward"`, the default) for the older page, `prevCursor` with direction `"backward"` for the
 * newer one; each is `null` at its end of the archive.
 */
export interface ArchivedSandboxPage {
  sandboxes: ArchivedSandboxInfo[];
  prevCursor: string | null;
  nextCursor: string | null;
}

/** A snapshot of a sandbox (filesystem, or filesystem plus memory). */
/** What a running sandbox uses now against its limits, read from its cgroups and layer. */
export interface SandboxMetrics {
  sandboxId: string;
  /** When the figures were read (epoch ms). */
  timestamp: number;
  /** CPU time used since it started (user and system), in seconds. */
  cpuSeconds: number;
  /** CPUs it may use. */
  cpus: number;
  /** Memory in use, without reclaimable page cache, in bytes. */
  memoryBytes: number;
  memoryLimitBytes: number | null;
  /** Tasks (processes and threads) now. */
  pids: number;
  pidsLimit: number | null;
  /** Bytes written to the writable layer. */
  diskUsedBytes: number;
  /** Size of the writable layer in bytes. */
  diskLimitBytes: number;
}

export interface SnapshotInfo {
  /** Server-assigned id (from `snapshot_id` or `id` on the wire): pass it to `create` to restore. */
  snapshotId: string;
  namespace: string | null;
  /** The sandbox the snapshot was taken from. */
  sandboxId: string | null;
  status: SnapshotStatus;
  snapshotType: Open<SnapshotType> | null;
  sizeBytes: number | null;
  createdAt: Date | null;
  error: string | null;
  baseImage: string | null;
  snapshotUri: string | null;
}

/** One new sandbox of a copy: `running`, or `failed` with a `reason`. */
export interface CopiedSandbox {
  sandboxId: string;
  /** The server's status string (`running` or `failed` from this server). */
  status: string;
  reason: string | null;
  sandboxUrl: string | null;
  routingHint: string | null;
  ingressEndpoint: string | null;
  /** Always null from this server: names are unique, so copies get none. */
  name: string | null;
  terminationReason: string | null;
  errorDetails: string | null;
}

/** What `copy` made: the source's id and one entry per copy asked for. */
export interface CopySandboxResponse {
  sourceSandboxId: string;
  sandboxes: CopiedSandbox[];
}

/**
 * Result of `Sandbox.run()`.
 *
 * `stdout` / `stderr` are the captured lines joined with `"\n"`. `exitCode` is the process's
 * exit code, or `-signal` when the process was killed by a signal.
 */
export interface CommandResult {
  stdout: string;
  stderr: string;
  exitCode: number;
  signal: number | null;
  reason: string | null;
  pid: number | null;
}

/**
 * Restart policy and back-off of a managed process: the policy in force, as the server reports
 * it (`ManagedProcessInfo.restart`). `maxRestarts` `null` means no limit; the delay before the
 * n-th restart grows from `initialBackoffMs` and is capped at `maxBackoffMs`. Both count from the
 * last start by the user or the end of a run that stayed up 60 s.
 */
export interface RestartPolicyConfig {
  policy: Open<RestartPolicy>;
  maxRestarts: number | null;
  initialBackoffMs: number;
  maxBackoffMs: number;
}

/**
 * A local health check of a managed process. `type` `"http"` GETs `path` (default `/`) on `port`
 * inside the sandbox and wants a 2xx; `"tcp"` wants a connection to be accepted.
 * `failureThreshold` failures in a row make the process unhealthy.
 */
export interface ProcessHealthCheck {
  type: Open<ProcessHealthCheckType>;
  port: number;
  path: string | null;
  initialDelayMs: number;
  intervalMs: number;
  timeoutMs: number;
  failureThreshold: number;
}

/** What `startProcess({ restart })` takes: the fields of {@link RestartPolicyConfig}, each optional (the server's defaults apply). */
export type RestartOptions = {
  /** Default `on_failure`. */
  policy?: RestartPolicy;
  /** Default no limit (`null`). */
  maxRestarts?: number | null;
  /** Default 500. */
  initialBackoffMs?: number;
  /** Default 30000. */
  maxBackoffMs?: number;
};

/** What `startProcess({ healthCheck })` takes: `type` and `port`, the rest optional (the server's defaults apply). */
export type HealthCheckOptions = {
  type: ProcessHealthCheckType;
  port: number;
  path?: string;
  /** Default 5000. */
  initialDelayMs?: number;
  /** Default 1000. */
  intervalMs?: number;
  /** Default 500. */
  timeoutMs?: number;
  /** Default 3. */
  failureThreshold?: number;
};

/** How a previous run of a managed process ended. */
export interface ManagedProcessExit {
  exitCode: number | null;
  signal: number | null;
  oomKilled: boolean;
  endedAt: Date | null;
}

/**
 * The supervisor's view of a managed process (`ProcessInfo.managed`). `id` is stable across
 * restarts: the name when one was given, else an id of the agent's (a process without a name is
 * addressed by its current pid only). `status` `stopped` means it will not be started again.
 */
export interface ManagedProcessInfo {
  id: string;
  name: string | null;
  status: ManagedProcessStatus;
  restartCount: number;
  restart: RestartPolicyConfig;
  healthCheck: ProcessHealthCheck | null;
  healthStatus: ManagedProcessHealthStatus;
  consecutiveHealthFailures: number;
  lastExit: ManagedProcessExit | null;
  lastError: string | null;
  nextRestartAt: Date | null;
}

/** A process inside a sandbox. */
export interface ProcessInfo {
  pid: number;
  command: string;
  args: string[];
  status: ProcessStatus;
  exitCode: number | null;
  signal: number | null;
  stdinWritable: boolean;
  startedAt: Date | null;
  endedAt: Date | null;
  oomKilled: boolean | null;
  handle: number | null;
  /** Supervisor metadata, for a process started with `name`, `restart` or `healthCheck`; else `null`. */
  managed: ManagedProcessInfo | null;
}

/**
 * One line of process output from a follow stream (a plain object of these three fields; a piece
 * of a cut line has a fourth, `continued`).
 */
export interface OutputEvent {
  /** The line, without its line ending. */
  line: string;
  /**
   * When the agent read the line. The lines of one `output_batch` event (one read of one stream)
   * share one `Date` object: treat it as read-only (copy it before changing it).
   */
  timestamp: Date | null;
  stream: OutputStream | null;
  /**
   * `true` on a piece of a line longer than 1 MiB, which the agent cut (so that one endless line
   * cannot grow its memory): the next line of the same stream continues it, with no line ending
   * between them. Absent on every other line: the property is left out, not set to `false`, so
   * that the objects of ordinary lines keep their three fields (one shape, and no more to make).
   */
  readonly continued?: boolean;
}

/**
 * The lines of one read of one stream, from `followOutputBatches`: what the agent sends as one
 * `output_batch` event (a plain object of these four fields; one holding pieces of a cut line has
 * a fifth, `continued`).
 */
export interface OutputBatch {
  /** The lines, each without its line ending, in order. */
  lines: string[];
  /** When the agent read them. */
  timestamp: Date | null;
  stream: OutputStream | null;
  /**
   * Lines (of either stream) that the process's output buffer (it holds the last 16 MiB) let go
   * before this batch, unseen by this follower: between where it stood (the start of the follow,
   * or the previous batch) and this batch's first line. 0 mostly: only a follower that fell that
   * far behind loses lines.
   */
  dropped: number;
  /**
   * Indexes into {@link lines} of the pieces of a line longer than 1 MiB, which the agent cut:
   * each is continued by the next line of this stream (in this batch or a later one), with no
   * line ending between them. Absent when the batch holds none (nearly always).
   */
  continued?: readonly number[];
}

/** All output lines captured so far (`getStdout` / `getStderr` / `getOutput`). */
export interface OutputResponse {
  pid: number | null;
  lines: string[];
  lineCount: number;
  /**
   * Indexes into {@link lines} of the pieces of a line longer than 1 MiB, which the agent cut:
   * each is continued by the next line of its stream, with no line ending between them. In
   * `getOutput` (both streams) that next line need not be the next of `lines`: a line of the
   * other stream may come between. Empty when none (nearly always).
   */
  continued: readonly number[];
}

/** One entry of `Sandbox.listDirectory()`. */
export interface DirectoryEntry {
  name: string;
  isDir: boolean;
  size: number | null;
  modifiedAt: Date | null;
}

/** The answer to `POST /api/v1/pty`: a session's id and the token that opens its socket. */
export interface PtySessionInfo {
  sessionId: string;
  token: string;
}

/**
 * One persisted log record of a sandbox: a line of process output or an event. Read from
 * camelCase JSON, field for field. `timestamp` is epoch milliseconds (`time` is its `Date`).
 * `logAttributes` is the record's attributes as sent, a JSON object in a string; `attributes`
 * is that object decoded (Alcove puts `process_id`, `pid`, `stream`, `managed_name` and
 * `event` there, e.g. `"process_exited"`). `level` is the severity's number (`levelName` its name).
 */
export interface SandboxLogSignal {
  timestamp: number;
  time: Date;
  uuid: string;
  namespace: string;
  application: string;
  sandboxId: string | null;
  resourceAttributes: [string, string][];
  body: string;
  logAttributes: string;
  attributes: Record<string, unknown>;
  allocations: string[];
  functionRuns: string[];
  level: number | null;
  levelName: SandboxLogLevel | null;
  retention: number | null;
}

/** One page of a sandbox's persisted logs; pass `nextToken` back for the next page (`null` at the end). */
export interface SandboxLogsResponse {
  logs: SandboxLogSignal[];
  nextToken: string | null;
}

/** A process that has records in a sandbox's persisted logs (its `processId` filters `getLogs`). */
export interface SandboxProcessLogFilter {
  processId: string;
  processPid: string | null;
  processCommand: string | null;
  processManagedId: string | null;
  processManagedName: string | null;
  /** Epoch ms. */
  firstSeen: number | null;
  /** Epoch ms. */
  lastSeen: number | null;
  logCount: number;
}

/** The processes that have records in a sandbox's persisted logs. */
export interface SandboxProcessLogFiltersResponse {
  processes: SandboxProcessLogFilter[];
}

// ---------------------------------------------------------------------------------------------
// Images (server-wide, docs/images.md)

/**
 * How sandboxes of an image run, from its OCI config. `env` holds `KEY=VALUE` entries every
 * process starts with (a call's own `env` wins); `exposedPorts` are routed like a sandbox's.
 */
export interface ImageRunConfig {
  env: string[];
  workingDir: string | null;
  user: string | null;
  entrypoint: string[];
  cmd: string[];
  exposedPorts: number[];
}

/** One layer of an image: `diffId` is the digest of the uncompressed layer, `digest` that of the stored blob. */
export interface ImageLayerInfo {
  diffId: string;
  digest: string | null;
  sizeBytes: number;
  unpackedSizeBytes: number;
}

/** Who uses an image (ids): it cannot be deleted while any does. */
export interface ImageUsers {
  sandboxes: string[];
  snapshots: string[];
}

/**
 * An image in the server's store. `id` is the digest of its config (`sha256:…`); `names` the
 * references that name it (`name:tag`); `sizeBytes` the bytes of all its unpacked layers;
 * `layers` bottom first. `usedBy` is set by {@link SandboxClient.getImage} only.
 */
export interface ImageInfo {
  id: string;
  names: string[];
  manifestDigest: string | null;
  source: ImageSource;
  createdAt: Date | null;
  sizeBytes: number;
  layers: ImageLayerInfo[];
  config: ImageRunConfig;
  usedBy: ImageUsers | null;
}

/** What {@link SandboxClient.deleteImage} removed: references, images (ids) and the bytes freed. */
export interface DeleteImageResult {
  untagged: string[];
  deleted: string[];
  freedBytes: number;
}

/** Progress of one layer blob of a pull (`totalBytes` may be 0 while unknown). */
export interface LayerProgress {
  digest: string;
  status: LayerStatus;
  currentBytes: number;
  totalBytes: number;
}

/** A pull resolved its manifest: the layer blobs it will fetch, bottom first. */
export interface ImageResolvedEvent {
  event: "resolved";
  manifestDigest: string;
  layers: LayerProgress[];
}

/** A layer of a pull advanced. */
export interface ImageLayerEvent extends LayerProgress {
  event: "layer";
}

/** A build step started: `number` of `total` (1-based), the instruction as written, and whether the step cache answered it. */
export interface BuildStepEvent {
  event: "step";
  number: number;
  total: number;
  instruction: string;
  cached: boolean;
}

/** A line of a build step's output (`stream` is `stdout` or `stderr`; no newline). */
export interface BuildOutputEvent {
  event: "output";
  stream: OutputStream;
  line: string;
}

/** The pull or build is over: the image is stored. */
export interface ImageDoneEvent {
  event: "done";
  image: ImageInfo;
}

/**
 * The pull or build failed and nothing was stored: `code` and `message` as in an error body,
 * `status` the HTTP status the blocking call would have answered. The SDK throws the matching
 * error after passing this event on.
 */
export interface ImageErrorEvent {
  event: "error";
  code: string | null;
  message: string;
  status: number;
}

/**
 * One event of a pull or build followed with `onProgress`; narrow it on its `event` field
 * (`resolved`, `layer`, `step`, `output`, `done`, `error`).
 */
export type ImageProgressEvent =
  | ImageResolvedEvent
  | ImageLayerEvent
  | BuildStepEvent
  | BuildOutputEvent
  | ImageDoneEvent
  | ImageErrorEvent;

// ---------------------------------------------------------------------------------------------
// Field readers

type Wire = Record<string, unknown>;

function decodeError(what: string, detail: string): SandboxError {
  return new SandboxError(`decoding ${what}: ${detail}`);
}

function asObject(data: unknown, what: string): Wire {
  if (typeof data !== "object" || data === null || Array.isArray(data)) {
    throw decodeError(what, `expected a JSON object, got ${JSON.stringify(data)}`);
  }
  return data as Wire;
}

function str(data: Wire, key: string): string | null {
  const value = data[key];
  return typeof value === "string" ? value : null;
}

function requiredStr(data: Wire, what: string, ...keys: string[]): string {
  for (const key of keys) {
    const value = data[key];
    if (typeof value === "string" && value) return value;
  }
  throw decodeError(what, `missing field \`${keys[0]}\``);
}

function num(data: Wire, key: string): number | null {
  const value = data[key];
  return typeof value === "number" && Number.isFinite(value) ? value : null;
}

function int(data: Wire, key: string): number | null {
  const value = num(data, key);
  return value !== null && Number.isInteger(value) ? value : null;
}

function bool(data: Wire, key: string, fallback: boolean): boolean {
  const value = data[key];
  return typeof value === "boolean" ? value : fallback;
}

function list<T>(data: Wire, key: string, guard: (item: unknown) => item is T): T[] {
  const value = data[key];
  return Array.isArray(value) ? value.filter(guard) : [];
}

/**
 * An object of string values (node labels, a node selector); `{}` when absent or not an object.
 * Own properties (a label named `__proto__` stays a label); values that are not strings are dropped.
 */
function labelMap(data: Wire, key: string): Record<string, string> {
  const value = data[key];
  if (typeof value !== "object" || value === null || Array.isArray(value)) return {};
  return Object.fromEntries(Object.entries(value).filter(([, label]) => typeof label === "string")) as Record<string, string>;
}

const isString = (item: unknown): item is string => typeof item === "string";
const isInteger = (item: unknown): item is number => typeof item === "number" && Number.isInteger(item);
const isAny = (_item: unknown): _item is unknown => true;

/**
 * A `Date` from an epoch number (seconds, milliseconds, microseconds or nanoseconds, told apart
 * by magnitude) or an ISO-8601 string; `null` when absent or unreadable.
 */
export function parseTimestamp(value: unknown): Date | null {
  if (value === null || value === undefined || value === "" || typeof value === "boolean") return null;
  if (typeof value === "string") {
    const text = value.trim();
    if (/^-?\d+(\.\d+)?$/.test(text)) return parseTimestamp(Number(text));
    // A date-time without a zone is UTC (JavaScript would read it as local time).
    const naive = /^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?$/.test(text);
    const date = new Date(naive ? `${text.replace(" ", "T")}Z` : text);
    return Number.isNaN(date.getTime()) ? null : date;
  }
  if (typeof value !== "number" || !Number.isFinite(value)) return null;
  let seconds = value;
  const magnitude = Math.abs(seconds);
  if (magnitude >= 1e17) seconds /= 1e9;
  else if (magnitude >= 1e14) seconds /= 1e6;
  else if (magnitude >= 1e11) seconds /= 1e3;
  return new Date(seconds * 1000);
}

// ---------------------------------------------------------------------------------------------
// Wire → model

function resourcesFromWire(value: unknown): ContainerResourcesInfo | null {
  if (typeof value !== "object" || value === null) return null;
  const data = value as Wire;
  const gpus = Array.isArray(data.gpus) ? data.gpus : Array.isArray(data.gpu_configs) ? data.gpu_configs : [];
  return {
    cpus: num(data, "cpus") ?? 0,
    memoryMb: int(data, "memory_mb") ?? 0,
    diskMb: int(data, "disk_mb"),
    ephemeralDiskMb: int(data, "ephemeral_disk_mb"),
    gpus: gpus
      .filter((g): g is Wire => typeof g === "object" && g !== null)
      .map((g) => ({ count: int(g, "count") ?? 0, model: str(g, "model") ?? "" })),
  };
}

function resizeResourcesFromWire(value: unknown): ResizeResources | null {
  if (typeof value !== "object" || value === null) return null;
  const data = value as Wire;
  return { cpus: num(data, "cpus") ?? 0, memoryMb: int(data, "memory_mb") ?? 0, diskMb: int(data, "disk_mb") ?? 0 };
}

function resourceResizeFromWire(value: unknown): SandboxResourceResizeInfo | null {
  if (value === null || value === undefined) return null;
  const what = "resource_resize";
  const data = asObject(value, what);
  const generation = int(data, "generation");
  if (generation === null) throw decodeError(what, "missing field `generation`");
  return {
    generation,
    requested: resizeResourcesFromWire(data.requested),
    status: requiredStr(data, what, "status"),
    errorMessage: str(data, "error_message"),
  };
}

function networkFromWire(value: unknown): NetworkPolicy | null {
  if (typeof value !== "object" || value === null) return null;
  const data = value as Wire;
  return {
    allowInternetAccess: bool(data, "allow_internet_access", true),
    allowOut: list(data, "allow_out", isString),
    denyOut: list(data, "deny_out", isString),
  };
}

/** A {@link SandboxInfo} from a control-plane object (`id` or `sandbox_id`). */
export function sandboxInfoFromWire(value: unknown, what = "sandbox"): SandboxInfo {
  const data = asObject(value, what);
  return {
    sandboxId: requiredStr(data, what, "sandbox_id", "id"),
    name: str(data, "name"),
    namespace: str(data, "namespace"),
    status: requiredStr(data, what, "status", "state"),
    image: str(data, "image"),
    resources: resourcesFromWire(data.resources),
    secretNames: list(data, "secret_names", isString),
    timeoutSecs: int(data, "timeout_secs"),
    exposedPorts: list(data, "exposed_ports", isInteger),
    allowUnauthenticatedAccess: bool(data, "allow_unauthenticated_access", false),
    entrypoint: list(data, "entrypoint", isString),
    createdAt: parseTimestamp(data.created_at),
    terminatedAt: parseTimestamp(data.terminated_at),
    sandboxUrl: str(data, "sandbox_url") || null,
    ingressEndpoint: str(data, "ingress_endpoint"),
    routingHint: str(data, "routing_hint"),
    pendingReason: str(data, "pending_reason"),
    terminationReason: str(data, "termination_reason"),
    outcome: data.outcome ?? null,
    errorDetails: data.error_details ?? null,
    networkPolicy: networkFromWire(data.network_policy),
    poolId: str(data, "pool_id"),
    autoResume: bool(data, "auto_resume", true),
    runtime: str(data, "runtime"),
    resourceResize: resourceResizeFromWire(data.resource_resize),
    fileSystems: list(data, "file_systems", isAny).map((m) => fileSystemMountFromWire(m)),
    nodeSelector: labelMap(data, "node_selector"),
  };
}

/** A {@link FileSystemMount} from its wire object. */
export function fileSystemMountFromWire(value: unknown, what = "file system mount"): FileSystemMount {
  const data = asObject(value, what);
  return {
    fileSystemId: requiredStr(data, what, "file_system_id"),
    mountPath: requiredStr(data, what, "mount_path"),
    readOnly: bool(data, "read_only", false),
    ...(typeof data.prefetch === "boolean" ? { prefetch: data.prefetch } : {}),
    ...(typeof data.snapshot_id === "string" ? { snapshotId: data.snapshot_id } : {}),
    ...(typeof data.owner === "string" ? { owner: data.owner } : {}),
  };
}

/** The wire body of a {@link FileSystemMount}: `read_only` only when true. */
export function fileSystemMountToWire(mount: FileSystemMount): Record<string, unknown> {
  if (typeof mount.fileSystemId !== "string" || mount.fileSystemId.trim() === "") {
    throw new TypeError(`fileSystemId must be a non-empty string, got ${JSON.stringify(mount.fileSystemId)}`);
  }
  if (typeof mount.mountPath !== "string" || !mount.mountPath.startsWith("/")) {
    throw new TypeError(`mountPath must be an absolute path, got ${JSON.stringify(mount.mountPath)}`);
  }
  const body: Record<string, unknown> = { file_system_id: mount.fileSystemId, mount_path: mount.mountPath };
  if (mount.readOnly) body.read_only = true;
  if (mount.prefetch) body.prefetch = true;
  if (mount.snapshotId !== undefined) body.snapshot_id = mount.snapshotId;
  if (mount.owner !== undefined) body.owner = mount.owner;
  return body;
}

/** A {@link FileSystemInfo} from the body of `GET /file-systems/{name}`. */
export function fileSystemInfoFromWire(value: unknown, what = "file system"): FileSystemInfo {
  const data = asObject(value, what);
  const sizeMb = int(data, "size_mb");
  if (sizeMb === null) throw decodeError(what, "missing field `size_mb`");
  return {
    id: requiredStr(data, what, "id", "name"),
    name: requiredStr(data, what, "name", "id"),
    sizeMb,
    usedMb: int(data, "used_mb"),
    createdAt: parseTimestamp(data.created_at),
    attachments: list(data, "attachments", isAny).map((a) => {
      const att = asObject(a, what);
      return {
        sandboxId: requiredStr(att, what, "sandbox_id"),
        mountPath: requiredStr(att, what, "mount_path"),
        readOnly: bool(att, "read_only", false),
      };
    }),
  };
}

/** A {@link PoolContainerInfo} from one entry of a pool's `containers`. */
export function poolContainerInfoFromWire(value: unknown, what = "pool container"): PoolContainerInfo {
  const data = asObject(value, what);
  return {
    id: requiredStr(data, what, "id"),
    state: requiredStr(data, what, "state"),
    sandboxId: requiredStr(data, what, "sandbox_id"),
    executorId: str(data, "executor_id"),
  };
}

/** A {@link SandboxPoolInfo} from a pool (`id` or `pool_id`). */
export function sandboxPoolInfoFromWire(value: unknown, what = "pool"): SandboxPoolInfo {
  const data = asObject(value, what);
  const resources = resourcesFromWire(data.resources);
  if (resources === null) throw decodeError(what, "missing field `resources`");
  const containers = data.containers;
  if (containers !== undefined && containers !== null && !Array.isArray(containers)) {
    throw decodeError(what, "`containers` is not a list");
  }
  return {
    poolId: requiredStr(data, what, "id", "pool_id"),
    namespace: str(data, "namespace"),
    image: requiredStr(data, what, "image"),
    resources,
    timeoutSecs: int(data, "timeout_secs") ?? 0,
    entrypoint: list(data, "entrypoint", isString),
    maxContainers: int(data, "max_containers"),
    warmContainers: requiredInt(data, what, "warm_containers"),
    networkPolicy: networkFromWire(data.network_policy),
    containers: Array.isArray(containers) ? containers.map((c) => poolContainerInfoFromWire(c, what)) : null,
    createdAt: parseTimestamp(data.created_at),
    updatedAt: parseTimestamp(data.updated_at),
    nodeSelector: labelMap(data, "node_selector"),
  };
}

/** A {@link NodeResources} from the `capacity` or `used` of a node. */
export function nodeResourcesFromWire(value: unknown, what = "node resources"): NodeResources {
  const data = asObject(value, what);
  const cpus = num(data, "cpus");
  if (cpus === null) throw decodeError(what, "missing field `cpus`");
  return { cpus, memoryMb: requiredInt(data, what, "memory_mb") };
}

/** A {@link NodeInfo} from an entry of `GET /nodes` or the answer of a drain or activate. */
export function nodeInfoFromWire(value: unknown, what = "node"): NodeInfo {
  const data = asObject(value, what);
  const text = (key: string): string => {
    const found = str(data, key);
    if (found === null) throw decodeError(what, `missing field \`${key}\``);
    return found;
  };
  for (const key of ["started_at", "lease_expires_at"]) {
    if (!(key in data)) throw decodeError(what, `missing field \`${key}\``);
  }
  return {
    name: requiredStr(data, what, "name"),
    address: text("address"),
    state: requiredStr(data, what, "state"),
    labels: labelMap(data, "labels"),
    subnet: text("subnet"),
    capacity: nodeResourcesFromWire(data.capacity, what),
    used: nodeResourcesFromWire(data.used, what),
    runningSandboxes: requiredInt(data, what, "running_sandboxes"),
    suspendedSandboxes: requiredInt(data, what, "suspended_sandboxes"),
    version: text("version"),
    startedAt: parseTimestamp(data.started_at),
    leaseExpiresAt: parseTimestamp(data.lease_expires_at),
    lostAt: data.lost_at == null ? null : parseTimestamp(data.lost_at),
  };
}

/** A {@link SandboxMetrics} from the body of `GET /sandboxes/{id}/metrics`. */
export function sandboxMetricsFromWire(value: unknown, what = "sandbox metrics"): SandboxMetrics {
  const data = asObject(value, what);
  const required = (key: string): number => {
    const n = num(data, key);
    if (n === null) throw decodeError(what, `missing field \`${key}\``);
    return n;
  };
  return {
    sandboxId: requiredStr(data, what, "sandbox_id"),
    timestamp: required("timestamp"),
    cpuSeconds: required("cpu_seconds"),
    cpus: required("cpus"),
    memoryBytes: required("memory_bytes"),
    memoryLimitBytes: num(data, "memory_limit_bytes"),
    pids: required("pids"),
    pidsLimit: num(data, "pids_limit"),
    diskUsedBytes: required("disk_used_bytes"),
    diskLimitBytes: required("disk_limit_bytes"),
  };
}

/** An {@link ArchivedSandboxInfo} from an archived sandbox (`archived_at` required, as the official SDK has it). */
export function archivedSandboxInfoFromWire(value: unknown, what = "archived sandbox"): ArchivedSandboxInfo {
  const data = asObject(value, what);
  if (!("archived_at" in data)) throw decodeError(what, "missing field `archived_at`");
  return { ...sandboxInfoFromWire(data, what), archivedAt: parseTimestamp(data.archived_at) };
}

/** An {@link ArchivedSandboxPage} from the answer of `GET /archived-sandboxes`. */
export function archivedSandboxPageFromWire(value: unknown, what = "archived sandbox list"): ArchivedSandboxPage {
  const data = asObject(value, what);
  return {
    sandboxes: listFromWire(data, "sandboxes", archivedSandboxInfoFromWire, what),
    prevCursor: str(data, "prev_cursor"),
    nextCursor: str(data, "next_cursor"),
  };
}

/** A {@link SnapshotInfo} from a snapshot object (`id` or `snapshot_id`). */
export function snapshotInfoFromWire(value: unknown, what = "snapshot"): SnapshotInfo {
  const data = asObject(value, what);
  return {
    snapshotId: requiredStr(data, what, "snapshot_id", "id"),
    namespace: str(data, "namespace"),
    sandboxId: str(data, "sandbox_id"),
    status: requiredStr(data, what, "status"),
    snapshotType: str(data, "snapshot_type"),
    sizeBytes: int(data, "size_bytes"),
    createdAt: parseTimestamp(data.created_at),
    error: str(data, "error"),
    baseImage: str(data, "base_image"),
    snapshotUri: str(data, "snapshot_uri"),
  };
}

/** A {@link CopiedSandbox} from one entry of a copy answer. */
export function copiedSandboxFromWire(value: unknown, what = "copied sandbox"): CopiedSandbox {
  const data = asObject(value, what);
  const details = data.error_details;
  return {
    sandboxId: requiredStr(data, what, "sandbox_id"),
    status: requiredStr(data, what, "status"),
    reason: str(data, "reason"),
    sandboxUrl: str(data, "sandbox_url"),
    routingHint: str(data, "routing_hint"),
    ingressEndpoint: str(data, "ingress_endpoint"),
    name: str(data, "name"),
    terminationReason: str(data, "termination_reason"),
    errorDetails: details === undefined || details === null ? null : typeof details === "string" ? details : JSON.stringify(details),
  };
}

/** A {@link CopySandboxResponse} from the answer of `POST /sandboxes/{id}/copy` (200 or 422). */
export function copySandboxResponseFromWire(value: unknown, what = "copy answer"): CopySandboxResponse {
  const data = asObject(value, what);
  return {
    sourceSandboxId: requiredStr(data, what, "source_sandbox_id"),
    sandboxes: listFromWire(data, "sandboxes", copiedSandboxFromWire, what),
  };
}

/** A {@link ProcessInfo} from an agent process object. */
export function processInfoFromWire(value: unknown, what = "process"): ProcessInfo {
  const data = asObject(value, what);
  const pid = int(data, "pid");
  if (pid === null) throw decodeError(what, "missing field `pid`");
  const oom = data.oom_killed;
  return {
    pid,
    command: str(data, "command") ?? "",
    args: list(data, "args", isString),
    status: requiredStr(data, what, "status"),
    exitCode: int(data, "exit_code"),
    signal: int(data, "signal"),
    stdinWritable: bool(data, "stdin_writable", false),
    startedAt: parseTimestamp(data.started_at),
    endedAt: parseTimestamp(data.ended_at),
    oomKilled: typeof oom === "boolean" ? oom : null,
    handle: int(data, "handle"),
    managed: data.managed === null || data.managed === undefined ? null : managedProcessInfoFromWire(data.managed, what),
  };
}

/** A {@link RestartPolicyConfig} from its wire object (absent fields are the server's defaults). */
export function restartPolicyConfigFromWire(value: unknown, what = "restart policy"): RestartPolicyConfig {
  const data = asObject(value ?? {}, what);
  return {
    policy: str(data, "policy") ?? "on_failure",
    maxRestarts: int(data, "max_restarts"),
    initialBackoffMs: int(data, "initial_backoff_ms") ?? 500,
    maxBackoffMs: int(data, "max_backoff_ms") ?? 30_000,
  };
}

/** A {@link ProcessHealthCheck} from its wire object. */
export function processHealthCheckFromWire(value: unknown, what = "health check"): ProcessHealthCheck {
  const data = asObject(value, what);
  const port = int(data, "port");
  if (port === null) throw decodeError(what, "missing field `port`");
  return {
    type: requiredStr(data, what, "type"),
    port,
    path: str(data, "path"),
    initialDelayMs: int(data, "initial_delay_ms") ?? 5_000,
    intervalMs: int(data, "interval_ms") ?? 1_000,
    timeoutMs: int(data, "timeout_ms") ?? 500,
    failureThreshold: int(data, "failure_threshold") ?? 3,
  };
}

/** A {@link ManagedProcessExit} from its wire object. */
export function managedProcessExitFromWire(value: unknown, what = "managed process exit"): ManagedProcessExit {
  const data = asObject(value, what);
  return {
    exitCode: int(data, "exit_code"),
    signal: int(data, "signal"),
    oomKilled: bool(data, "oom_killed", false),
    endedAt: parseTimestamp(data.ended_at),
  };
}

/** A {@link ManagedProcessInfo} from the `managed` object of a process. */
export function managedProcessInfoFromWire(value: unknown, what = "managed process"): ManagedProcessInfo {
  const data = asObject(value, what);
  const present = (key: string): boolean => data[key] !== null && data[key] !== undefined;
  return {
    id: requiredStr(data, what, "id"),
    name: str(data, "name"),
    status: requiredStr(data, what, "status"),
    restartCount: int(data, "restart_count") ?? 0,
    restart: restartPolicyConfigFromWire(data.restart, what),
    healthCheck: present("health_check") ? processHealthCheckFromWire(data.health_check, what) : null,
    healthStatus: str(data, "health_status") ?? "disabled",
    consecutiveHealthFailures: int(data, "consecutive_health_failures") ?? 0,
    lastExit: present("last_exit") ? managedProcessExitFromWire(data.last_exit, what) : null,
    lastError: str(data, "last_error"),
    nextRestartAt: parseTimestamp(data.next_restart_at),
  };
}

/** The {@link SandboxLogLevel} of a wire number, or `null` for one the SDK does not know. */
export function logLevelName(level: number | null): SandboxLogLevel | null {
  if (level === null) return null;
  const entry = Object.entries(LOG_LEVEL_NUMBERS).find(([, n]) => n === level);
  return entry ? (entry[0] as SandboxLogLevel) : null;
}

function parseAttributes(text: string): Record<string, unknown> {
  try {
    const value: unknown = JSON.parse(text);
    return typeof value === "object" && value !== null && !Array.isArray(value) ? (value as Record<string, unknown>) : {};
  } catch {
    return {};
  }
}

const isPair = (item: unknown): item is [string, string] =>
  Array.isArray(item) && item.length === 2 && typeof item[0] === "string" && typeof item[1] === "string";

/** A {@link SandboxLogSignal} from a record of `GET .../logs` (camelCase on the wire). */
export function sandboxLogSignalFromWire(value: unknown, what = "sandbox logs"): SandboxLogSignal {
  const data = asObject(value, what);
  const timestamp = num(data, "timestamp");
  if (timestamp === null) throw decodeError(what, "missing field `timestamp`");
  const logAttributes = str(data, "logAttributes") ?? "{}";
  const level = int(data, "level");
  return {
    timestamp,
    time: new Date(timestamp),
    uuid: str(data, "uuid") ?? "",
    namespace: str(data, "namespace") ?? "",
    application: str(data, "application") ?? "",
    sandboxId: str(data, "sandboxId"),
    resourceAttributes: list(data, "resourceAttributes", isPair).map(([k, v]) => [k, v] as [string, string]),
    body: str(data, "body") ?? "",
    logAttributes,
    attributes: parseAttributes(logAttributes),
    allocations: list(data, "allocations", isString),
    functionRuns: list(data, "functionRuns", isString),
    level,
    levelName: logLevelName(level),
    retention: int(data, "retention"),
  };
}

/** A {@link SandboxLogsResponse} from the answer of `GET .../logs`. */
export function sandboxLogsResponseFromWire(value: unknown, what = "sandbox logs"): SandboxLogsResponse {
  const data = asObject(value, what);
  return { logs: listFromWire(data, "logs", sandboxLogSignalFromWire, what), nextToken: str(data, "nextToken") || null };
}

/** A {@link SandboxProcessLogFilter} from an entry of `GET .../processes` (camelCase on the wire). */
export function sandboxProcessLogFilterFromWire(value: unknown, what = "sandbox log processes"): SandboxProcessLogFilter {
  const data = asObject(value, what);
  const pid = data.processPid;
  return {
    processId: requiredStr(data, what, "processId"),
    processPid: typeof pid === "number" && Number.isInteger(pid) ? String(pid) : str(data, "processPid"),
    processCommand: str(data, "processCommand"),
    processManagedId: str(data, "processManagedId"),
    processManagedName: str(data, "processManagedName"),
    firstSeen: num(data, "firstSeen"),
    lastSeen: num(data, "lastSeen"),
    logCount: int(data, "logCount") ?? 0,
  };
}

/** A {@link SandboxProcessLogFiltersResponse} from the answer of `GET .../processes`. */
export function sandboxProcessLogFiltersResponseFromWire(
  value: unknown,
  what = "sandbox log processes",
): SandboxProcessLogFiltersResponse {
  return { processes: listFromWire(value, "processes", sandboxProcessLogFilterFromWire, what) };
}

/** An {@link OutputResponse} from `GET /api/v1/processes/{p}/stdout|stderr|output`. */
export function outputResponseFromWire(value: unknown, what = "process output"): OutputResponse {
  const data = asObject(value, what);
  const lines = list(data, "lines", isString);
  const continued = list(data, "continued", isInteger);
  return { pid: int(data, "pid"), lines, lineCount: int(data, "line_count") ?? lines.length, continued };
}

/** An {@link OutputEvent} from a follow-stream event, or `null` for events that are not lines. */
export function outputEventFromWire(value: unknown, defaultStream: OutputStream | null = null): OutputEvent | null {
  if (typeof value !== "object" || value === null) return null;
  const data = value as Wire;
  if (typeof data.line !== "string") return null;
  const timestamp = parseTimestamp(data.timestamp);
  const stream = str(data, "stream") ?? defaultStream;
  // `continued` only on a piece of a cut line: the other events keep three fields.
  if (data.continued === true) return { line: data.line, timestamp, stream, continued: true };
  return { line: data.line, timestamp, stream };
}

/** A {@link DirectoryEntry} from one entry of `GET /api/v1/files/list`. */
export function directoryEntryFromWire(value: unknown, what = "directory listing"): DirectoryEntry {
  const data = asObject(value, what);
  if (typeof data.name !== "string") throw decodeError(what, "missing field `name`");
  if (typeof data.is_dir !== "boolean") throw decodeError(what, "missing field `is_dir`");
  return {
    name: data.name,
    isDir: data.is_dir,
    size: int(data, "size"),
    modifiedAt: parseTimestamp(data.modified_at),
  };
}

/** A {@link PtySessionInfo} from the answer to `POST /api/v1/pty`. */
export function ptySessionInfoFromWire(value: unknown, what = "PTY session"): PtySessionInfo {
  const data = asObject(value, what);
  return { sessionId: requiredStr(data, what, "session_id"), token: requiredStr(data, what, "token") };
}

/** The items under `key` of a list answer (`{"sandboxes": [...]}`); a missing list is empty. */
export function listFromWire<T>(value: unknown, key: string, item: (v: unknown, what: string) => T, what: string): T[] {
  const items = Array.isArray(value) ? value : asObject(value, what)[key];
  if (items === null || items === undefined) return [];
  if (!Array.isArray(items)) throw decodeError(what, `expected a list under '${key}'`);
  return items.map((entry) => item(entry, what));
}

/**
 * The public URL of an exposed user port, when the server gave an `ingressEndpoint`
 * (`scheme://<port>-<sandboxId>.<ingress host>`). Port 9501 (the in-sandbox agent) maps to
 * `sandboxUrl`.
 */
export function urlForPort(info: SandboxInfo, port: number): string | null {
  if (port === 9501) return info.sandboxUrl;
  if (!info.ingressEndpoint) return null;
  const match = /^([a-z][a-z0-9+.-]*):\/\/(.*)$/i.exec(info.ingressEndpoint);
  const [scheme, rest] = match ? [match[1], match[2]] : ["http", info.ingressEndpoint];
  return `${scheme}://${port}-${info.sandboxId}.${(rest ?? "").replace(/\/+$/, "")}`;
}

// ---------------------------------------------------------------------------------------------
// Images

function requiredInt(data: Wire, what: string, key: string): number {
  const value = int(data, key);
  if (value === null) throw decodeError(what, `missing field \`${key}\``);
  return value;
}

/** An {@link ImageRunConfig} from its wire object (absent fields are empty). */
export function imageRunConfigFromWire(value: unknown, what = "image config"): ImageRunConfig {
  const data = asObject(value ?? {}, what);
  return {
    env: list(data, "env", isString),
    workingDir: str(data, "working_dir"),
    user: str(data, "user"),
    entrypoint: list(data, "entrypoint", isString),
    cmd: list(data, "cmd", isString),
    exposedPorts: list(data, "exposed_ports", isInteger),
  };
}

function imageLayerInfoFromWire(value: unknown, what: string): ImageLayerInfo {
  const data = asObject(value, what);
  return {
    diffId: requiredStr(data, what, "diff_id"),
    digest: str(data, "digest"),
    sizeBytes: int(data, "size_bytes") ?? 0,
    unpackedSizeBytes: int(data, "unpacked_size_bytes") ?? 0,
  };
}

/** An {@link ImageInfo} from its wire object. */
export function imageInfoFromWire(value: unknown, what = "image"): ImageInfo {
  const data = asObject(value, what);
  const usedBy = data.used_by === null || data.used_by === undefined ? null : asObject(data.used_by, what);
  return {
    id: requiredStr(data, what, "id"),
    names: list(data, "names", isString),
    manifestDigest: str(data, "manifest_digest"),
    source: requiredStr(data, what, "source"),
    createdAt: parseTimestamp(data.created_at),
    sizeBytes: int(data, "size_bytes") ?? 0,
    layers: Array.isArray(data.layers) ? data.layers.map((layer) => imageLayerInfoFromWire(layer, what)) : [],
    config: imageRunConfigFromWire(data.config, what),
    usedBy: usedBy && { sandboxes: list(usedBy, "sandboxes", isString), snapshots: list(usedBy, "snapshots", isString) },
  };
}

/** A {@link DeleteImageResult} from its wire object. */
export function deleteImageResultFromWire(value: unknown, what = "image deletion"): DeleteImageResult {
  const data = asObject(value, what);
  return {
    untagged: list(data, "untagged", isString),
    deleted: list(data, "deleted", isString),
    freedBytes: int(data, "freed_bytes") ?? 0,
  };
}

function layerProgressFromWire(value: unknown, what: string): LayerProgress {
  const data = asObject(value, what);
  return {
    digest: requiredStr(data, what, "digest"),
    status: requiredStr(data, what, "status"),
    currentBytes: int(data, "current_bytes") ?? 0,
    totalBytes: int(data, "total_bytes") ?? 0,
  };
}

/** The typed event of one event's JSON object; `null` for an event this SDK does not know. */
export function imageProgressEventFromWire(value: unknown): ImageProgressEvent | null {
  const data = asObject(value, "image progress event");
  const what = `image progress event '${String(data.event)}'`;
  switch (data.event) {
    case "resolved":
      return {
        event: "resolved",
        manifestDigest: requiredStr(data, what, "manifest_digest"),
        layers: Array.isArray(data.layers) ? data.layers.map((layer) => layerProgressFromWire(layer, what)) : [],
      };
    case "layer":
      return { event: "layer", ...layerProgressFromWire(data, what) };
    case "step":
      return {
        event: "step",
        number: requiredInt(data, what, "number"),
        total: requiredInt(data, what, "total"),
        instruction: str(data, "instruction") ?? "",
        cached: bool(data, "cached", false),
      };
    case "output":
      return { event: "output", stream: requiredStr(data, what, "stream"), line: str(data, "line") ?? "" };
    case "done":
      return { event: "done", image: imageInfoFromWire(data.image, what) };
    case "error":
      return { event: "error", code: str(data, "code"), message: str(data, "message") ?? "", status: int(data, "status") ?? 500 };
    default:
      return null;
  }
}

// ---------------------------------------------------------------------------------------------
// Request field checks

export function stringList(value: unknown, what: string): string[] {
  if (!Array.isArray(value) || !value.every((item) => typeof item === "string")) {
    throw new TypeError(`${what} must be a list of strings, got ${JSON.stringify(value)}`);
  }
  return [...value];
}

export function stringMap(value: unknown, what: string): Record<string, string> {
  if (
    typeof value !== "object" ||
    value === null ||
    Array.isArray(value) ||
    !Object.values(value).every((item) => typeof item === "string")
  ) {
    throw new TypeError(`${what} must map strings to strings, got ${JSON.stringify(value)}`);
  }
  return { ...(value as Record<string, string>) };
}
