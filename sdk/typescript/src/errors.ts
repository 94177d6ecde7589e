/**
 * Errors thrown by the Alcove SDK.
 *
 * Every error the SDK throws on purpose derives from {@link SandboxException}, so one
 * `instanceof SandboxException` check catches them all. Bad arguments detected before anything
 * is sent throw the built-in `TypeError` / `RangeError` instead.
 *
 * ```text
 * SandboxException
 * └── SandboxError
 *     ├── SandboxResizeError            (a live resize failed or was not seen in time)
 *     ├── SandboxNotFoundError          (404 on a sandbox-scoped call)
 *     ├── RemoteAPIError                (any other non-2xx answer)
 *     │   ├── SandboxNameConflictError  (409 on create or claim: the name is held by a live sandbox)
 *     │   ├── SnapshotNotFoundError     (404 on a snapshot call)
 *     │   ├── PoolNotFoundError         (404 on a pool call: no such pool)
 *     │   ├── PoolInUseError            (409 POOL_IN_USE: sandboxes claimed from the pool still run)
 *     │   ├── PoolAtCapacityError       (429 POOL_AT_CAPACITY: no idle sandbox, maxContainers reached)
 *     │   ├── AuthenticationError       (401 / 403, but for a sandbox's file and user refusals)
 *     │   ├── ImageNotFoundError        (404 on an image call: unknown image or reference)
 *     │   ├── ImageInUseError           (409 IMAGE_IN_USE: a sandbox or snapshot uses the image)
 *     │   ├── ImageBuildError           (422 BUILD_FAILED: a build step failed)
 *     │   └── RegistryError             (REGISTRY_ERROR: the registry failed or answered nonsense)
 *     │       └── RegistryAuthenticationError  (REGISTRY_UNAUTHORIZED: it refused the credentials)
 *     ├── SandboxConnectionError        (the server could not be reached, or a stream broke)
 *     ├── SandboxTimeoutError           (a client-side deadline passed; `option` names the setting)
 *     ├── SandboxFailedError            (the sandbox failed or ended while we waited on it)
 *     └── SandboxNotRoutableError       (no sandbox_url: the sandbox cannot be reached)
 * ```
 */

import type { SandboxInfo } from "./models.js";

/** Root of every error thrown by the Alcove SDK. */
export class SandboxException extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = new.target.name;
  }
}

/** An operation on a sandbox, snapshot or process failed. */
export class SandboxError extends SandboxException {}

/** Why a {@link SandboxResizeError} was thrown. */
export type SandboxResizeErrorReason = "failed" | "timeout" | "superseded" | "incompatible_response";

/**
 * A live resize failed, or its outcome could not be seen in time. `reason` is `failed` (the
 * message carries the server's `error_message`), `timeout`, `superseded` (a later resize
 * replaced it) or `incompatible_response` (the server did not describe it); `info` is the
 * sandbox as last seen, whose `resources` are the limits in force. A timeout
 * does not cancel the resize: wait for `generation` again.
 */
export class SandboxResizeError extends SandboxError {
  readonly sandboxId: string;
  readonly generation: number;
  readonly reason: SandboxResizeErrorReason;
  /** The sandbox as last seen, or `null`. */
  readonly info: SandboxInfo | null;

  constructor(
    sandboxId: string,
    generation: number,
    reason: SandboxResizeErrorReason,
    message: string,
    info: SandboxInfo | null = null,
  ) {
    super(`sandbox ${sandboxId} resize generation ${generation}: ${message}`);
    this.sandboxId = sandboxId;
    this.generation = generation;
    this.reason = reason;
    this.info = info;
  }
}

/** The sandbox (id or name) does not exist, or its name no longer resolves. */
export class SandboxNotFoundError extends SandboxError {
  readonly statusCode = 404;
  readonly sandboxId: string;
  /** The server's own message (or a default one). */
  readonly serverMessage: string;
  readonly code: string | undefined;

  constructor(sandboxId: string, message?: string, code?: string) {
    const text = message || `sandbox '${sandboxId}' not found`;
    super(text.includes(sandboxId) ? text : `sandbox '${sandboxId}': ${text}`);
    this.sandboxId = sandboxId;
    this.serverMessage = text;
    this.code = code;
  }
}

/**
 * The server answered with a non-2xx status.
 *
 * `message` reads `API error (status N[, CODE]): <server message>`; `serverMessage` is the
 * server's own message (the `message` or `error` field of a JSON body, or the whole body when it
 * is plain text); `code` is the JSON `code` field, when present; `requestId` is the id under
 * which the server logged a 5xx failure, when it gave one.
 */
export class RemoteAPIError extends SandboxError {
  readonly statusCode: number;
  readonly serverMessage: string;
  readonly code: string | undefined;
  readonly requestId: string | undefined;

  constructor(statusCode: number, message: string, code?: string, requestId?: string) {
    const label = code ? `status ${statusCode}, ${code}` : `status ${statusCode}`;
    // The server names the request in a 5xx message itself: not twice.
    const suffix = requestId && !message.includes(requestId) ? ` (request ${requestId})` : "";
    super(`API error (${label}): ${message}${suffix}`);
    this.statusCode = statusCode;
    this.serverMessage = message;
    this.code = code;
    this.requestId = requestId;
  }
}

/** Create (or a claim) was refused with 409: the requested name is held by a live sandbox. */
export class SandboxNameConflictError extends RemoteAPIError {}

/** The snapshot does not exist (404 on a snapshot call). */
export class SnapshotNotFoundError extends RemoteAPIError {}

/** The sandbox pool does not exist in the namespace (404 on a pool call). */
export class PoolNotFoundError extends RemoteAPIError {}

/**
 * The pool cannot be deleted: sandboxes claimed from it have not ended (409 `POOL_IN_USE`;
 * `serverMessage` names them). Delete them first.
 */
export class PoolInUseError extends RemoteAPIError {}

/**
 * A claim found no idle sandbox in the pool, and the pool already has `maxContainers`
 * sandboxes (429 `POOL_AT_CAPACITY`). Retry once a claimed sandbox has ended.
 */
export class PoolAtCapacityError extends RemoteAPIError {}

/**
 * The server refused the API key (401) or the caller's rights (403). A sandbox refusing a file
 * or user (403 `PATH_TRAVERSAL` or `PERMISSION_DENIED`) is a plain {@link RemoteAPIError}.
 *
 * Set `ALCOVE_API_KEY` or pass `apiKey` to the client.
 */
export class AuthenticationError extends RemoteAPIError {}

/** The image, or the reference to pull, does not exist (404 on an image call). */
export class ImageNotFoundError extends RemoteAPIError {}

/**
 * The image cannot be deleted: a sandbox (running, suspended or pending) or a snapshot uses it
 * (409 `IMAGE_IN_USE`; `getImage` lists them in `usedBy`).
 */
export class ImageInUseError extends RemoteAPIError {}

/** A build step failed (422 `BUILD_FAILED`): `serverMessage` has the step's exit code and output. */
export class ImageBuildError extends RemoteAPIError {}

/**
 * A pull failed on the registry's side (`REGISTRY_ERROR`, 502): it could not be reached or
 * answered something unusable.
 */
export class RegistryError extends RemoteAPIError {}

/**
 * The registry refused the pull's credentials, or asked for some (`REGISTRY_UNAUTHORIZED`;
 * `statusCode` is the registry's own 401 or 403 and `serverMessage` its message). Unlike
 * {@link AuthenticationError}, the Alcove server accepted the API key.
 */
export class RegistryAuthenticationError extends RegistryError {}

/** The server could not be reached, or a response stream ended early. */
export class SandboxConnectionError extends SandboxError {}

/**
 * A client-side deadline passed. `option` names the client option to raise to wait longer, when
 * one applies: `timeoutSecs` (requests and waits) or `streamIdleTimeoutSecs` (silence on `run` /
 * `follow*` streams).
 */
export class SandboxTimeoutError extends SandboxError {
  readonly option: string | undefined;

  constructor(message: string, option?: string) {
    super(message);
    this.option = option;
  }
}

/** The sandbox failed or ended while the client was waiting on it. */
/** Some copies of a sandbox failed; `result` lists every copy made (`Sandbox.copy` has deleted
 * the ones that ran). */
export class SandboxCopyError extends SandboxError {
  readonly sourceSandboxId: string;
  readonly result: unknown;

  constructor(sourceSandboxId: string, result: unknown, message: string) {
    super(message);
    this.sourceSandboxId = sourceSandboxId;
    this.result = result;
  }
}

export class SandboxFailedError extends SandboxError {
  readonly sandboxId: string;
  readonly status: string;
  readonly reason: string | undefined;

  constructor(sandboxId: string, status: string, reason: string | undefined, message: string) {
    super(message);
    this.sandboxId = sandboxId;
    this.status = status;
    this.reason = reason;
  }
}

/** The server gave no `sandbox_url` for the sandbox, so its processes and files cannot be reached. */
export class SandboxNotRoutableError extends SandboxError {}
