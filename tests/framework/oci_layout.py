"""Reading and writing OCI image layouts by hand (image-spec `oci-layout`), for the image tests.

umoci and skopeo build and copy well-formed images; this module covers what they cannot or
will not make: layers written byte by byte (opaque whiteouts, hostile entries), configs edited
in place (another architecture), multi-platform indexes, `docker save` archives, and layouts
that are deliberately wrong (a digest that does not match, a truncated blob, an unknown media
type). Everything is offline and deterministic.
"""

from __future__ import annotations

import copy
import gzip
import hashlib
import io
import json
import os
import shutil
import tarfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

MT_INDEX = "application/vnd.oci.image.index.v1+json"
MT_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MT_CONFIG = "application/vnd.oci.image.config.v1+json"
MT_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
MT_LAYER_TAR = "application/vnd.oci.image.layer.v1.tar"
REF_NAME = "org.opencontainers.image.ref.name"


def sha256_digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def hex_of(digest: str) -> str:
    algo, _, hexpart = digest.partition(":")
    assert algo == "sha256" and len(hexpart) == 64, digest
    return hexpart


def json_bytes(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":"), sort_keys=True).encode()


def gzip_bytes(data: bytes) -> bytes:
    """gzip with a zero mtime, so that the same tar always gives the same blob."""
    return gzip.compress(data, compresslevel=6, mtime=0)


def descriptor(media_type: str, data: bytes, **extra: Any) -> dict[str, Any]:
    return {"mediaType": media_type, "digest": sha256_digest(data), "size": len(data), **extra}


class Layout:
    """An OCI image layout directory: `oci-layout`, `index.json`, `blobs/sha256/`."""

    def __init__(self, path: Path):
        self.path = Path(path)

    # --- creation and blobs ------------------------------------------------------------
    @classmethod
    def create(cls, path: Path) -> "Layout":
        path = Path(path)
        (path / "blobs" / "sha256").mkdir(parents=True, exist_ok=True)
        (path / "oci-layout").write_text(json.dumps({"imageLayoutVersion": "1.0.0"}))
        if not (path / "index.json").exists():
            (path / "index.json").write_bytes(
                json_bytes({"schemaVersion": 2, "manifests": []})
            )
        return cls(path)

    def blob_path(self, digest: str) -> Path:
        return self.path / "blobs" / "sha256" / hex_of(digest)

    def read_blob(self, digest: str) -> bytes:
        return self.blob_path(digest).read_bytes()

    def read_json(self, digest: str) -> Any:
        return json.loads(self.read_blob(digest))

    def write_blob(self, data: bytes) -> str:
        digest = sha256_digest(data)
        target = self.blob_path(digest)
        if not target.exists():
            tmp = target.with_name(target.name + ".tmp")
            tmp.write_bytes(data)
            os.replace(tmp, target)
        return digest

    # --- the index ---------------------------------------------------------------------
    def index(self) -> dict[str, Any]:
        return json.loads((self.path / "index.json").read_text())

    def write_index(self, index: dict[str, Any]) -> None:
        tmp = self.path / "index.json.tmp"
        tmp.write_bytes(json_bytes(index))
        os.replace(tmp, self.path / "index.json")

    def tags(self) -> list[str]:
        return [
            m["annotations"][REF_NAME]
            for m in self.index()["manifests"]
            if REF_NAME in m.get("annotations", {})
        ]

    def descriptor_of(self, tag: str) -> dict[str, Any]:
        for m in self.index()["manifests"]:
            if m.get("annotations", {}).get(REF_NAME) == tag:
                return m
        raise KeyError(f"{self.path}: no tag {tag!r} (has {self.tags()})")

    def set_tag(self, tag: str, desc: dict[str, Any]) -> None:
        """Points `tag` at `desc` (a manifest or an index), replacing an earlier one."""
        index = self.index()
        index["manifests"] = [
            m for m in index["manifests"] if m.get("annotations", {}).get(REF_NAME) != tag
        ]
        desc = dict(desc)
        desc["annotations"] = {**desc.get("annotations", {}), REF_NAME: tag}
        index["manifests"].append(desc)
        self.write_index(index)

    # --- images ------------------------------------------------------------------------
    def manifest(self, tag: str) -> dict[str, Any]:
        desc = self.descriptor_of(tag)
        if desc["mediaType"] != MT_MANIFEST:
            raise ValueError(f"{tag!r} is a {desc['mediaType']}, not an image manifest")
        return self.read_json(desc["digest"])

    def manifest_digest(self, tag: str) -> str:
        return self.descriptor_of(tag)["digest"]

    def config(self, tag: str) -> dict[str, Any]:
        return self.read_json(self.manifest(tag)["config"]["digest"])

    def config_digest(self, tag: str) -> str:
        """The image id an image store gives this image."""
        return self.manifest(tag)["config"]["digest"]

    def layer_digests(self, tag: str) -> list[str]:
        return [layer["digest"] for layer in self.manifest(tag)["layers"]]

    def diff_ids(self, tag: str) -> list[str]:
        return list(self.config(tag)["rootfs"]["diff_ids"])

    def uncompressed_layer(self, digest: str, media_type: str) -> bytes:
        data = self.read_blob(digest)
        return gzip.decompress(data) if media_type.endswith("+gzip") else data

    def put_image(
        self,
        tag: str,
        config: dict[str, Any],
        layers: list[tuple[dict[str, Any], bytes | None]],
        manifest_extra: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Writes a config and a manifest over `layers` (descriptor, blob or None if the blob
        is already in the layout) and tags it. Returns the manifest's descriptor."""
        for _desc, blob in layers:
            if blob is not None:
                self.write_blob(blob)
        config_bytes = json_bytes(config)
        self.write_blob(config_bytes)
        manifest = {
            "schemaVersion": 2,
            "mediaType": MT_MANIFEST,
            "config": descriptor(MT_CONFIG, config_bytes),
            "layers": [desc for desc, _ in layers],
            **(manifest_extra or {}),
        }
        manifest_bytes = json_bytes(manifest)
        self.write_blob(manifest_bytes)
        desc = descriptor(MT_MANIFEST, manifest_bytes)
        self.set_tag(tag, desc)
        return desc

    def append_layer(self, tag: str, new_tag: str, layer_tar: bytes, comment: str) -> str:
        """A new image `new_tag`: the image `tag` plus one gzip layer whose tar is
        `layer_tar`. Returns the new manifest's digest."""
        manifest = self.manifest(tag)
        config = copy.deepcopy(self.config(tag))
        blob = gzip_bytes(layer_tar)
        config["rootfs"]["diff_ids"].append(sha256_digest(layer_tar))
        config.setdefault("history", []).append(
            {"created": config.get("created", "1970-01-01T00:00:00Z"), "created_by": comment}
        )
        layers = [(d, None) for d in manifest["layers"]] + [
            (descriptor(MT_LAYER_GZIP, blob), blob)
        ]
        return self.put_image(new_tag, config, layers)["digest"]

    def retag_with_config(self, tag: str, new_tag: str, edit) -> str:
        """A new image `new_tag`: the layers of `tag` with its config changed by
        `edit(config)` (in place). Returns the new manifest's digest."""
        manifest = self.manifest(tag)
        config = copy.deepcopy(self.config(tag))
        edit(config)
        return self.put_image(new_tag, config, [(d, None) for d in manifest["layers"]])[
            "digest"
        ]

    def put_index(self, tag: str, entries: list[tuple[str, dict[str, str]]]) -> str:
        """Tags an image index over the manifests of the given tags, each with its
        platform (`{"os": ..., "architecture": ...}`). Returns the index's digest."""
        manifests = []
        for entry_tag, platform in entries:
            desc = {k: v for k, v in self.descriptor_of(entry_tag).items() if k != "annotations"}
            desc["platform"] = dict(platform)
            manifests.append(desc)
        index_bytes = json_bytes(
            {"schemaVersion": 2, "mediaType": MT_INDEX, "manifests": manifests}
        )
        self.write_blob(index_bytes)
        self.set_tag(tag, descriptor(MT_INDEX, index_bytes))
        return sha256_digest(index_bytes)

    def copy_to(self, dest: Path) -> "Layout":
        shutil.copytree(self.path, dest, symlinks=True)
        return Layout(dest)


# --- tar streams ---------------------------------------------------------------------------
@dataclass
class Entry:
    """One member of a hand-written layer tar."""

    name: str
    kind: str = "file"  # file | dir | symlink | hardlink | chardev | blockdev | fifo
    data: bytes = b""
    linkname: str = ""
    mode: int | None = None
    uid: int = 0
    gid: int = 0
    devmajor: int = 0
    devminor: int = 0
    xattrs: dict[str, str] = field(default_factory=dict)
    size: int | None = None  # a size to declare other than len(data) (a lying header)


_KINDS = {
    "file": tarfile.REGTYPE,
    "dir": tarfile.DIRTYPE,
    "symlink": tarfile.SYMTYPE,
    "hardlink": tarfile.LNKTYPE,
    "chardev": tarfile.CHRTYPE,
    "blockdev": tarfile.BLKTYPE,
    "fifo": tarfile.FIFOTYPE,
}


def build_tar(entries: Iterable[Entry], mtime: int = 1_700_000_000) -> bytes:
    """A PAX tar of `entries`, in the order given, names exactly as given (no
    normalisation: `../x` and `/etc/x` stay what they are)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for e in entries:
            info = tarfile.TarInfo(e.name)
            info.type = _KINDS[e.kind]
            info.mtime = mtime
            info.uid, info.gid = e.uid, e.gid
            info.uname = info.gname = ""
            info.linkname = e.linkname
            info.devmajor, info.devminor = e.devmajor, e.devminor
            info.mode = e.mode if e.mode is not None else (0o755 if e.kind == "dir" else 0o644)
            if e.xattrs:
                info.pax_headers = {f"SCHILY.xattr.{k}": v for k, v in e.xattrs.items()}
            if e.kind == "file":
                info.size = len(e.data)
                tar.addfile(info, io.BytesIO(e.data))
            else:
                tar.addfile(info)
    return buf.getvalue()


def tar_names(tar_bytes: bytes) -> list[str]:
    with tarfile.open(fileobj=io.BytesIO(tar_bytes)) as tar:
        return tar.getnames()


def tar_directory(src: Path, dest: Path) -> Path:
    """`dest`: a plain tar of the directory `src` (its contents at the archive's root), as
    an OCI archive (`oci-archive:`) or a `docker save` archive is."""
    with tarfile.open(dest, "w", format=tarfile.PAX_FORMAT) as tar:
        for root, dirs, files in os.walk(src):
            dirs.sort()
            for name in sorted(dirs) + sorted(files):
                full = Path(root) / name
                tar.add(full, arcname=str(full.relative_to(src)), recursive=False)
    return dest


def write_docker_save(layout: Layout, tag: str, repo_tag: str, dest: Path) -> Path:
    """A `docker save` archive of the image `tag` of `layout`: `manifest.json` (Config,
    RepoTags, Layers), the config as `<hex>.json` and each layer uncompressed as
    `<diff-id hex>/layer.tar`. Returns `dest`."""
    manifest = layout.manifest(tag)
    config_bytes = layout.read_blob(manifest["config"]["digest"])
    config_name = hex_of(manifest["config"]["digest"]) + ".json"
    members: list[tuple[str, bytes]] = [(config_name, config_bytes)]
    layer_paths = []
    for desc in manifest["layers"]:
        raw = layout.uncompressed_layer(desc["digest"], desc["mediaType"])
        path = f"{hex_of(sha256_digest(raw))}/layer.tar"
        layer_paths.append(path)
        members.append((path, raw))
    save_manifest = [{"Config": config_name, "RepoTags": [repo_tag], "Layers": layer_paths}]
    members.append(("manifest.json", json.dumps(save_manifest).encode()))
    repo, _, t = repo_tag.rpartition(":")
    members.append(
        ("repositories", json.dumps({repo: {t: layer_paths[-1].split("/")[0]}}).encode())
    )
    return write_members(dest, members)


def write_members(dest: Path, members: list[tuple[str, bytes]]) -> Path:
    """A plain tar at `dest` of (name, content) files; directories are implied."""
    with tarfile.open(dest, "w", format=tarfile.PAX_FORMAT) as tar:
        seen_dirs: set[str] = set()
        for name, data in members:
            parent = os.path.dirname(name)
            if parent and parent not in seen_dirs:
                info = tarfile.TarInfo(parent)
                info.type, info.mode, info.mtime = tarfile.DIRTYPE, 0o755, 1_700_000_000
                tar.addfile(info)
                seen_dirs.add(parent)
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(data), 0o644, 1_700_000_000
            tar.addfile(info, io.BytesIO(data))
    return dest
