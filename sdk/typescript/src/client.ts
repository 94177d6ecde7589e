/**
 * The control-plane client: sandbox lifecycle, warm pools, snapshots, images and nodes (docs/protocol/control-plane.md).
 */

import { promises as fs } from "node:fs";
import path from "node:path";

import { resolveConfig, type ClientOptions } from "./config.js";
import {
  SandboxCopyError,
  SandboxError,
  SandboxFailedError,
  SandboxNameConflictError,
  SandboxNotFoundError,
  SandboxNotRoutableError,
  SandboxResizeError,
  SandboxTimeoutError,
} from "./errors.js";
import { contextFile, fileStream, writeDirectoryContext, type ContextFile } from "./context.js";
import { Image } from "./image.js";
import { ImageProgressCollector } from "./image-stream.js";
import {
  archivedUrl,
  check,
  clock,
  errorFromResponse,
  HttpTransport,
  imagesUrl,
  nodesUrl,
  poolsUrl,
  readChunks,
  responseJson,
  responseText,
  namespaceUrl,
  sandboxesUrl,
  snapshotsUrl,
  type FetchLike,
  type HttpResponse,
  type ErrorScope,
  type RequestSpec,
} from "./http.js";
import {
  archivedSandboxInfoFromWire,
  archivedSandboxPageFromWire,
  copySandboxResponseFromWire,
  deleteImageResultFromWire,
  fileSystemInfoFromWire,
  fileSystemMountToWire,
  imageInfoFromWire,
  listFromWire,
  LOG_LEVEL_NUMBERS,
  nodeInfoFromWire,
  sandboxInfoFromWire,
  sandboxLogsResponseFromWire,
  sandboxMetricsFromWire,
  sandboxPoolInfoFromWire,
  sandboxProcessLogFiltersResponseFromWire,
  snapshotInfoFromWire,
  stringList,
  stringMap,
  TERMINAL_STATUSES,
  type ArchivedSandboxInfo,
  type ArchivedSandboxPage,
  type DeleteImageResult,
  type FileSystemInfo,
  type FileSystemMount,
  type ImageInfo,
  type ImageProgressEvent,
  type NodeInfo,
  type SandboxInfo,
  type SandboxLogLevel,
  type SandboxLogSignal,
  type SandboxLogsResponse,
  type SandboxMetrics,
  type SandboxPoolInfo,
  type SandboxProcessLogFiltersResponse,
  type SnapshotInfo,
  type SnapshotType,
  type CopySandboxResponse,
} from "./models.js";
import { Sandbox } from "./sandbox.js";

export const DEFAULT_CPUS = 1.0;
export const DEFAULT_MEMORY_MB = 1024;
/** The in-sandbox agent's port; it can never be exposed as a user port. */
export const MANAGEMENT_PORT = 9501;
const CREATE_POLL_MS = 500;
const STATE_POLL_MS = 1000;
/** A snapshot still in progress once the server's wait is over is polled at growing intervals, up to this. */
const SNAPSHOT_POLL_MS = 1000;
const SNAPSHOT_FIRST_POLL_MS = 50;
/** Upper bound of the `wait_ms` sent with suspend/resume and snapshots (docs/protocol/control-plane.md). */
const MAX_WAIT_MS = 30_000;
const CREATE_GRACE_MS = 5_000;

/**
 * The `wait_ms` a waiting call asks of the server: 75 % of the client's timeout (so the answer
 * comes before the client gives up), at most `MAX_WAIT_MS`.
 */
function serverWaitMs(config: { timeoutSecs: number }): number {
  return Math.max(1, Math.min(MAX_WAIT_MS, Math.floor(config.timeoutSecs * 1000 * 0.75)));
}

/** Options of {@link SandboxClient.listArchived}; each absent one is the server's default. */
export interface ListArchivedOptions {
  /** At most this many sandboxes in the page (server default 100, at most 1000). */
  limit?: number;
  /** A `nextCursor` (direction `"forward"`) or `prevCursor` (direction `"backward"`) of an earlier page. */
  cursor?: string;
  /** `"forward"` (default): older sandboxes than the cursor's; `"backward"`: newer ones. */
  direction?: "forward" | "backward";
}

/** The query of `GET /archived-sandboxes` (docs/protocol/control-plane.md), after client-side checks. */
export function archivedQuery(options: ListArchivedOptions = {}): Record<string, string> {
  const query: Record<string, string> = {};
  const { limit, cursor, direction } = options;
  if (limit !== undefined) {
    if (!isPositiveInt(limit)) throw new RangeError(`limit must be a positive integer, got ${String(limit)}`);
    query.limit = String(limit);
  }
  if (cursor !== undefined) {
    if (typeof cursor !== "string" || !cursor) {
      throw new TypeError(`cursor must be a non-empty string (a prevCursor or nextCursor), got ${JSON.stringify(cursor)}`);
    }
    query.cursor = cursor;
  }
  if (direction !== undefined) {
    if (direction !== "forward" && direction !== "backward") {
      throw new RangeError(`direction must be "forward" or "backward", got ${JSON.stringify(direction)}`);
    }
    query.direction = direction;
  }
  return query;
}

/** Filters of {@link SandboxClient.getLogs}; each absent one filters nothing. */
export interface GetLogsOptions {
  /** Only these severities: names (`"info"`; `"warning"` is `warn`) or numbers 1 (trace) to 6 (fatal). */
  levels?: (SandboxLogLevel | string | number)[];
  /** Only these processes (`processId`s from `listLogProcesses`). */
  processIds?: string[];
  /** The `nextToken` of an earlier page. */
  nextToken?: string;
  /** Only the first n records. */
  head?: number;
  /** Only the last n records. */
  tail?: number;
  /** Only records whose text contains this. */
  body?: string;
}

/** The wire number of a log level given as a name (any case) or a number from 1 to 6. */
export function logLevelNumber(level: unknown): number {
  if (typeof level === "number" && Number.isInteger(level) && level >= 1 && level <= 6) return level;
  if (typeof level === "string") {
    const name = level.trim().toLowerCase();
    if (/^\d+$/.test(name)) return logLevelNumber(Number(name));
    const number = (LOG_LEVEL_NUMBERS as Record<string, number>)[name === "warning" ? "warn" : name];
    if (number !== undefined) return number;
  }
  const names = Object.keys(LOG_LEVEL_NUMBERS).join(", ");
  throw new RangeError(`log levels are ${names} (or their numbers 1 to 6), got ${JSON.stringify(level)}`);
}

/** The query of `GET .../logs`: `level` and `processId` repeated once per value. */
export function logsQuery(options: GetLogsOptions = {}): [string, string][] {
  const query: [string, string][] = [];
  const { levels, processIds, nextToken, head, tail, body } = options;
  if (levels !== undefined) {
    if (!Array.isArray(levels)) throw new TypeError(`levels must be a list of log levels, got ${JSON.stringify(levels)}`);
    for (const level of levels) query.push(["level", String(logLevelNumber(level))]);
  }
  if (processIds !== undefined) {
    if (!Array.isArray(processIds) || !processIds.every((id) => typeof id === "string" && id)) {
      throw new TypeError(`processIds must be a list of non-empty strings, got ${JSON.stringify(processIds)}`);
    }
    for (const id of processIds) query.push(["processId", id]);
  }
  if (nextToken !== undefined) {
    if (typeof nextToken !== "string" || !nextToken) {
      throw new TypeError(`nextToken must be a non-empty string (a nextToken of an earlier page), got ${JSON.stringify(nextToken)}`);
    }
    query.push(["nextToken", nextToken]);
  }
  if (head !== undefined && tail !== undefined) throw new TypeError("pass head or tail, not both");
  for (const [key, value] of [["head", head], ["tail", tail]] as const) {
    if (value === undefined) continue;
    if (!isPositiveInt(value)) throw new RangeError(`${key} must be a positive integer, got ${JSON.stringify(value)}`);
    query.push([key, String(value)]);
  }
  if (body !== undefined) {
    if (typeof body !== "string" || !body) throw new TypeError(`body must be a non-empty string to search for, got ${JSON.stringify(body)}`);
    query.push(["body", body]);
  }
  return query;
}

/** Options of {@link SandboxClient.create} and {@link SandboxClient.createAndConnect}. */
export interface CreateOptions {
  /** Human-readable name; required for suspend/resume. Omit it for an ephemeral sandbox. */
  name?: string;
  /** Number of CPUs (default 1.0). */
  cpus?: number;
  /** Memory in MB (default 1024). */
  memoryMb?: number;
  /** Auto-suspend (named) or auto-terminate (ephemeral) after this many seconds. */
  timeoutSecs?: number;
  /** Image name or id (default: the server's). */
  image?: string;
  /** Restore this snapshot instead of booting a fresh sandbox (image and each size are inherited unless given). */
  snapshotId?: string;
  /** Secrets to inject as environment variables. */
  secretNames?: string[];
  /** User ports to route traffic to. */
  exposePorts?: number[];
  /** Whether exposed ports accept unauthenticated traffic (default false). */
  allowUnauthenticatedAccess?: boolean;
  /** Size of the writable disk in MB (default: the server's). */
  diskMb?: number;
  /** Custom entrypoint command. */
  entrypoint?: string[];
  /**
   * Let the server pull `image` from its registry first when its store does not have it (sent
   * only when true; otherwise an unknown image is a 404).
   */
  pullImage?: boolean;
  /** Volumes mounted when it boots (docs/volumes.md). */
  fileSystems?: FileSystemMount[];
  /**
   * Alcove: run it only on a node whose labels (`alcove serve --node-label key=value`) include
   * every pair (at most 16; sent only when not empty). When no such node has room the server
   * answers 503 `RESOURCE_EXHAUSTED`.
   */
  nodeSelector?: Record<string, string>;
}

/** Options of {@link SandboxClient.getOrCreate}: those of a create (used only when it creates), and `resume`. */
export interface GetOrCreateOptions extends Omit<CreateOptions, "name"> {
  /** Resume the sandbox when it is suspended (default true); false hands it out suspended. */
  resume?: boolean;
}

/** What {@link SandboxClient.getOrCreate} did to hand out a handle. */
export type BindOutcome = "created" | "attached" | "resumed";

/** How often `getOrCreate` looks the name up again after a lost create race or a holder that ended. */
const GET_OR_CREATE_ATTEMPTS = 5;
/** The first pause of `getOrCreate` while another caller's sandbox starts or suspends; it doubles up to `CREATE_POLL_MS`. */
const BIND_POLL_FIRST_MS = 20;

/** What `onProgress` of a pull or build is: called with each event, a returned promise awaited. */
export type ImageProgressCallback = (event: ImageProgressEvent) => void | Promise<void>;

/** Options of {@link SandboxClient.pullImage}. */
export interface PullImageOptions {
  /** Store the image under this reference too (`name:tag`). */
  name?: string;
  /** Registry user name (with `password`). */
  username?: string;
  /** Registry password or token (never logged nor shown in errors). */
  password?: string;
  /** A stored secret whose value is `username:password` (instead of `username` and `password`). */
  authSecret?: string;
  /** Follow the pull: each event as it comes (`resolved`, `layer`, `done`, `error`). */
  onProgress?: ImageProgressCallback;
}

/** Options of {@link SandboxClient.buildImage}. */
export interface BuildImageOptions {
  /** Ignore the step cache (default false). */
  noCache?: boolean;
  /** Whether `RUN` steps have network (default true). */
  allowInternet?: boolean;
  /** The Dockerfile's `ARG` values. */
  buildArgs?: Record<string, string>;
  /** Follow the build: each event as it comes (`step`, `output`, `done`, `error`). */
  onProgress?: ImageProgressCallback;
}

/** Options of {@link SandboxClient.buildImageFromDockerfile}. */
export interface BuildImageFromDockerfileOptions extends BuildImageOptions {
  /** The Dockerfile's path relative to the context directory (default `Dockerfile`). */
  dockerfile?: string;
}

const DEFAULT_DOCKERFILE = "Dockerfile";
const EVENT_STREAM = { Accept: "text/event-stream" };
const TAR = { "Content-Type": "application/x-tar" };

function imageName(value: unknown, what = "name"): string {
  if (typeof value !== "string" || !value.trim() || /\s/.test(value)) {
    throw new TypeError(`${what} must be a non-empty image reference (name:tag) without whitespace, got ${JSON.stringify(value)}`);
  }
  return value;
}

function optionalText(value: unknown, what: string, secret = false): string | undefined {
  if (value === undefined || value === null) return undefined;
  if (typeof value !== "string" || !value) {
    throw new TypeError(`${what} must be a non-empty string, got ${secret ? "a value of another type" : JSON.stringify(value)}`);
  }
  return value;
}

/** The JSON body of `POST {B}/images/pull`, after client-side checks (which never show the password). */
export function pullBody(reference: string, options: Omit<PullImageOptions, "onProgress"> = {}): Record<string, unknown> {
  const body: Record<string, unknown> = { reference: imageName(reference, "reference") };
  if (options.name !== undefined) body.name = imageName(options.name);
  const username = optionalText(options.username, "username");
  const password = optionalText(options.password, "password", true);
  if ((username === undefined) !== (password === undefined)) {
    throw new TypeError("username and password go together: pass both, or neither");
  }
  const authSecret = optionalText(options.authSecret, "authSecret");
  if (authSecret !== undefined && username !== undefined) throw new TypeError("pass username and password, or authSecret, not both");
  if (username !== undefined) {
    body.username = username;
    body.password = password;
  }
  if (authSecret !== undefined) body.auth_secret = authSecret;
  return body;
}

/** The Dockerfile's path inside a build context: relative, inside it, `/`-separated. */
export function dockerfilePath(value: unknown): string {
  if (typeof value !== "string" || !value.trim()) {
    throw new TypeError(`dockerfile must be a non-empty path inside the context, got ${JSON.stringify(value)}`);
  }
  const normalized = value.split(path.sep).join("/");
  const parts = normalized.split("/").filter((part) => part !== "" && part !== ".");
  if (normalized.startsWith("/") || parts.length === 0 || parts.includes("..")) {
    throw new TypeError(`dockerfile must be a relative path inside the context, got ${JSON.stringify(value)}`);
  }
  return parts.join("/");
}

/**
 * The query of `POST {B}/images/build`: `build_arg` once per argument; `dockerfile`, `no_cache`
 * and `allow_internet` only when they are not the server's defaults.
 */
export function buildQuery(name: string, options: BuildImageFromDockerfileOptions = {}): [string, string][] {
  const query: [string, string][] = [["name", imageName(name)]];
  const dockerfile = options.dockerfile ?? DEFAULT_DOCKERFILE;
  if (dockerfile !== DEFAULT_DOCKERFILE) query.push(["dockerfile", dockerfilePath(dockerfile)]);
  const args = options.buildArgs;
  if (args !== undefined) {
    if (typeof args !== "object" || args === null || Array.isArray(args)) {
      throw new TypeError(`buildArgs must map names to values, got ${JSON.stringify(args)}`);
    }
    for (const [key, value] of Object.entries(args)) {
      if (!key || key.includes("=") || /\s/.test(key)) {
        throw new TypeError(`build argument names are non-empty, without '=' or whitespace, got ${JSON.stringify(key)}`);
      }
      if (typeof value !== "string") throw new TypeError(`build argument ${key} must be a string, got ${typeof value}`);
      query.push(["build_arg", `${key}=${value}`]);
    }
  }
  if (options.noCache) query.push(["no_cache", "true"]);
  if (options.allowInternet === false) query.push(["allow_internet", "false"]);
  return query;
}

/** Options of {@link SandboxClient.waitForResourceResize}. */
export interface WaitForResourceResizeOptions {
  /** Longest wait for the resize, in seconds (default 300). */
  timeoutSecs?: number;
  /** Seconds between two looks at the sandbox (default 1). */
  pollIntervalSecs?: number;
}

/**
 * Options of {@link SandboxClient.update}: the new limits (omitted = unchanged, at least one),
 * and whether to wait for them.
 */
export interface UpdateResourcesOptions extends WaitForResourceResizeOptions {
  cpus?: number;
  memoryMb?: number;
  /** The writable layer's size in MiB; it only grows. */
  diskMb?: number;
  /** Wait until the resize has succeeded (default `true`). */
  wait?: boolean;
}

/** Default `timeoutSecs` of a resize wait. */
export const RESIZE_TIMEOUT_SECS = 300;
/** Default `pollIntervalSecs` of a resize wait. */
export const RESIZE_POLL_INTERVAL_SECS = 1.0;

/**
 * The `resources` of a resize `PATCH`: only the dimensions given. Throws `RangeError` on a bad
 * value and `TypeError` when none is given.
 */
export function resizeBody(options: UpdateResourcesOptions): Record<string, number> {
  const body: Record<string, number> = {};
  const { cpus } = options;
  if (cpus !== undefined && cpus !== null) {
    if (typeof cpus !== "number" || !Number.isFinite(cpus) || cpus <= 0) {
      throw new RangeError(`cpus must be a positive number, got ${String(cpus)}`);
    }
    body.cpus = cpus;
  }
  for (const [key, wire] of [["memoryMb", "memory_mb"], ["diskMb", "disk_mb"]] as const) {
    const value = options[key];
    if (value === undefined || value === null) continue;
    if (!isPositiveInt(value)) throw new RangeError(`${key} must be a positive whole number of MiB, got ${String(value)}`);
    body[wire] = value;
  }
  if (Object.keys(body).length === 0) throw new TypeError("give at least one of cpus, memoryMb and diskMb");
  return body;
}

/** The checked `[timeoutSecs, pollIntervalSecs]` of a resize wait. */
function resizeWait(options: WaitForResourceResizeOptions): [number, number] {
  const timeoutSecs = options.timeoutSecs ?? RESIZE_TIMEOUT_SECS;
  const pollIntervalSecs = options.pollIntervalSecs ?? RESIZE_POLL_INTERVAL_SECS;
  if (typeof timeoutSecs !== "number" || Number.isNaN(timeoutSecs) || timeoutSecs < 0) {
    throw new RangeError(`timeoutSecs must be a non-negative number of seconds, got ${String(timeoutSecs)}`);
  }
  if (typeof pollIntervalSecs !== "number" || !Number.isFinite(pollIntervalSecs) || pollIntervalSecs <= 0) {
    throw new RangeError(`pollIntervalSecs must be a positive number of seconds, got ${String(pollIntervalSecs)}`);
  }
  return [timeoutSecs, pollIntervalSecs];
}

/** Options of {@link SandboxClient}: configuration, plus a custom `fetch`. */
export interface SandboxClientOptions extends ClientOptions {
  /** A `fetch`-compatible function to send requests with (default: the global `fetch`). */
  fetch?: FetchLike;
}

function isPositiveInt(value: unknown): value is number {
  return typeof value === "number" && Number.isInteger(value) && value > 0;
}

function nonEmpty(value: unknown, what: string): void {
  if (value !== undefined && (typeof value !== "string" || !value.trim())) {
    throw new TypeError(`${what} must be a non-empty string, got ${JSON.stringify(value)}`);
  }
}

function identifierOf(value: unknown, what = "identifier"): string {
  if (typeof value !== "string" || !value.trim()) {
    throw new TypeError(`${what} must be a non-empty string (a sandbox id or name), got ${JSON.stringify(value)}`);
  }
  return value;
}

/** Sorted, de-duplicated user ports; throws on anything else (and on the agent's port 9501). */
export function validatePorts(ports: unknown): number[] {
  if (!Array.isArray(ports)) throw new TypeError(`ports must be a list of port numbers, got ${JSON.stringify(ports)}`);
  for (const port of ports) {
    if (typeof port !== "number" || !Number.isInteger(port) || port < 1 || port > 65535) {
      throw new RangeError(`ports must be integers between 1 and 65535, got ${JSON.stringify(port)}`);
    }
    if (port === MANAGEMENT_PORT) {
      throw new RangeError(`port ${MANAGEMENT_PORT} is reserved for the sandbox agent and cannot be exposed`);
    }
  }
  return [...new Set(ports as number[])].sort((a, b) => a - b);
}

/** Most label pairs one `nodeSelector` may hold (the server's limit). */
export const MAX_NODE_SELECTOR_PAIRS = 16;

/**
 * A copy of a `nodeSelector` after the client-side checks: an object of non-empty keys and string
 * values, at most {@link MAX_NODE_SELECTOR_PAIRS} of them (the server checks their spelling).
 */
function nodeSelectorOf(value: unknown): Record<string, string> {
  if (value instanceof Map) {
    throw new TypeError("nodeSelector must be a plain object of label keys and values, got a Map");
  }
  const selector = stringMap(value, "nodeSelector");
  const keys = Object.keys(selector);
  if (keys.includes("")) throw new TypeError(`nodeSelector keys must be non-empty strings, got ${JSON.stringify(value)}`);
  if (keys.length > MAX_NODE_SELECTOR_PAIRS) {
    throw new RangeError(`nodeSelector holds at most ${MAX_NODE_SELECTOR_PAIRS} pairs, got ${keys.length}`);
  }
  return selector;
}

/** The JSON body of `POST /sandboxes` (docs/protocol/control-plane.md), after client-side checks. */
export function createBody(options: CreateOptions = {}): Record<string, unknown> {
  const cpus = options.cpus ?? DEFAULT_CPUS;
  const memoryMb = options.memoryMb ?? DEFAULT_MEMORY_MB;
  if (typeof cpus !== "number" || !Number.isFinite(cpus) || cpus <= 0) {
    throw new RangeError(`cpus must be a positive number, got ${String(cpus)}`);
  }
  if (!isPositiveInt(memoryMb)) throw new RangeError(`memoryMb must be a positive integer, got ${String(memoryMb)}`);
  if (options.diskMb !== undefined && !isPositiveInt(options.diskMb)) {
    throw new RangeError(`diskMb must be a positive integer, got ${String(options.diskMb)}`);
  }
  const timeoutSecs = options.timeoutSecs;
  if (timeoutSecs !== undefined && (typeof timeoutSecs !== "number" || !Number.isInteger(timeoutSecs) || timeoutSecs < 0)) {
    throw new RangeError(`timeoutSecs must be a non-negative integer, got ${String(timeoutSecs)}`);
  }
  nonEmpty(options.name, "name");
  nonEmpty(options.image, "image");
  nonEmpty(options.snapshotId, "snapshotId");
  const secrets = options.secretNames !== undefined ? stringList(options.secretNames, "secretNames") : [];
  const ports = options.exposePorts !== undefined ? validatePorts(options.exposePorts) : [];
  const entrypoint = options.entrypoint !== undefined ? stringList(options.entrypoint, "entrypoint") : [];
  const nodeSelector = options.nodeSelector !== undefined ? nodeSelectorOf(options.nodeSelector) : {};

  const body: Record<string, unknown> = {};
  if (options.snapshotId !== undefined) body.snapshot_id = options.snapshotId;
  // A restore inherits image and each size it is not given from the snapshot, one by one: send
  // only the sizes given, so that `cpus: 2` alone keeps the snapshot's memory.
  const resources: Record<string, unknown> = {};
  if (options.snapshotId === undefined || options.cpus !== undefined) resources.cpus = cpus;
  if (options.snapshotId === undefined || options.memoryMb !== undefined) resources.memory_mb = memoryMb;
  if (options.diskMb !== undefined) resources.disk_mb = options.diskMb;
  if (Object.keys(resources).length > 0) body.resources = resources;
  if (options.name !== undefined) body.name = options.name;
  if (options.image !== undefined) body.image = options.image;
  if (timeoutSecs !== undefined) body.timeout_secs = timeoutSecs;
  if (secrets.length > 0) body.secret_names = secrets;
  if (ports.length > 0) body.exposed_ports = ports;
  if (options.allowUnauthenticatedAccess) body.allow_unauthenticated_access = true;
  if (entrypoint.length > 0) body.entrypoint = entrypoint;
  if (options.pullImage) body.pull_image = true;
  if (options.fileSystems !== undefined && options.fileSystems.length > 0) {
    body.file_systems = options.fileSystems.map(fileSystemMountToWire);
  }
  if (Object.keys(nodeSelector).length > 0) body.node_selector = nodeSelector;
  return body;
}

/** Most idle sandboxes one pool keeps started (`warmContainers`; the server's default is 1). */
export const MAX_WARM_CONTAINERS = 64;
/** Most sandboxes one pool may have at once, idle and claimed (`maxContainers`). */
export const MAX_POOL_CONTAINERS = 1000;

/**
 * An outbound policy given to a pool or a claim (see {@link NetworkPolicy}); an absent field is
 * the server's default (internet access allowed, no allow or deny list).
 */
export interface NetworkOptions {
  /** Whether outbound traffic is allowed at all. */
  allowInternetAccess?: boolean;
  /** Destinations allowed even when internet access is off. */
  allowOut?: string[];
  /** Destinations always denied (deny wins). */
  denyOut?: string[];
}

/** Options of {@link SandboxClient.createPool} and {@link SandboxClient.updatePool}. */
export interface CreatePoolOptions {
  /** Image name or id of the pool's sandboxes (default: the server's). */
  image?: string;
  /** Number of CPUs of each sandbox (default 1.0). */
  cpus?: number;
  /** Memory of each sandbox in MB (default 1024). */
  memoryMb?: number;
  /** Size of each sandbox's writable disk in MB (default: the server's). */
  diskMb?: number;
  /** Lifetime of a claimed sandbox in seconds, counted from its claim (default 0: none). */
  timeoutSecs?: number;
  /** Entrypoint each sandbox runs from its start, before any claim. */
  entrypoint?: string[];
  /** Most sandboxes at once, idle and claimed, 1 to 1000 (default: no limit but the host's). */
  maxContainers?: number;
  /** Idle sandboxes kept started, 1 to 64 (default 1). */
  warmContainers?: number;
  /**
   * Outbound policy of the pool's sandboxes. On create, absent is the open policy; on update,
   * absent keeps the pool's current policy.
   */
  network?: NetworkOptions;
  /**
   * Alcove: start the pool's sandboxes only on nodes whose labels (`alcove serve --node-label
   * key=value`) include every pair (at most 16; checked as {@link CreateOptions.nodeSelector} is,
   * sent only when not empty). Absent or empty: any node, on update too (it replaces the pool's).
   */
  nodeSelector?: Record<string, string>;
}

/** Options of {@link SandboxClient.claim} and {@link SandboxClient.claimAndConnect}: what is bound to the sandbox. */
export interface ClaimOptions {
  /** Name of the claimed sandbox (a DNS label, unique among live sandboxes). */
  name?: string;
  /** Environment variables every process started after the claim gets. */
  env?: Record<string, string>;
  /** Secrets added as environment variables of every process started after the claim. */
  secretNames?: string[];
  /** Outbound policy, replacing the pool's. */
  network?: NetworkOptions;
  /** Volumes mounted before the sandbox is handed out (as on {@link CreateOptions.fileSystems}). */
  fileSystems?: FileSystemMount[];
}

/** The wire `network` object of a {@link NetworkOptions}, after client-side checks. */
export function networkBody(network: NetworkOptions): Record<string, unknown> {
  if (typeof network !== "object" || network === null || Array.isArray(network)) {
    throw new TypeError(`network must be an object, got ${JSON.stringify(network)}`);
  }
  const known = ["allowInternetAccess", "allowOut", "denyOut"];
  const unknown = Object.keys(network).filter((key) => !known.includes(key));
  if (unknown.length > 0) throw new TypeError(`network takes only ${known.join(", ")}, got ${unknown.join(", ")}`);
  const body: Record<string, unknown> = {};
  if (network.allowInternetAccess !== undefined) {
    if (typeof network.allowInternetAccess !== "boolean") {
      throw new TypeError(`allowInternetAccess must be a boolean, got ${JSON.stringify(network.allowInternetAccess)}`);
    }
    body.allow_internet_access = network.allowInternetAccess;
  }
  if (network.allowOut !== undefined) body.allow_out = stringList(network.allowOut, "network allowOut");
  if (network.denyOut !== undefined) body.deny_out = stringList(network.denyOut, "network denyOut");
  return body;
}

/**
 * The JSON body of `POST` and `PUT {B}/sandbox-pools[/{pool}]`, after client-side checks; an
 * absent `network` is left out, and so is a `nodeSelector` without pairs.
 */
export function poolBody(options: CreatePoolOptions = {}): Record<string, unknown> {
  const cpus = options.cpus ?? DEFAULT_CPUS;
  const memoryMb = options.memoryMb ?? DEFAULT_MEMORY_MB;
  const timeoutSecs = options.timeoutSecs ?? 0;
  if (typeof cpus !== "number" || !Number.isFinite(cpus) || cpus <= 0) {
    throw new RangeError(`cpus must be a positive number, got ${String(cpus)}`);
  }
  if (!isPositiveInt(memoryMb)) throw new RangeError(`memoryMb must be a positive integer, got ${String(memoryMb)}`);
  if (options.diskMb !== undefined && !isPositiveInt(options.diskMb)) {
    throw new RangeError(`diskMb must be a positive integer, got ${String(options.diskMb)}`);
  }
  if (typeof timeoutSecs !== "number" || !Number.isInteger(timeoutSecs) || timeoutSecs < 0) {
    throw new RangeError(`timeoutSecs must be a non-negative integer, got ${String(timeoutSecs)}`);
  }
  nonEmpty(options.image, "image");
  const { warmContainers, maxContainers } = options;
  if (warmContainers !== undefined && (!isPositiveInt(warmContainers) || warmContainers > MAX_WARM_CONTAINERS)) {
    throw new RangeError(`warmContainers must be an integer from 1 to ${MAX_WARM_CONTAINERS}, got ${String(warmContainers)}`);
  }
  if (maxContainers !== undefined && (!isPositiveInt(maxContainers) || maxContainers > MAX_POOL_CONTAINERS)) {
    throw new RangeError(`maxContainers must be an integer from 1 to ${MAX_POOL_CONTAINERS}, got ${String(maxContainers)}`);
  }
  if (maxContainers !== undefined && (warmContainers ?? 1) > maxContainers) {
    throw new RangeError(`warmContainers (${warmContainers ?? 1}) must not exceed maxContainers (${maxContainers})`);
  }
  const entrypoint = options.entrypoint !== undefined ? stringList(options.entrypoint, "entrypoint") : [];
  const nodeSelector = options.nodeSelector !== undefined ? nodeSelectorOf(options.nodeSelector) : {};

  const resources: Record<string, unknown> = { cpus, memory_mb: memoryMb };
  if (options.diskMb !== undefined) resources.disk_mb = options.diskMb;
  const body: Record<string, unknown> = { resources, timeout_secs: timeoutSecs };
  if (options.image !== undefined) body.image = options.image;
  if (entrypoint.length > 0) body.entrypoint = entrypoint;
  if (maxContainers !== undefined) body.max_containers = maxContainers;
  if (warmContainers !== undefined) body.warm_containers = warmContainers;
  if (options.network !== undefined) body.network = networkBody(options.network);
  if (Object.keys(nodeSelector).length > 0) body.node_selector = nodeSelector;
  return body;
}

/** The JSON body of a claim, `POST {B}/sandbox-pools/{pool}/sandboxes`: only what is given. */
export function claimBody(options: ClaimOptions = {}): Record<string, unknown> {
  const body: Record<string, unknown> = {};
  nonEmpty(options.name, "name");
  if (options.name !== undefined) body.name = options.name;
  const { env } = options;
  if (env !== undefined) {
    if (typeof env !== "object" || env === null || Array.isArray(env) || !Object.values(env).every((v) => typeof v === "string")) {
      throw new TypeError(`env must map variable names to string values, got ${JSON.stringify(env)}`);
    }
    if (Object.keys(env).length > 0) body.env = { ...env };
  }
  if (options.secretNames !== undefined) {
    const secrets = stringList(options.secretNames, "secretNames");
    if (secrets.length > 0) body.secret_names = secrets;
  }
  if (options.network !== undefined) body.network = networkBody(options.network);
  if (options.fileSystems !== undefined) {
    if (!Array.isArray(options.fileSystems)) {
      throw new TypeError(`fileSystems must be a list, got ${JSON.stringify(options.fileSystems)}`);
    }
    if (options.fileSystems.length > 0) body.file_systems = options.fileSystems.map(fileSystemMountToWire);
  }
  return body;
}

function poolIdOf(value: unknown): string {
  if (typeof value !== "string" || !value.trim()) {
    throw new TypeError(`poolId must be a non-empty string, got ${JSON.stringify(value)}`);
  }
  return value;
}

/**
 * A node name checked for use as a URL path segment: a non-empty string, not `.` or `..` (which a
 * URL would resolve to another route).
 */
function nodeNameOf(value: unknown): string {
  if (typeof value !== "string" || !value.trim()) {
    throw new TypeError(`name must be a non-empty node name, got ${JSON.stringify(value)}`);
  }
  if (value === "." || value === "..") {
    throw new TypeError(`name must be a node name, not a '.' or '..' path segment, got ${JSON.stringify(value)}`);
  }
  return value;
}

function describe(value: unknown): string {
  return typeof value === "string" ? value : JSON.stringify(value);
}

/** Most copies one copy request may ask for (docs/protocol/control-plane.md, Copy). */
export const MAX_COPIES = 16;

function failure(sandboxId: string, status: string, data: Record<string, unknown>): SandboxFailedError {
  const reason = (data.termination_reason || data.reason || data.pending_reason) as string | undefined;
  let message = `sandbox ${sandboxId} ${status}`;
  if (reason) message += ` (${reason})`;
  if (data.error_details !== undefined && data.error_details !== null) message += `: ${describe(data.error_details)}`;
  return new SandboxFailedError(sandboxId, status, reason || undefined, message);
}

function infoFailure(info: SandboxInfo): SandboxFailedError {
  return failure(info.sandboxId, info.status, {
    termination_reason: info.terminationReason,
    pending_reason: info.pendingReason,
    error_details: info.errorDetails,
  });
}

/**
 * Manage the sandboxes of one namespace on an Alcove server.
 *
 * Configuration comes from the options, then `ALCOVE_API_URL` (default
 * `http://localhost:8900`) and `ALCOVE_API_KEY`, read when the client is built. `timeoutSecs` is
 * the per-request timeout and also the deadline of every wait (create, suspend, resume,
 * snapshot); file transfers may take longer as long as bytes keep moving. `streamIdleTimeoutSecs`
 * (default 120) bounds the silence of command and output streams (`run`, `follow*`): the agent
 * sends a keep-alive every 15 s, so a silent command may run for hours, but a stopped or
 * unreachable agent throws {@link SandboxTimeoutError} instead of hanging (`null` waits forever).
 *
 * ```ts
 * const client = new SandboxClient();
 * await using sandbox = await client.createAndConnect();
 * console.log((await sandbox.run("echo", ["hello"])).stdout);
 * ```
 */
export class SandboxClient {
  readonly #http: HttpTransport;

  constructor(options: SandboxClientOptions = {}) {
    this.#http = new HttpTransport(resolveConfig(options), options.fetch);
  }

  get apiUrl(): string {
    return this.#http.config.apiUrl;
  }

  get namespace(): string {
    return this.#http.config.namespace;
  }

  toString(): string {
    return `SandboxClient(apiUrl=${this.apiUrl}, namespace=${this.namespace})`;
  }

  /** @internal */
  _transport(): HttpTransport {
    return this.#http;
  }

  /** Release the client. `fetch` keeps no connections of its own, so this only exists for symmetry. */
  async close(): Promise<void> {}

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }

  async #send(spec: RequestSpec): Promise<HttpResponse> {
    return this.#http.send(spec);
  }

  // -- sandboxes -------------------------------------------------------------------------------

  /**
   * Create a sandbox and wait until it is running.
   *
   * Omit `name` for an ephemeral sandbox; a named one can be suspended and resumed. Pass
   * `snapshotId` to restore a snapshot. Throws {@link SandboxNameConflictError} when the name is
   * taken, {@link SandboxFailedError} when the sandbox fails to start and
   * {@link SandboxTimeoutError} when it is not running within the client's `timeoutSecs`.
   */
  async create(options: CreateOptions = {}): Promise<SandboxInfo> {
    return this.#createAndWait(sandboxesUrl(this.#http.config), createBody(options), {});
  }

  /**
   * POST a create (or a claim) once, never replayed, then wait until the sandbox runs (polling
   * GET); `scope` adds to the error mapping.
   */
  async #createAndWait(url: string, body: Record<string, unknown>, scope: ErrorScope): Promise<SandboxInfo> {
    const config = this.#http.config;
    const deadline = Date.now() + config.timeoutSecs * 1000;
    const timeoutMs = Math.floor(config.timeoutSecs * 1000);
    const response = await this.#send({
      method: "POST",
      url,
      json: body,
      headers: {
        "x-tensorlake-request-timeout-ms": String(timeoutMs),
        "x-tensorlake-request-timeout-grace-ms": String(Math.min(CREATE_GRACE_MS, Math.floor(timeoutMs / 4))),
      },
      replayable: false,
    });
    const answer = this.#createAnswer(response, scope);
    const sandboxId = String(answer.sandbox_id ?? answer.id);
    const status = String(answer.status ?? answer.state ?? "");
    if (status === "failed" || status === "terminated") throw failure(sandboxId, status, answer);
    // A running sandbox's answer from Alcove carries its whole info (`sandbox`): no GET needed.
    if (status === "running" && typeof answer.sandbox === "object" && answer.sandbox !== null) {
      const info = sandboxInfoFromWire(answer.sandbox);
      if (info.status === "running") return info;
    }
    return this.#waitRunning(sandboxId, deadline, status !== "running");
  }

  /** The create answer; a 504 carrying the normal JSON counts as an answer, as in the official SDK. */
  #createAnswer(response: HttpResponse, scope: ErrorScope): Record<string, unknown> {
    if (response.status === 504) {
      try {
        const body = JSON.parse(responseText(response)) as Record<string, unknown>;
        if (body && typeof body === "object" && body.sandbox_id && (body.status || body.state)) return body;
      } catch {
        // not JSON: an ordinary error
      }
    }
    check(response, { create: true, ...scope });
    const body = responseJson(response, "create answer") as Record<string, unknown> | null;
    if (typeof body !== "object" || body === null || !(body.sandbox_id || body.id)) {
      throw new SandboxError("decoding create answer: missing field `sandbox_id`");
    }
    return body;
  }

  async #waitRunning(sandboxId: string, deadline: number, firstDelay: boolean): Promise<SandboxInfo> {
    if (firstDelay) await clock.sleep(CREATE_POLL_MS);
    for (;;) {
      const info = await this.get(sandboxId);
      if (info.status === "running") return info;
      if (TERMINAL_STATUSES.includes(info.status)) throw infoFailure(info);
      if (Date.now() >= deadline) {
        throw new SandboxTimeoutError(
          `sandbox ${sandboxId} is still ${info.status} after ${this.#http.config.timeoutSecs}s ` +
            "(raise the client's timeoutSecs to wait longer)",
        );
      }
      await clock.sleep(CREATE_POLL_MS);
    }
  }

  /**
   * Create a sandbox (as {@link create}) and return a handle to it. Disposing the handle
   * (`await using`) deletes the sandbox; so does {@link Sandbox.terminate}.
   */
  async createAndConnect(options: CreateOptions = {}): Promise<Sandbox> {
    return this.#ownedHandle(await this.create(options));
  }

  /** A handle that deletes the sandbox when disposed; the sandbox is deleted if none can be made. */
  async #ownedHandle(info: SandboxInfo): Promise<Sandbox> {
    try {
      return new Sandbox(this, info, true);
    } catch (error) {
      await this.delete(info.sandboxId).catch(() => undefined);
      throw error;
    }
  }

  /**
   * A handle to the one sandbox named `name`, created (as {@link create}) on first use.
   *
   * Meant for an agent session that derives its sandbox's name from its own id: where
   * {@link create} throws {@link SandboxNameConflictError}, this attaches to the holder.
   * Concurrent callers with one name all get the same sandbox; one still starting is waited for,
   * and a suspended one is resumed (`resume: false` hands it out suspended). The other options
   * are used only when the sandbox is created. The handle's {@link Sandbox.bindOutcome} says what
   * happened; it does not delete the sandbox when disposed, since the name is meant to be used
   * again:
   *
   * ```ts
   * const sandbox = await client.getOrCreate(`agent-${sessionId}`, { memoryMb: 2048 });
   * ```
   */
  async getOrCreate(name: string, options: GetOrCreateOptions = {}): Promise<Sandbox> {
    const { resume = true, ...createOptions } = options;
    const body = createBody({ ...createOptions, name });
    const deadline = Date.now() + this.#http.config.timeoutSecs * 1000;
    for (let attempt = 0; attempt < GET_OR_CREATE_ATTEMPTS; attempt++) {
      let info: SandboxInfo;
      try {
        info = await this.get(name);
      } catch (error) {
        if (!(error instanceof SandboxNotFoundError)) throw error;
        try {
          const created = await this.#createAndWait(sandboxesUrl(this.#http.config), body, {});
          return new Sandbox(this, created, false, "created");
        } catch (raced) {
          if (raced instanceof SandboxNameConflictError) continue; // lost the race: attach to the winner
          throw raced;
        }
      }
      if (info.name !== name) {
        // A sandbox's id is looked up like a name; the server refuses id-like names.
        throw new TypeError(`name ${JSON.stringify(name)} is the id of a sandbox, not a name`);
      }
      info = await this.#untilSettled(info, deadline);
      if (TERMINAL_STATUSES.includes(info.status)) continue; // it ended while we looked: the name is free again
      if (info.status === "suspended" && resume) {
        return new Sandbox(this, await this.resume(info.sandboxId), false, "resumed");
      }
      return new Sandbox(this, info, false, "attached");
    }
    throw new SandboxError(
      `the name ${JSON.stringify(name)} stayed held after ${GET_OR_CREATE_ATTEMPTS} attempts, ` +
        "but no sandbox holding it could be attached to",
    );
  }

  /** `info` once it is no longer starting or suspending, read again at growing intervals. */
  async #untilSettled(info: SandboxInfo, deadline: number): Promise<SandboxInfo> {
    let pause = BIND_POLL_FIRST_MS;
    while (info.status === "pending" || info.status === "suspending") {
      if (Date.now() >= deadline) {
        throw new SandboxTimeoutError(
          `sandbox ${info.sandboxId} is still ${info.status} after ${this.#http.config.timeoutSecs}s ` +
            "(raise the client's timeoutSecs to wait longer)",
        );
      }
      await clock.sleep(pause);
      pause = Math.min(pause * 2, CREATE_POLL_MS);
      try {
        info = await this.get(info.sandboxId);
      } catch (error) {
        if (error instanceof SandboxNotFoundError) return { ...info, status: "terminated" };
        throw error;
      }
    }
    return info;
  }

  /** A handle to an existing sandbox, by id or name (`sandboxId` is always the id). */
  async connect(identifier: string): Promise<Sandbox> {
    let info = await this.get(identifier);
    if (info.status === "pending") {
      info = await this.#waitRunning(info.sandboxId, Date.now() + this.#http.config.timeoutSecs * 1000, true);
    }
    if (TERMINAL_STATUSES.includes(info.status)) {
      throw new SandboxNotRoutableError(`sandbox ${info.sandboxId} is ${info.status} and can no longer be reached`);
    }
    return new Sandbox(this, info);
  }

  /** Describe one sandbox, by id or name. */
  async get(identifier: string): Promise<SandboxInfo> {
    const id = identifierOf(identifier);
    const response = await this.#send({ method: "GET", url: sandboxesUrl(this.#http.config, id) });
    check(response, { sandbox: id });
    return sandboxInfoFromWire(responseJson(response, "sandbox"));
  }

  /** The live sandboxes of the namespace (ended ones are in {@link SandboxClient.listArchived}). */
  async list(): Promise<SandboxInfo[]> {
    const response = await this.#send({ method: "GET", url: sandboxesUrl(this.#http.config) });
    check(response);
    return listFromWire(responseJson(response, "sandbox list"), "sandboxes", sandboxInfoFromWire, "sandbox list");
  }

  /**
   * One page of the namespace's ended sandboxes, newest first, kept by the server for its
   * `--archive-ttl`. Follow `nextCursor` (older) or `prevCursor` with `direction: "backward"` (newer).
   */
  async listArchived(options: ListArchivedOptions = {}): Promise<ArchivedSandboxPage> {
    const query = archivedQuery(options);
    const response = await this.#send({ method: "GET", url: archivedUrl(this.#http.config), query });
    check(response);
    return archivedSandboxPageFromWire(responseJson(response, "archived sandbox list"));
  }

  /**
   * One archived sandbox, by id; {@link SandboxNotFoundError} if it is unknown, still live, or
   * past the archive's retention.
   */
  async getArchived(sandboxId: string): Promise<ArchivedSandboxInfo> {
    const id = identifierOf(sandboxId, "sandboxId");
    const response = await this.#send({ method: "GET", url: archivedUrl(this.#http.config, id) });
    check(response, { sandbox: id });
    return archivedSandboxInfoFromWire(responseJson(response, "archived sandbox"));
  }

  /** Terminate a sandbox for good. */
  async delete(identifier: string): Promise<void> {
    const id = identifierOf(identifier);
    const response = await this.#send({ method: "DELETE", url: sandboxesUrl(this.#http.config, id) });
    check(response, { sandbox: id });
  }

  async #update(identifier: string, patch: Record<string, unknown>): Promise<SandboxInfo> {
    const id = identifierOf(identifier);
    const response = await this.#send({ method: "PATCH", url: sandboxesUrl(this.#http.config, id), json: patch });
    check(response, { sandbox: id });
    return sandboxInfoFromWire(responseJson(response, "sandbox"));
  }

  /** Rename a sandbox; naming an ephemeral sandbox makes it suspendable. */
  async updateSandbox(identifier: string, name: string): Promise<SandboxInfo> {
    if (typeof name !== "string" || !name.trim()) {
      throw new TypeError(`name must be a non-empty string, got ${JSON.stringify(name)}`);
    }
    return this.#update(identifier, { name });
  }

  /**
   * Resize a running sandbox live (a suspended one gets the limits when it resumes). Omitted
   * dimensions keep their value; the disk only grows. With `wait` (the default), waits up to
   * `timeoutSecs` (default 300) for the resize to succeed; otherwise returns at once, and
   * {@link waitForResourceResize} waits for `info.resourceResize.generation`.
   * Throws {@link SandboxResizeError} when the resize fails, and {@link RemoteAPIError} when the
   * server refuses it (400 for bad values, 409 for memory below what it uses).
   *
   * ```ts
   * const info = await client.update(id, { cpus: 2, memoryMb: 2048 });
   * ```
   */
  async update(identifier: string, options: UpdateResourcesOptions): Promise<SandboxInfo> {
    const body = resizeBody(options ?? {});
    const wait = resizeWait(options);
    const info = await this.#update(identifier, { resources: body });
    if (info.resourceResize === null) {
      throw new SandboxResizeError(
        info.sandboxId,
        0,
        "incompatible_response",
        "the server answered without resource_resize",
        info,
      );
    }
    if (options.wait === false) return info;
    return this.#waitForResize(identifier, info.resourceResize.generation, wait, info);
  }

  /**
   * Wait for resize `generation` of a sandbox to succeed, without asking for another; throws
   * {@link SandboxResizeError} when it failed, was superseded, or is pending at `timeoutSecs`
   * (default 300).
   */
  async waitForResourceResize(
    identifier: string,
    generation: number,
    options: WaitForResourceResizeOptions = {},
  ): Promise<SandboxInfo> {
    if (typeof generation !== "number" || !Number.isInteger(generation) || generation < 1) {
      throw new RangeError(`generation must be a positive integer, got ${String(generation)}`);
    }
    return this.#waitForResize(identifier, generation, resizeWait(options), null);
  }

  async #waitForResize(
    identifier: string,
    generation: number,
    [timeoutSecs, pollIntervalSecs]: [number, number],
    seen: SandboxInfo | null,
  ): Promise<SandboxInfo> {
    const deadline = Date.now() + timeoutSecs * 1000;
    let info = seen ?? (await this.get(identifier));
    for (;;) {
      const resize = info.resourceResize;
      if (resize === null || resize.generation < generation) {
        throw new SandboxResizeError(
          info.sandboxId,
          generation,
          "incompatible_response",
          "the server does not know this resize",
          info,
        );
      }
      if (resize.generation > generation) {
        throw new SandboxResizeError(
          info.sandboxId,
          generation,
          "superseded",
          `generation ${resize.generation} replaced it`,
          info,
        );
      }
      if (resize.status === "succeeded") return info;
      if (resize.status === "failed") {
        throw new SandboxResizeError(
          info.sandboxId,
          generation,
          "failed",
          resize.errorMessage || "the resize failed",
          info,
        );
      }
      if (Date.now() >= deadline) {
        throw new SandboxResizeError(
          info.sandboxId,
          generation,
          "timeout",
          `still ${resize.status} after ${timeoutSecs}s`,
          info,
        );
      }
      await clock.sleep(pollIntervalSecs * 1000);
      info = await this.get(identifier);
    }
  }

  /** Suspend a named sandbox and wait until it is `suspended`. */
  suspend(identifier: string): Promise<SandboxInfo> {
    return this.#transition(identifier, "suspend");
  }

  /** Resume a suspended sandbox and wait until it is `running`. */
  resume(identifier: string): Promise<SandboxInfo> {
    return this.#transition(identifier, "resume");
  }

  /** Suspend or resume (docs/protocol/control-plane.md): 200 = done, other 2xx = poll GET, 409 = re-check. */
  async #transition(identifier: string, verb: "suspend" | "resume"): Promise<SandboxInfo> {
    const id = identifierOf(identifier);
    const config = this.#http.config;
    const target = verb === "suspend" ? "suspended" : "running";
    const deadline = Date.now() + config.timeoutSecs * 1000;
    const waitMs = serverWaitMs(config);
    const response = await this.#send({
      method: "POST",
      url: sandboxesUrl(config, id, `/${verb}`),
      query: { wait_ms: String(waitMs) },
    });
    if (response.status === 409) {
      const info = await this.get(id);
      if (info.status === target) return info;
      throw errorFromResponse(409, responseText(response), { sandbox: id });
    }
    check(response, { sandbox: id });
    for (;;) {
      const info = await this.get(id);
      if (info.status === target) return info;
      if (TERMINAL_STATUSES.includes(info.status)) throw infoFailure(info);
      if (Date.now() >= deadline) {
        throw new SandboxTimeoutError(
          `${verb} of sandbox ${id}: still ${info.status} after ${config.timeoutSecs}s ` +
            "(raise the client's timeoutSecs to wait longer)",
        );
      }
      await clock.sleep(STATE_POLL_MS);
    }
  }

  /**
   * A URL, valid for an hour, at which a browser sees and drives the sandbox's desktop (noVNC
   * over the sandbox's TCP tunnel to its VNC server on `port`, default 5901). Append
   * `#password=<vnc password>` to skip the password prompt.
   */
  async desktopUrl(identifier: string, options: { port?: number } = {}): Promise<string> {
    const id = identifierOf(identifier);
    const body: Record<string, unknown> = {};
    if (options.port !== undefined) {
      const port = options.port;
      if (!Number.isInteger(port) || port < 1 || port > 65535) {
        throw new RangeError(`port must be an integer between 1 and 65535, got ${String(port)}`);
      }
      body.port = port;
    }
    const response = await this.#send({ method: "POST", url: sandboxesUrl(this.#http.config, id, "/desktop"), json: body });
    check(response, { sandbox: id });
    const data = responseJson(response, "desktop URL") as { url?: unknown } | null;
    if (!data || typeof data.url !== "string") {
      throw new SandboxError("the server answered a desktop URL without a url");
    }
    return data.url;
  }

  /** What a running sandbox uses now against its limits: CPU time, memory, tasks and disk. */
  async metrics(identifier: string): Promise<SandboxMetrics> {
    const id = identifierOf(identifier);
    const response = await this.#send({ method: "GET", url: sandboxesUrl(this.#http.config, id, "/metrics") });
    check(response, { sandbox: id });
    return sandboxMetricsFromWire(responseJson(response, "sandbox metrics"));
  }

  /**
   * Copy a running sandbox `times` ways (1 to 16): one memory dump of it, which keeps running,
   * restored into new sandboxes with its processes, memory and files, each with its own id and
   * address (and no name). Waits until every copy runs or failed; failed copies are in the answer
   * with `status` `failed` and a `reason` (see {@link copyAndConnect} for handles). A sandbox
   * that is not running is a {@link RemoteAPIError} (409).
   */
  async copy(identifier: string, options: { times?: number } = {}): Promise<CopySandboxResponse> {
    const id = identifierOf(identifier);
    const times = options.times ?? 1;
    if (!Number.isInteger(times) || times < 1 || times > MAX_COPIES) {
      throw new TypeError(`times must be an integer from 1 to ${MAX_COPIES}, got ${JSON.stringify(times)}`);
    }
    const response = await this.#send({
      method: "POST",
      url: sandboxesUrl(this.#http.config, id, "/copy"),
      query: { times: String(times) },
      body: new Uint8Array(),
      replayable: false,
    });
    // 422 (some copies failed) and, from the official service, 504 list what was made.
    if (response.status === 422 || response.status === 504) {
      let body: unknown;
      try {
        body = responseJson(response, "copy answer");
      } catch {
        body = undefined;
      }
      if (typeof body === "object" && body !== null && "sandboxes" in body) {
        return copySandboxResponseFromWire(body);
      }
    }
    check(response, { sandbox: id });
    return copySandboxResponseFromWire(responseJson(response, "copy answer"));
  }

  /**
   * Copy as {@link copy} does and return handles to the copies, which delete their sandbox on
   * `[Symbol.asyncDispose]`. All or nothing: when any copy failed, the ones that run are deleted
   * and a {@link SandboxCopyError} carrying the answer is thrown.
   */
  async copyAndConnect(identifier: string, options: { times?: number } = {}): Promise<Sandbox[]> {
    const result = await this.copy(identifier, options);
    const failed = result.sandboxes.filter((c) => c.status !== "running");
    if (failed.length > 0) {
      for (const made of result.sandboxes) {
        if (made.status === "running") await this.delete(made.sandboxId).catch(() => undefined);
      }
      const reasons = failed.map((c) => `${c.sandboxId}: ${c.reason ?? c.status}`).join("; ");
      throw new SandboxCopyError(
        result.sourceSandboxId,
        result,
        `${failed.length} of ${result.sandboxes.length} copies of sandbox ${identifier} failed: ${reasons}`,
      );
    }
    const handles: Sandbox[] = [];
    for (const made of result.sandboxes) {
      const info = await this.get(made.sandboxId);
      handles.push(new Sandbox(this, info, true));
    }
    return handles;
  }

  /**
   * Route traffic to user ports of the sandbox (added to those already exposed). Whether exposed
   * ports accept unauthenticated traffic stays as it is unless `allowUnauthenticatedAccess` is given.
   */
  async exposePorts(
    identifier: string,
    ports: number[],
    options: { allowUnauthenticatedAccess?: boolean } = {},
  ): Promise<SandboxInfo> {
    const wanted = validatePorts(ports);
    const current = await this.get(identifier);
    const patch: Record<string, unknown> = { exposed_ports: validatePorts([...current.exposedPorts, ...wanted]) };
    if (options.allowUnauthenticatedAccess !== undefined) {
      patch.allow_unauthenticated_access = Boolean(options.allowUnauthenticatedAccess);
    }
    return this.#update(identifier, patch);
  }

  /** Stop routing traffic to the given user ports. */
  async unexposePorts(identifier: string, ports: number[]): Promise<SandboxInfo> {
    const unwanted = new Set(validatePorts(ports));
    const current = await this.get(identifier);
    const remaining = current.exposedPorts.filter((port) => !unwanted.has(port)).sort((a, b) => a - b);
    return this.#update(identifier, {
      allow_unauthenticated_access: remaining.length > 0 ? current.allowUnauthenticatedAccess : false,
      exposed_ports: remaining,
    });
  }

  // -- pools -----------------------------------------------------------------------------------

  /**
   * Create a warm pool and return it (read back, with its `containers`).
   *
   * The server starts `warmContainers` (1 to 64, default 1) idle sandboxes of this configuration
   * in the background and keeps that many started as claims take them, never more than
   * `maxContainers` (1 to 1000, idle and claimed; absent: no limit but the host's). Idle sandboxes
   * are invisible to {@link list}; {@link claim} hands one out. `nodeSelector` (an Alcove
   * extension, as on {@link create}) starts them only on nodes with those labels. Throws
   * `TypeError` / `RangeError` on bad options, {@link ImageNotFoundError} when the server has no
   * such image and {@link RemoteAPIError} (400 `INVALID_ARGUMENT`) when it refuses the
   * configuration.
   */
  async createPool(options: CreatePoolOptions = {}): Promise<SandboxPoolInfo> {
    const body = poolBody(options);
    const config = this.#http.config;
    const response = await this.#send({ method: "POST", url: poolsUrl(config), json: body, replayable: false });
    check(response, { image: true });
    const answer = responseJson(response, "create pool answer") as Record<string, unknown> | null;
    const poolId = answer && typeof answer === "object" ? answer.pool_id : undefined;
    if (typeof poolId !== "string" || !poolId) throw new SandboxError("decoding create pool answer: missing field `pool_id`");
    return this.getPool(poolId);
  }

  /**
   * Describe one pool, with its `containers`: idle sandboxes (`Idle`) and claimed ones that have
   * not ended (`Running`). Throws {@link PoolNotFoundError}.
   */
  async getPool(poolId: string): Promise<SandboxPoolInfo> {
    const id = poolIdOf(poolId);
    const response = await this.#send({ method: "GET", url: poolsUrl(this.#http.config, id) });
    check(response, { pool: true });
    return sandboxPoolInfoFromWire(responseJson(response, "pool"));
  }

  /** The namespace's pools, oldest first (without `containers`). */
  async listPools(): Promise<SandboxPoolInfo[]> {
    const response = await this.#send({ method: "GET", url: poolsUrl(this.#http.config) });
    check(response);
    return listFromWire(responseJson(response, "pool list"), "pools", sandboxPoolInfoFromWire, "pool list");
  }

  /**
   * Replace a pool's configuration (the server's `PUT`): every option means what it means to
   * {@link createPool}, and one left out takes its default, not the pool's current value, except
   * `network`, which absent keeps (pass `{}` to open it); an absent `nodeSelector` is none (any
   * node), not the pool's (pass `pool.nodeSelector` to keep it). Idle sandboxes made from the old
   * configuration are ended and replaced in the background; claimed ones are not touched.
   * Returns the pool as changed (without `containers`). Throws {@link PoolNotFoundError},
   * {@link ImageNotFoundError} and {@link RemoteAPIError} (400) as {@link createPool} does.
   */
  async updatePool(poolId: string, options: CreatePoolOptions = {}): Promise<SandboxPoolInfo> {
    const id = poolIdOf(poolId);
    const body = poolBody(options);
    const response = await this.#send({ method: "PUT", url: poolsUrl(this.#http.config, id), json: body });
    check(response, { pool: true });
    return sandboxPoolInfoFromWire(responseJson(response, "pool"));
  }

  /**
   * Delete a pool and end its idle sandboxes. Throws {@link PoolInUseError} while sandboxes
   * claimed from it have not ended (delete them first), and {@link PoolNotFoundError}.
   */
  async deletePool(poolId: string): Promise<void> {
    const id = poolIdOf(poolId);
    const response = await this.#send({ method: "DELETE", url: poolsUrl(this.#http.config, id) });
    check(response, { pool: true });
  }

  /**
   * Take a running sandbox from the pool, with `name`, `env`, the secrets and `network`
   * (replacing the pool's policy) bound to it first; `env` and the secrets reach every process
   * started after the claim, and the pool's `timeoutSecs` counts from now.
   *
   * Takes an idle sandbox when the pool has one, else starts one (waiting as {@link create}
   * does). The claimed sandbox is an ordinary one (in {@link list}, with `poolId` set): delete it
   * when done. Throws {@link PoolNotFoundError}, {@link PoolAtCapacityError} (no idle sandbox and
   * `maxContainers` reached), {@link SandboxNameConflictError}, {@link RemoteAPIError} (400: a bad
   * name, variable, network policy or mount path, an unknown secret; 404: an unknown volume; 409
   * `FILE_SYSTEM_IN_USE`: a volume mounted read-write elsewhere), and {@link SandboxFailedError} /
   * {@link SandboxTimeoutError} when a sandbox it had to start fails or is late.
   */
  async claim(poolId: string, options: ClaimOptions = {}): Promise<SandboxInfo> {
    const id = poolIdOf(poolId);
    const body = claimBody(options);
    return this.#createAndWait(poolsUrl(this.#http.config, id, "/sandboxes"), body, { pool: true });
  }

  /**
   * Claim a sandbox of the pool (as {@link claim}) and return a handle to it. Disposing the
   * handle (`await using`) deletes the sandbox; so does {@link Sandbox.terminate}.
   */
  async claimAndConnect(poolId: string, options: ClaimOptions = {}): Promise<Sandbox> {
    return this.#ownedHandle(await this.claim(poolId, options));
  }

  // -- nodes (server-wide) ---------------------------------------------------------------------

  /**
   * Every node (Alcove server) registered in the server's store, by name, with its state
   * (`active`, `draining`, or `offline` once its lease ran out), capacity and use. Nodes are
   * server-wide (`{apiUrl}/nodes`): the client's namespace plays no part.
   */
  async listNodes(): Promise<NodeInfo[]> {
    const response = await this.#send({ method: "GET", url: nodesUrl(this.#http.config) });
    check(response);
    return listFromWire(responseJson(response, "node list"), "nodes", nodeInfoFromWire, "node list");
  }

  /**
   * Take a node out of service and return it (`draining`): it starts and resumes no sandboxes
   * (creates, restores, copies and resumes there throw {@link RemoteAPIError} 503
   * `NODE_DRAINING`), its pools stop refilling, and it suspends its named running sandboxes. The
   * state outlives restarts of the node until {@link activateNode}. Throws {@link RemoteAPIError}
   * 404 when there is no such node.
   */
  async drainNode(name: string): Promise<NodeInfo> {
    return this.#setNodeState(name, "drain");
  }

  /**
   * Put a drained node back in service and return it (`active`); sandboxes the drain suspended
   * stay suspended until resumed. Throws {@link RemoteAPIError} 404 when there is no such node.
   */
  async activateNode(name: string): Promise<NodeInfo> {
    return this.#setNodeState(name, "activate");
  }

  async #setNodeState(name: string, verb: "drain" | "activate"): Promise<NodeInfo> {
    const node = nodeNameOf(name);
    const response = await this.#send({ method: "POST", url: nodesUrl(this.#http.config, node, `/${verb}`) });
    check(response);
    return nodeInfoFromWire(responseJson(response, "node"));
  }

  // -- logs ------------------------------------------------------------------------------------

  /**
   * One page of a sandbox's persisted logs: its processes' output lines and events (a process
   * started, exited, was restarted, …), oldest first; kept after the sandbox ended. Filter with
   * `levels`, `processIds` (from {@link listLogProcesses}), `body` (text contained), `head` /
   * `tail` (the first / last n). Pass `nextToken` back for the next page (`null` at the end);
   * {@link iterLogs} does that for you. Always addressed in the client's namespace.
   */
  async getLogs(sandboxId: string, options: GetLogsOptions = {}): Promise<SandboxLogsResponse> {
    const id = identifierOf(sandboxId, "sandboxId");
    const query = logsQuery(options);
    const response = await this.#send({ method: "GET", url: sandboxesUrl(this.#http.config, id, "/logs"), query });
    check(response, { sandbox: id });
    return sandboxLogsResponseFromWire(responseJson(response, "sandbox logs"));
  }

  /** Every record of a sandbox's persisted logs that passes the filters (as in {@link getLogs}), following `nextToken` page after page. */
  async *iterLogs(
    sandboxId: string,
    options: Pick<GetLogsOptions, "levels" | "processIds" | "body"> = {},
  ): AsyncGenerator<SandboxLogSignal, void, undefined> {
    const seen = new Set<string>();
    let nextToken: string | undefined;
    for (;;) {
      const { levels, processIds, body } = options;
      const page = await this.getLogs(sandboxId, { levels, processIds, body, nextToken });
      yield* page.logs;
      if (!page.nextToken || seen.has(page.nextToken) || page.logs.length === 0) return;
      seen.add(page.nextToken);
      nextToken = page.nextToken;
    }
  }

  /** The processes that have records in a sandbox's persisted logs (their `processId`s filter {@link getLogs}). */
  async listLogProcesses(sandboxId: string): Promise<SandboxProcessLogFiltersResponse> {
    const id = identifierOf(sandboxId, "sandboxId");
    const response = await this.#send({ method: "GET", url: sandboxesUrl(this.#http.config, id, "/processes") });
    check(response, { sandbox: id });
    return sandboxProcessLogFiltersResponseFromWire(responseJson(response, "sandbox log processes"));
  }

  // -- file systems (persistent volumes) -------------------------------------------------------

  /** Create a persistent volume of `sizeMb` MiB (docs/volumes.md). */
  async createFileSystem(name: string, sizeMb: number): Promise<FileSystemInfo> {
    const id = identifierOf(name, "name");
    if (typeof sizeMb !== "number" || !Number.isInteger(sizeMb) || sizeMb <= 0) {
      throw new RangeError(`sizeMb must be a positive integer, got ${String(sizeMb)}`);
    }
    const response = await this.#send({
      method: "POST",
      url: `${namespaceUrl(this.#http.config)}/file-systems`,
      json: { name: id, size_mb: sizeMb },
      replayable: false,
    });
    check(response);
    return fileSystemInfoFromWire(responseJson(response, "file system"));
  }

  /** The namespace's volumes, with where each is mounted. */
  async listFileSystems(): Promise<FileSystemInfo[]> {
    const response = await this.#send({ method: "GET", url: `${namespaceUrl(this.#http.config)}/file-systems` });
    check(response);
    return listFromWire(responseJson(response, "file system list"), "file_systems", fileSystemInfoFromWire, "file system list");
  }

  /** One volume (404 `RemoteAPIError` if there is none of that name). */
  async getFileSystem(name: string): Promise<FileSystemInfo> {
    const id = identifierOf(name, "name");
    const response = await this.#send({
      method: "GET",
      url: `${namespaceUrl(this.#http.config)}/file-systems/${encodeURIComponent(id)}`,
    });
    check(response);
    return fileSystemInfoFromWire(responseJson(response, "file system"));
  }

  /** Delete a volume and its data (409 while a sandbox has it mounted). */
  async deleteFileSystem(name: string): Promise<void> {
    const id = identifierOf(name, "name");
    const response = await this.#send({
      method: "DELETE",
      url: `${namespaceUrl(this.#http.config)}/file-systems/${encodeURIComponent(id)}`,
    });
    check(response);
  }

  /** Mount a volume into a running sandbox, live (409 when it is held in a way that excludes it). */
  async attachFileSystem(identifier: string, mount: FileSystemMount): Promise<SandboxInfo> {
    const id = identifierOf(identifier);
    const response = await this.#send({
      method: "POST",
      url: sandboxesUrl(this.#http.config, id, "/file_systems"),
      json: fileSystemMountToWire(mount),
      replayable: false,
    });
    // Not scoped to the sandbox: a 404 may name the volume.
    check(response);
    return sandboxInfoFromWire(responseJson(response, "sandbox"));
  }

  /** Unmount the volume at `mountPath` from a running sandbox (409 while files on it are in use). */
  async detachFileSystem(identifier: string, mountPath: string): Promise<SandboxInfo> {
    const id = identifierOf(identifier);
    if (typeof mountPath !== "string" || !mountPath.startsWith("/")) {
      throw new TypeError(`mountPath must be an absolute path, got ${JSON.stringify(mountPath)}`);
    }
    const response = await this.#send({
      method: "DELETE",
      url: sandboxesUrl(this.#http.config, id, "/file_systems"),
      json: { mount_path: mountPath },
      replayable: false,
    });
    check(response);
    return sandboxInfoFromWire(responseJson(response, "sandbox"));
  }

  // -- snapshots -------------------------------------------------------------------------------

  /** Start a snapshot of the sandbox without waiting for it (usually `in_progress`). */
  async snapshot(identifier: string, options: { snapshotType?: SnapshotType } = {}): Promise<SnapshotInfo> {
    return this.#startSnapshot(identifier, options, 0);
  }

  /** Start a snapshot; the server waits up to `waitMs` for it to end before it answers. */
  async #startSnapshot(
    identifier: string,
    options: { snapshotType?: SnapshotType },
    waitMs: number,
  ): Promise<SnapshotInfo> {
    const id = identifierOf(identifier);
    const type = options.snapshotType;
    if (type !== undefined && type !== "memory" && type !== "filesystem") {
      throw new TypeError(`snapshotType must be 'memory' or 'filesystem', got ${JSON.stringify(type)}`);
    }
    const spec: RequestSpec = {
      method: "POST",
      url: sandboxesUrl(this.#http.config, id, "/snapshot"),
      query: { wait_ms: String(waitMs) },
      replayable: false,
    };
    if (type !== undefined) spec.json = { snapshot_type: type };
    const response = await this.#send(spec);
    check(response, { sandbox: id });
    let body = responseJson(response, "snapshot answer");
    if (typeof body === "object" && body !== null && !(body as Record<string, unknown>).sandbox_id) {
      body = { ...body, sandbox_id: id };
    }
    return snapshotInfoFromWire(body, "snapshot answer");
  }

  /** Snapshot the sandbox and wait until the snapshot is usable (`local_ready` / `completed`). */
  async snapshotAndWait(identifier: string, options: { snapshotType?: SnapshotType } = {}): Promise<SnapshotInfo> {
    const config = this.#http.config;
    const deadline = Date.now() + config.timeoutSecs * 1000;
    const waitMs = serverWaitMs(config);
    const started = await this.#startSnapshot(identifier, options, waitMs);
    // Ended within the server's wait: its whole record (size, error) is one read away.
    let snapshot = started.status === "in_progress" ? started : await this.getSnapshot(started.snapshotId);
    let pollMs = SNAPSHOT_FIRST_POLL_MS;
    for (;;) {
      if (snapshot.status === "completed" || snapshot.status === "local_ready") return snapshot;
      if (snapshot.status === "failed" || snapshot.status === "deleting") {
        const detail = snapshot.error ? `: ${snapshot.error}` : "";
        throw new SandboxError(`snapshot ${snapshot.snapshotId} of sandbox ${identifier} ${snapshot.status}${detail}`);
      }
      if (Date.now() >= deadline) {
        throw new SandboxTimeoutError(
          `snapshot ${snapshot.snapshotId} is still ${snapshot.status} after ${config.timeoutSecs}s ` +
            "(raise the client's timeoutSecs to wait longer)",
        );
      }
      await clock.sleep(pollMs);
      pollMs = Math.min(pollMs * 2, SNAPSHOT_POLL_MS);
      snapshot = await this.getSnapshot(started.snapshotId);
    }
  }

  /** Every snapshot of the namespace. */
  async listSnapshots(): Promise<SnapshotInfo[]> {
    const response = await this.#send({ method: "GET", url: snapshotsUrl(this.#http.config) });
    check(response);
    return listFromWire(responseJson(response, "snapshot list"), "snapshots", snapshotInfoFromWire, "snapshot list");
  }

  /** Describe one snapshot. */
  async getSnapshot(snapshotId: string): Promise<SnapshotInfo> {
    const id = identifierOf(snapshotId, "snapshotId");
    const response = await this.#send({ method: "GET", url: snapshotsUrl(this.#http.config, id) });
    check(response, { snapshot: true });
    return snapshotInfoFromWire(responseJson(response, "snapshot"));
  }

  /** Delete a snapshot. */
  async deleteSnapshot(snapshotId: string): Promise<void> {
    const id = identifierOf(snapshotId, "snapshotId");
    const response = await this.#send({ method: "DELETE", url: snapshotsUrl(this.#http.config, id) });
    check(response, { snapshot: true });
  }

  /**
   * Store a snapshot's filesystem as the image `name` (`name:tag`), to create sandboxes from
   * (`create({ image: name })`). {@link SnapshotNotFoundError} if the snapshot is unknown.
   */
  async saveSnapshotAsImage(snapshotId: string, name: string): Promise<ImageInfo> {
    const id = identifierOf(snapshotId, "snapshotId");
    const body = { name: imageName(name) };
    const url = `${snapshotsUrl(this.#http.config, id)}/image`;
    const response = await this.#send({ method: "POST", url, json: body, replayable: false });
    check(response, { snapshot: true, image: true });
    return imageInfoFromWire(responseJson(response, "snapshot image"), "snapshot image");
  }

  // -- images ----------------------------------------------------------------------------------

  /** Every image of the server's store (images are server-wide), newest first. */
  async listImages(): Promise<ImageInfo[]> {
    const response = await this.#send({ method: "GET", url: imagesUrl(this.#http.config) });
    check(response, { image: true });
    return listFromWire(responseJson(response, "image list"), "images", imageInfoFromWire, "image list");
  }

  /**
   * Describe one image, by reference (`alcove/debian`, `registry:5000/tools/jq:1`,
   * `name@sha256:…`) or id (`sha256:…`, or 12 or more of its hex digits); `usedBy` lists the
   * sandboxes and snapshots that use it. {@link ImageNotFoundError} if unknown.
   */
  async getImage(ref: string): Promise<ImageInfo> {
    const response = await this.#send({ method: "GET", url: imagesUrl(this.#http.config, ref) });
    check(response, { image: true });
    return imageInfoFromWire(responseJson(response, "image"));
  }

  /**
   * Delete an image (by reference or id): {@link ImageInUseError} while a sandbox or snapshot
   * uses it, {@link ImageNotFoundError} if unknown.
   */
  async deleteImage(ref: string): Promise<DeleteImageResult> {
    const response = await this.#send({ method: "DELETE", url: imagesUrl(this.#http.config, ref) });
    check(response, { image: true });
    return deleteImageResultFromWire(responseJson(response, "image deletion"));
  }

  /**
   * Pull an image from a registry into the server's store (`registry/repository:tag` or
   * `…@sha256:…`); `name` stores it under that reference too.
   *
   * Credentials: `username` with `password` (a password or token, never logged nor shown in
   * errors), or `authSecret`, a stored secret whose value is `username:password`. Without
   * `onProgress` the call returns when the image is stored, waiting at most the client's
   * `timeoutSecs` for the answer; with it, the server streams its progress, each event is passed
   * to `onProgress` as it comes (a returned promise is awaited), and only silence longer than
   * `streamIdleTimeoutSecs` fails the wait.
   *
   * Throws {@link ImageNotFoundError} (unknown reference), {@link RegistryAuthenticationError}
   * (credentials refused), {@link RegistryError} (registry unreachable or failing), each with the
   * server's `code` and message, also when they arrive as an `error` event.
   */
  async pullImage(reference: string, options: PullImageOptions = {}): Promise<ImageInfo> {
    const { onProgress, ...rest } = options;
    const body = pullBody(reference, rest);
    const url = imagesUrl(this.#http.config, undefined, "/pull");
    if (onProgress === undefined) {
      const response = await this.#send({ method: "POST", url, json: body, replayable: false });
      check(response, { image: true });
      return imageInfoFromWire(responseJson(response, "pulled image"), "pulled image");
    }
    const response = await this.#send({
      method: "POST",
      url,
      json: body,
      headers: EVENT_STREAM,
      stream: true,
      events: true,
      replayable: false,
    });
    check(response, { image: true });
    return this.#followImage(response, onProgress, "pull");
  }

  /**
   * Import an image archive from a local file: a `docker save` archive or an OCI layout tarball,
   * optionally gzipped. The file is streamed, never read into memory; `name` (`name:tag`) names
   * the image when the archive names none (or names it once more).
   */
  async importImage(archivePath: string, name?: string): Promise<ImageInfo> {
    const query: Record<string, string> = {};
    if (name !== undefined) query.name = imageName(name);
    const body = await fileStream(archivePath);
    const url = imagesUrl(this.#http.config, undefined, "/import");
    const response = await this.#send({ method: "POST", url, query, body, headers: TAR, replayable: false });
    check(response, { image: true });
    return imageInfoFromWire(responseJson(response, "imported image"), "imported image");
  }

  /**
   * Build an {@link Image} on the server and store it under `image.name`.
   *
   * The build context (the generated Dockerfile and the `copy` sources, read now: a missing one
   * throws) is written to a temporary file and streamed. `noCache` ignores the step cache;
   * `allowInternet: false` runs the `RUN` steps without network; `buildArgs` are the
   * Dockerfile's `ARG` values. `onProgress` follows the build as in {@link pullImage} (events
   * `step`, `output`, `done`, `error`). A failing step throws {@link ImageBuildError} (`code`
   * `BUILD_FAILED`) whose message has the step's exit code and output.
   */
  async buildImage(image: Image, options: BuildImageOptions = {}): Promise<ImageInfo> {
    if (!(image instanceof Image)) throw new TypeError(`buildImage takes an Image, got ${JSON.stringify(image)}`);
    const query = buildQuery(image.name, { ...options, dockerfile: DEFAULT_DOCKERFILE });
    const context = await contextFile((tar) => image.writeContext(tar));
    return this.#build(context, query, options.onProgress);
  }

  /**
   * Build the image `name` (`name:tag`) from a local directory and the Dockerfile in it
   * (`dockerfile`, a path relative to the directory).
   *
   * The directory is sent as a tar written to a temporary file and streamed: what its
   * `.dockerignore` lists is left out (one glob per line, `!` re-includes), and symbolic links
   * are stored as links, never followed. The options are those of {@link buildImage}.
   */
  async buildImageFromDockerfile(contextDir: string, name: string, options: BuildImageFromDockerfileOptions = {}): Promise<ImageInfo> {
    const stat = await fs.stat(contextDir);
    if (!stat.isDirectory()) throw new TypeError(`the build context ${JSON.stringify(contextDir)} is not a directory`);
    const dockerfile = dockerfilePath(options.dockerfile ?? DEFAULT_DOCKERFILE);
    const found = await fs.stat(path.join(contextDir, ...dockerfile.split("/"))).catch(() => null);
    if (!found?.isFile()) {
      throw new Error(`the build context ${JSON.stringify(contextDir)} has no Dockerfile ${JSON.stringify(dockerfile)}`);
    }
    const query = buildQuery(name, { ...options, dockerfile });
    const context = await contextFile((tar) => writeDirectoryContext(tar, contextDir, dockerfile));
    return this.#build(context, query, options.onProgress);
  }

  async #build(context: ContextFile, query: [string, string][], onProgress: ImageProgressCallback | undefined): Promise<ImageInfo> {
    try {
      const url = imagesUrl(this.#http.config, undefined, "/build");
      const body = await fileStream(context.path);
      if (onProgress === undefined) {
        const response = await this.#send({ method: "POST", url, query, body, headers: TAR, replayable: false });
        check(response, { image: true });
        return imageInfoFromWire(responseJson(response, "built image"), "built image");
      }
      const headers = { ...TAR, ...EVENT_STREAM };
      const response = await this.#send({ method: "POST", url, query, body, headers, stream: true, events: true, replayable: false });
      check(response, { image: true });
      return await this.#followImage(response, onProgress, "build");
    } finally {
      await context.remove();
    }
  }

  /** Pass the events of a pull's or build's event stream to `onProgress`; its result. */
  async #followImage(response: HttpResponse, onProgress: ImageProgressCallback, what: string): Promise<ImageInfo> {
    const contentType = response.headers.get("content-type") ?? "";
    if (!contentType.toLowerCase().startsWith("text/event-stream")) {
      await response.stream?.cancel().catch(() => undefined);
      throw new SandboxError(`expected an event stream from ${new URL(response.url).pathname}, got content-type ${JSON.stringify(contentType)}`);
    }
    const progress = new ImageProgressCollector(what);
    // Leaving the loop early (finished, or onProgress threw) cancels the response.
    for await (const chunk of readChunks(response)) {
      for (const event of progress.feed(chunk)) await onProgress(event);
      if (progress.finished) break;
    }
    for (const event of progress.close()) await onProgress(event);
    return progress.result();
  }
}

