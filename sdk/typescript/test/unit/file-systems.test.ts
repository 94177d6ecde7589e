/** Persistent volumes: mount bodies, create bodies with `fileSystems`, and decoding. */

import assert from "node:assert/strict";
import { describe, it } from "node:test";

import { createBody } from "../../src/client.js";
import { fileSystemInfoFromWire, fileSystemMountToWire, sandboxInfoFromWire } from "../../src/models.js";
import { sandboxJson } from "./fake.js";

describe("file system mounts", () => {
  it("go into a create body as file_systems, only when given", () => {
    assert.equal(createBody({}).file_systems, undefined);
    assert.deepEqual(createBody({ fileSystems: [{ fileSystemId: "d", mountPath: "/d", readOnly: true }] }).file_systems, [
      { file_system_id: "d", mount_path: "/d", read_only: true },
    ]);
  });

  it("send read_only only when true, under their wire names", () => {
    assert.deepEqual(fileSystemMountToWire({ fileSystemId: "data", mountPath: "/mnt/d" }), {
      file_system_id: "data",
      mount_path: "/mnt/d",
    });
    assert.deepEqual(fileSystemMountToWire({ fileSystemId: "data", mountPath: "/mnt/d", readOnly: true }), {
      file_system_id: "data",
      mount_path: "/mnt/d",
      read_only: true,
    });
  });

  it("refuse a relative path or an empty name before sending", () => {
    assert.throws(() => fileSystemMountToWire({ fileSystemId: "data", mountPath: "mnt" }), TypeError);
    assert.throws(() => fileSystemMountToWire({ fileSystemId: " ", mountPath: "/mnt" }), TypeError);
  });

  it("decode volumes and a sandbox's mounts in camelCase", () => {
    const info = fileSystemInfoFromWire({
      id: "data",
      name: "data",
      size_mb: 64,
      created_at: 1_700_000_000_000,
      attachments: [{ sandbox_id: "s", mount_path: "/mnt/d", read_only: true }],
    });
    assert.equal(info.sizeMb, 64);
    assert.equal(info.usedMb, null);
    assert.deepEqual(info.attachments, [{ sandboxId: "s", mountPath: "/mnt/d", readOnly: true }]);
    assert.throws(() => fileSystemInfoFromWire({ id: "x", name: "x" }));
    const sandbox = sandboxInfoFromWire(
      sandboxJson({ file_systems: [{ file_system_id: "data", mount_path: "/mnt/d", read_only: false }] }),
    );
    assert.deepEqual(sandbox.fileSystems, [{ fileSystemId: "data", mountPath: "/mnt/d", readOnly: false }]);
  });
});
