/**
 * Alcove sandboxes from TypeScript: create, run, manage processes and files, drive terminals and
 * desktops, tunnel ports, suspend, snapshot.
 *
 * `SandboxClient` manages sandboxes, warm pools and nodes (the control plane); `Sandbox` runs work inside one sandbox;
 * `PtySession` drives a terminal in it, `Tunnel` relays a local port to one of its ports and
 * `Desktop` drives its screen, mouse and keyboard over VNC. `Image` describes an image for
 * `SandboxClient.buildImage`.
 *
 * ```ts
 * import { SandboxClient } from "alcove";
 *
 * const client = new SandboxClient(); // ALCOVE_API_URL (default http://localhost:8900), ALCOVE_API_KEY
 * await using sandbox = await client.createAndConnect({ cpus: 1.0, memoryMb: 1024 });
 * console.log((await sandbox.run("echo", ["hello"])).stdout);
 * ```
 */

export {
  SandboxClient,
  type BindOutcome,
  type BuildImageFromDockerfileOptions,
  type BuildImageOptions,
  type ClaimOptions,
  type CreateOptions,
  type CreatePoolOptions,
  type GetLogsOptions,
  type GetOrCreateOptions,
  type ImageProgressCallback,
  type ListArchivedOptions,
  type NetworkOptions,
  type PullImageOptions,
  type SandboxClientOptions,
  type UpdateResourcesOptions,
  type WaitForResourceResizeOptions,
} from "./client.js";
export { Image, DEFAULT_BASE_IMAGE, type ImageOptions } from "./image.js";
export {
  Sandbox,
  type FileData,
  type RunOptions,
  type RunUser,
  type StartProcessOptions,
} from "./sandbox.js";
export { PtySession, type CreatePtyOptions } from "./pty.js";
export { Tunnel, type CreateTunnelOptions, type TunnelAddress } from "./tunnel.js";
export { Desktop, type ConnectDesktopOptions, type MouseButton, type ScreenshotOptions } from "./desktop.js";
export { KEY_NAMES } from "./keysyms.js";
export {
  resolveConfig,
  API_KEY_ENV,
  API_URL_ENV,
  DEFAULT_API_URL,
  DEFAULT_NAMESPACE,
  DEFAULT_STREAM_IDLE_TIMEOUT_SECS,
  DEFAULT_TIMEOUT_SECS,
  type ClientConfig,
  type ClientOptions,
} from "./config.js";
export {
  AuthenticationError,
  ImageBuildError,
  ImageInUseError,
  ImageNotFoundError,
  PoolAtCapacityError,
  PoolInUseError,
  PoolNotFoundError,
  RegistryAuthenticationError,
  RegistryError,
  RemoteAPIError,
  SandboxConnectionError,
  SandboxError,
  SandboxException,
  SandboxCopyError,
  SandboxFailedError,
  SandboxNameConflictError,
  SandboxNotFoundError,
  SandboxNotRoutableError,
  SandboxResizeError,
  SandboxTimeoutError,
  type SandboxResizeErrorReason,
  SnapshotNotFoundError,
} from "./errors.js";
export {
  LOG_LEVEL_NUMBERS,
  urlForPort,
  type HealthCheckOptions,
  type ManagedProcessExit,
  type ManagedProcessHealthStatus,
  type ManagedProcessInfo,
  type ManagedProcessStatus,
  type ProcessHealthCheck,
  type ProcessHealthCheckType,
  type RestartOptions,
  type RestartPolicy,
  type RestartPolicyConfig,
  type SandboxLogLevel,
  type SandboxLogSignal,
  type SandboxLogsResponse,
  type SandboxProcessLogFilter,
  type SandboxProcessLogFiltersResponse,
  type ArchivedSandboxInfo,
  type ArchivedSandboxPage,
  type BuildOutputEvent,
  type BuildStepEvent,
  type DeleteImageResult,
  type ImageDoneEvent,
  type ImageErrorEvent,
  type ImageInfo,
  type ImageLayerEvent,
  type ImageLayerInfo,
  type ImageProgressEvent,
  type ImageResolvedEvent,
  type ImageRunConfig,
  type ImageSource,
  type ImageUsers,
  type LayerProgress,
  type LayerStatus,
  type CommandResult,
  type ContainerResourcesInfo,
  type DirectoryEntry,
  type GPUResources,
  type NetworkPolicy,
  type NodeInfo,
  type NodeResources,
  type NodeState,
  type OutputBatch,
  type OutputEvent,
  type OutputMode,
  type OutputResponse,
  type OutputStream,
  type PoolContainerInfo,
  type PoolContainerState,
  type ProcessInfo,
  type ProcessStatus,
  type PtySessionInfo,
  type ResizeResources,
  type ResizeStatus,
  type SandboxInfo,
  type SandboxMetrics,
  type SandboxPoolInfo,
  type SandboxResourceResizeInfo,
  type SandboxStatus,
  type SnapshotInfo,
  type CopiedSandbox,
  type CopySandboxResponse,
  type FileSystemAttachment,
  type FileSystemInfo,
  type FileSystemMount,
  type SnapshotStatus,
  type SnapshotType,
  type StdinMode,
} from "./models.js";
export type { FetchLike } from "./http.js";
export { VERSION } from "./version.js";
