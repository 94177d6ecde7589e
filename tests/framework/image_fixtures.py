"""Test images, built offline: umoci for well-formed images, `oci_layout` for the rest.

Every builder writes an OCI image layout into a directory it is given and returns an
`Image` (the layout and a tag). Nothing is downloaded: the files come from busybox-static
(/bin/busybox) and from the built-in Debian root filesystem of the images directory.

What each image is for:
  busybox          a shell, the usual applets, and a config with every field the server
                   applies (Env, WorkingDir, Cmd, ExposedPorts), plus the variants
                   `user` (User 1000:1000) and `entrypoint` (an Entrypoint and a Cmd)
  layered          a base, then a layer with a whiteout, an opaque directory, a hard-link
                   pair, a symlink and a file with a `user.test` xattr
  shared pair      two images whose bottom layer is the very same blob
  multi-arch       an index of a linux/amd64 and a linux/arm64 manifest
  distroless       one static binary at /bin/busybox and nothing else: no /bin/sh
  debian           the built-in Debian rootfs as one layer (~250 MB): the long pull
  hostile          one-layer images whose layer attacks the unpacker (see HOSTILE)
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import shutil
import subprocess
import tarfile
import tempfile
import zlib
from dataclasses import dataclass
from pathlib import Path

from framework.oci_layout import (
    MT_LAYER_GZIP,
    Entry,
    Layout,
    build_tar,
    descriptor,
    gzip_bytes,
    sha256_digest,
    tar_directory,
    write_docker_save,
    write_members,
)

BUSYBOX = Path("/bin/busybox")
UMOCI = shutil.which("umoci") or "/usr/bin/umoci"
SKOPEO = shutil.which("skopeo") or "/usr/bin/skopeo"
CACHE_DIR = Path(os.environ.get("ALCOVE_TEST_IMAGE_CACHE", "/var/cache/alcove/test-images"))
IMAGES_DIR = Path(os.environ.get("ALCOVE_IMAGES_DIR") or "/var/lib/alcove/images")

PATH_ENV = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
GREETING = "GREETING=hello"
WORKDIR = "/work"
EXPOSED_PORT = 8080
# What the busybox image's Cmd leaves behind, so that a test can see it ran.
CMD_MARKER = "/tmp/cmd-ran"
ENTRYPOINT_MARKER = "/tmp/entrypoint-ran"
APPLETS = [
    "sh", "ls", "cat", "echo", "env", "id", "pwd", "sleep", "wget", "true", "false",
    "mkdir", "rm", "touch", "stat", "readlink", "test", "grep", "head", "printf", "whoami",
    "nc", "httpd", "sync",
]


@dataclass(frozen=True)
class Image:
    """One image of a layout."""

    layout: Layout
    tag: str

    @property
    def path(self) -> Path:
        return self.layout.path

    @property
    def oci_ref(self) -> str:
        """skopeo's name of it (`oci:<dir>:<tag>`)."""
        return f"oci:{self.layout.path}:{self.tag}"

    @property
    def config_digest(self) -> str:
        """The image id a store gives it (its config's digest)."""
        return self.layout.config_digest(self.tag)

    @property
    def manifest_digest(self) -> str:
        return self.layout.manifest_digest(self.tag)

    @property
    def layer_digests(self) -> list[str]:
        return self.layout.layer_digests(self.tag)

    @property
    def diff_ids(self) -> list[str]:
        return self.layout.diff_ids(self.tag)

    def config(self) -> dict:
        return self.layout.config(self.tag)


# --- tools -----------------------------------------------------------------------------------
def run(argv: list[str], **kwargs) -> subprocess.CompletedProcess[str]:
    """Runs a tool; a failure raises with its output (a fixture must never half-succeed)."""
    proc = subprocess.run(argv, capture_output=True, text=True, check=False, **kwargs)
    if proc.returncode != 0:
        raise RuntimeError(
            f"{' '.join(map(str, argv))} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}"
        )
    return proc


def umoci(*args: str | Path) -> str:
    return run([UMOCI, *map(str, args)]).stdout


def skopeo(*args: str | Path) -> str:
    return run([SKOPEO, *map(str, args)]).stdout


def skopeo_inspect(ref: str, *flags: str) -> dict:
    return json.loads(skopeo("inspect", *flags, ref))


# --- busybox ---------------------------------------------------------------------------------
def _busybox_rootfs(rootfs: Path, applets: list[str] = APPLETS) -> None:
    """A minimal tree: /bin/busybox and its applets, /etc/passwd and group, /tmp, /work."""
    for d in ("bin", "etc", "tmp", "root", "home/app", WORKDIR.lstrip("/"), "dev", "proc", "sys"):
        (rootfs / d).mkdir(parents=True, exist_ok=True)
    (rootfs / "tmp").chmod(0o1777)
    shutil.copy2(BUSYBOX, rootfs / "bin" / "busybox")
    for applet in applets:
        link = rootfs / "bin" / applet
        if not link.is_symlink():
            link.symlink_to("busybox")
    (rootfs / "etc" / "passwd").write_text(
        "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000:app:/home/app:/bin/sh\n"
    )
    (rootfs / "etc" / "group").write_text("root:x:0:\napp:x:1000:\n")
    os.chown(rootfs / "home" / "app", 1000, 1000)
    (rootfs / WORKDIR.lstrip("/") / "hello.txt").write_text("hello from the image\n")


def _umoci_config(image: str, tag: str | None, *args: str) -> None:
    argv = ["config", "--image", image]
    if tag:
        argv += ["--tag", tag]
    umoci(*argv, *args)


def make_busybox_layout(dest: Path) -> Image:
    """The busybox image, tag `latest`, and its variants `user` and `entrypoint` (same
    layer, other configs), with umoci: init, new, unpack, fill the rootfs, repack, config.

    latest:     Env PATH + GREETING=hello, WorkingDir /work, ExposedPorts 8080/tcp,
                Cmd sh -c 'echo cmd > /tmp/cmd-ran; exec sleep 3600'
    user:       the same with User 1000:1000
    entrypoint: Entrypoint sh -c, Cmd 'echo ep > /tmp/entrypoint-ran; exec sleep 3600'
    """
    dest = Path(dest)
    layout_ref = str(dest)
    umoci("init", "--layout", layout_ref)
    umoci("new", "--image", f"{layout_ref}:empty")
    with tempfile.TemporaryDirectory(prefix="bundle-", dir=dest.parent) as tmp:
        bundle = Path(tmp) / "bundle"
        umoci("unpack", "--image", f"{layout_ref}:empty", bundle)
        _busybox_rootfs(bundle / "rootfs")
        umoci("repack", "--image", f"{layout_ref}:rootfs", bundle)
    common = [
        "--config.env", PATH_ENV, "--config.env", GREETING,
        "--config.workingdir", WORKDIR, "--config.exposedports", f"{EXPOSED_PORT}/tcp",
    ]
    cmd = ["--config.cmd", "/bin/sh", "--config.cmd", "-c",
           "--config.cmd", f"echo cmd > {CMD_MARKER}; exec sleep 3600"]
    _umoci_config(f"{layout_ref}:rootfs", "latest", *common, *cmd)
    _umoci_config(f"{layout_ref}:latest", "user", "--config.user", "1000:1000")
    _umoci_config(
        f"{layout_ref}:rootfs", "entrypoint", *common,
        "--config.entrypoint", "/bin/sh", "--config.entrypoint", "-c",
        "--config.cmd", f"echo ep > {ENTRYPOINT_MARKER}; exec sleep 3600",
    )
    umoci("rm", "--image", f"{layout_ref}:empty")
    umoci("gc", "--layout", layout_ref)
    return Image(Layout(dest), "latest")


# --- layered ---------------------------------------------------------------------------------
XATTR_NAME, XATTR_VALUE = "user.test", "layered-xattr"
HARDLINK_CONTENT = b"one inode, two names\n"

# What the layered image's second layer does, for the tests to check in a sandbox.
LAYERED = {
    "whited_out": "/etc/gone.txt",          # in the base, removed by a .wh. entry
    "kept": "/etc/kept.txt",                # in the base, untouched
    "opaque_dir": "/etc/opq",               # base has a, b; the layer makes it opaque + new
    "opaque_old": ["a", "b"],
    "opaque_new": "new.txt",
    "hardlinks": ("/data/hl1", "/data/hl2"),
    "symlink": ("/data/link", "hl1"),
    "xattr_file": "/data/xattr.txt",
}


def layered_top_layer() -> bytes:
    """The layered image's second layer, written by hand: umoci 0.4 writes a deleted and
    recreated directory as one whiteout per old file, never as an opaque whiteout."""
    return build_tar([
        Entry("etc", "dir"),
        Entry("etc/.wh.gone.txt", data=b""),
        Entry("etc/opq", "dir"),
        Entry("etc/opq/.wh..wh..opq", data=b""),
        Entry("etc/opq/new.txt", data=b"only me\n"),
        Entry("data", "dir"),
        Entry("data/hl1", data=HARDLINK_CONTENT),
        Entry("data/hl2", "hardlink", linkname="data/hl1"),
        Entry("data/link", "symlink", linkname="hl1"),
        Entry("data/xattr.txt", data=b"has an xattr\n", xattrs={XATTR_NAME: XATTR_VALUE}),
    ])


def make_layered_layout(dest: Path) -> Image:
    """Tag `layered`: busybox plus /etc/gone.txt, /etc/kept.txt, /etc/opq/{a,b} (umoci), then
    `layered_top_layer()`."""
    dest = Path(dest)
    base = make_busybox_layout(dest)
    layout_ref = str(dest)
    with tempfile.TemporaryDirectory(prefix="bundle-", dir=dest.parent) as tmp:
        bundle = Path(tmp) / "bundle"
        umoci("unpack", "--image", f"{layout_ref}:{base.tag}", bundle)
        etc = bundle / "rootfs" / "etc"
        (etc / "gone.txt").write_text("whited out above\n")
        (etc / "kept.txt").write_text("still here\n")
        (etc / "opq").mkdir()
        (etc / "opq" / "a").write_text("a\n")
        (etc / "opq" / "b").write_text("b\n")
        umoci("repack", "--image", f"{layout_ref}:layered-base", bundle)
    layout = Layout(dest)
    layout.append_layer("layered-base", "layered", layered_top_layer(), "hand-written layer")
    return Image(layout, "layered")


# --- a shared base ---------------------------------------------------------------------------
def make_shared_base_pair(dest: Path) -> tuple[Image, Image]:
    """Tags `a` and `b`: the busybox layer (the same blob), each with a top layer of its own
    (/a.txt or /b.txt), made by umoci unpack + repack."""
    dest = Path(dest)
    base = make_busybox_layout(dest)
    out = []
    for name in ("a", "b"):
        with tempfile.TemporaryDirectory(prefix="bundle-", dir=dest.parent) as tmp:
            bundle = Path(tmp) / "bundle"
            umoci("unpack", "--image", f"{dest}:{base.tag}", bundle)
            (bundle / "rootfs" / f"{name}.txt").write_text(f"image {name}\n")
            umoci("repack", "--image", f"{dest}:{name}", bundle)
        out.append(Image(Layout(dest), name))
    assert out[0].layer_digests[0] == out[1].layer_digests[0]
    return out[0], out[1]


# --- multi-arch ------------------------------------------------------------------------------
ARCH_ENV = "ALCOVE_TEST_ARCH"


def make_multiarch_layout(dest: Path) -> tuple[Image, dict[str, str]]:
    """Tag `multi`: an image index of linux/amd64 and linux/arm64. Both have the busybox
    layer (an x86-64 binary: only the choice matters); the arm64 config says
    `architecture: arm64`, and each has ALCOVE_TEST_ARCH=<arch> in its Env so that the
    chosen one shows. Returns the index image and {arch: config digest}."""
    base = make_busybox_layout(Path(dest))
    layout = base.layout
    ids = {}
    for arch in ("amd64", "arm64"):

        def edit(config: dict, arch: str = arch) -> None:
            config["architecture"] = arch
            config["config"]["Env"] = list(config["config"].get("Env", [])) + [
                f"{ARCH_ENV}={arch}"
            ]

        layout.retag_with_config(base.tag, arch, edit)
        ids[arch] = layout.config_digest(arch)
    layout.put_index(
        "multi",
        [("amd64", {"os": "linux", "architecture": "amd64"}),
         ("arm64", {"os": "linux", "architecture": "arm64"})],
    )
    return Image(layout, "multi"), ids


# --- distroless ------------------------------------------------------------------------------
def make_distroless_layout(dest: Path) -> Image:
    """Tag `latest`: one layer with /bin/busybox only (no applet links, so no /bin/sh), and
    /tmp and /etc/passwd; no Cmd. What runs there runs by an absolute path."""
    layout = Layout.create(Path(dest))
    layer = build_tar([
        Entry("bin", "dir"),
        Entry("bin/busybox", data=BUSYBOX.read_bytes(), mode=0o755),
        Entry("etc", "dir"),
        Entry("etc/passwd", data=b"root:x:0:0:root:/:/nonexistent\n"),
        Entry("tmp", "dir", mode=0o1777),
    ])
    blob = gzip_bytes(layer)
    config = {
        "architecture": "amd64",
        "os": "linux",
        "config": {"Env": [PATH_ENV]},
        "rootfs": {"type": "layers", "diff_ids": [sha256_digest(layer)]},
    }
    layout.put_image("latest", config, [(descriptor(MT_LAYER_GZIP, blob), blob)])
    return Image(layout, "latest")


# --- debian ----------------------------------------------------------------------------------
def debian_rootfs() -> Path:
    """The built-in Debian rootfs (followed if it is a symlink into the store)."""
    return (IMAGES_DIR / "debian" / "rootfs").resolve()


def debian_cache_key() -> str:
    manifest = IMAGES_DIR / "debian" / "manifest.json"
    h = hashlib.sha256(manifest.read_bytes() if manifest.exists() else b"")
    h.update(str(debian_rootfs()).encode())
    return h.hexdigest()[:16]


def make_debian_layout(cache_dir: Path = CACHE_DIR) -> Image:
    """Tag `latest`: the built-in Debian rootfs as one gzip layer (umoci unpack of an empty
    image, the tree copied in, repack). Cached in `cache_dir/debian-<key>`, the key a hash of
    the built-in image's manifest.json, so that only the first run pays (a minute or so)."""
    src = debian_rootfs()
    if not src.is_dir():
        raise FileNotFoundError(f"no built-in Debian rootfs at {src} (scripts/setup.sh image)")
    final = cache_dir / f"debian-{debian_cache_key()}"
    if (final / "index.json").exists():
        layout = Layout(final)
        if "latest" in layout.tags():
            return Image(layout, "latest")
    cache_dir.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="debian-build-", dir=cache_dir))
    try:
        layout_dir = work / "layout"
        umoci("init", "--layout", layout_dir)
        umoci("new", "--image", f"{layout_dir}:empty")
        bundle = work / "bundle"
        umoci("unpack", "--image", f"{layout_dir}:empty", bundle)
        run(["cp", "-a", "--reflink=auto", f"{src}/.", str(bundle / "rootfs")])
        umoci("repack", "--image", f"{layout_dir}:latest", bundle)
        _umoci_config(f"{layout_dir}:latest", None, "--config.env", PATH_ENV,
                      "--config.workingdir", "/root")
        umoci("rm", "--image", f"{layout_dir}:empty")
        umoci("gc", "--layout", layout_dir)
        shutil.rmtree(bundle)
        if final.exists():
            shutil.rmtree(final)
        os.replace(layout_dir, final)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return Image(Layout(final), "latest")


# --- archives --------------------------------------------------------------------------------
def write_oci_archive(image: Image, dest: Path) -> Path:
    """An OCI archive (a tar of a one-image layout) of `image`, by skopeo."""
    skopeo("copy", "--quiet", image.oci_ref, f"oci-archive:{dest}:{image.tag}")
    return dest


def write_docker_archive(image: Image, dest: Path, repo_tag: str) -> Path:
    """A `docker save` archive of `image` (written here, not by docker)."""
    return write_docker_save(image.layout, image.tag, repo_tag, dest)


# --- hostile layers --------------------------------------------------------------------------
@dataclass(frozen=True)
class Hostile:
    """A crafted image and what it must not achieve on the host."""

    name: str
    archive: Path  # an OCI archive (tar of a layout) to import
    host_paths: tuple[Path, ...]  # must not exist on the host afterwards
    # A refusal (400) is required, not just allowed: the image is broken, not only hostile.
    must_refuse: bool
    layout: Layout  # the layout the archive is a tar of
    # Whether a registry takes it as it is (its blobs match their digests and sizes), so
    # that it can be pulled too, not only imported.
    pushable: bool = True


def _one_layer_layout(dest: Path, layer_tar: bytes, media_type: str = MT_LAYER_GZIP,
                      blob: bytes | None = None) -> Layout:
    layout = Layout.create(dest)
    blob = gzip_bytes(layer_tar) if blob is None else blob
    config = {
        "architecture": "amd64",
        "os": "linux",
        "config": {"Env": [PATH_ENV]},
        "rootfs": {"type": "layers", "diff_ids": [sha256_digest(layer_tar)]},
    }
    layout.put_image("latest", config, [(descriptor(media_type, blob), blob)])
    return layout


def write_gzip_bomb(dest: Path, unpacked_bytes: int = 2 << 30) -> Path:
    """A gzip'd tar of one file of `unpacked_bytes` zeros: ~1 MB per GB. Cached: the
    compression of 2 GB takes ~10 s."""
    if dest.exists():
        return dest
    tmp = dest.with_name(dest.name + ".tmp")
    info = tarfile.TarInfo("zeros")
    info.size, info.mode, info.mtime = unpacked_bytes, 0o644, 1_700_000_000
    header = info.tobuf(format=tarfile.USTAR_FORMAT)
    comp = zlib.compressobj(9, zlib.DEFLATED, 31)
    chunk = bytes(1 << 20)
    with open(tmp, "wb") as out:
        out.write(comp.compress(header))
        left = unpacked_bytes
        while left > 0:
            n = min(left, len(chunk))
            out.write(comp.compress(chunk[:n]))
            left -= n
        pad = (-unpacked_bytes) % 512
        out.write(comp.compress(bytes(pad + 1024)))
        out.write(comp.flush())
    os.replace(tmp, dest)
    return dest


def _bomb_layout(dest: Path, cache_dir: Path) -> Layout:
    cache_dir.mkdir(parents=True, exist_ok=True)
    bomb = write_gzip_bomb(cache_dir / "bomb-2g.tar.gz").read_bytes()
    # The diff id is the digest of the 2 GB of tar; computed once, kept beside the bomb.
    diff_file = cache_dir / "bomb-2g.diffid"
    if not diff_file.exists():
        h = hashlib.sha256()
        with gzip.open(cache_dir / "bomb-2g.tar.gz", "rb") as f:
            while block := f.read(1 << 22):
                h.update(block)
        diff_file.write_text("sha256:" + h.hexdigest())
    layout = Layout.create(dest)
    config = {
        "architecture": "amd64",
        "os": "linux",
        "config": {"Env": [PATH_ENV]},
        "rootfs": {"type": "layers", "diff_ids": [diff_file.read_text().strip()]},
    }
    layout.put_image("latest", config, [(descriptor(MT_LAYER_GZIP, bomb), bomb)])
    return layout


def make_hostile_images(dest: Path, token: str, cache_dir: Path = CACHE_DIR) -> dict[str, Hostile]:
    """Every crafted image, as OCI archives under `dest`. `token` makes the host paths the
    escapes aim at unique to a run, so that a stale file never passes or fails a test.

    escape_dotdot   `../../../../../../tmp/alcove-dotdot-<token>`
    escape_abs      `/etc/alcove-escape-<token>`
    symlink_escape  `evil -> /`, then `evil/tmp/alcove-pwned-<token>`
    symlink_dir_escape  `evil -> /tmp`, then a directory `evil/alcove-dir-<token>` and a file in it
    hardlink_shadow a hard link to `/etc/shadow`, and one to `../../../../etc/shadow`
    chardev         a character device 1:1 (/dev/mem) and a block device 8:0
    gzip_bomb       2 GB of zeros in ~2 MB (refused past the unpack limit)
    truncated_gzip  a gzip stream cut in half (the descriptor has the cut blob's digest, size)
    truncated_blob  a blob file cut in half (the descriptor has the whole blob's)
    digest_mismatch a blob whose content does not hash to its name
    unknown_media   a layer of media type application/vnd.example.unknown
    diffid_mismatch a config whose diff id is not the layer's
    """
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    out: dict[str, Hostile] = {}

    def add(name: str, layout: Layout, host_paths: tuple[Path, ...], must_refuse: bool,
            valid: bool = True) -> None:
        archive = tar_directory(layout.path, dest / f"{name}.oci.tar")
        out[name] = Hostile(name, archive, host_paths, must_refuse, layout, pushable=valid)

    def entry_layout(name: str, entries: list[Entry]) -> Layout:
        return _one_layer_layout(dest / name, build_tar(entries))

    dotdot = Path(f"/tmp/alcove-dotdot-{token}")
    add("escape_dotdot", entry_layout("escape_dotdot", [
        Entry(f"../../../../../../tmp/alcove-dotdot-{token}", data=b"escaped\n"),
    ]), (dotdot,), must_refuse=False)

    abs_path = Path(f"/etc/alcove-escape-{token}")
    add("escape_abs", entry_layout("escape_abs", [
        Entry(str(abs_path), data=b"escaped\n"),
    ]), (abs_path,), must_refuse=False)

    pwned = Path(f"/tmp/alcove-pwned-{token}")
    add("symlink_escape", entry_layout("symlink_escape", [
        Entry("evil", "symlink", linkname="/"),
        Entry(f"evil/tmp/alcove-pwned-{token}", data=b"pwned\n"),
    ]), (pwned,), must_refuse=False)

    pwned_dir = Path(f"/tmp/alcove-dir-{token}")
    add("symlink_dir_escape", entry_layout("symlink_dir_escape", [
        Entry("evil2", "symlink", linkname="../../../../../../tmp"),
        Entry(f"evil2/alcove-dir-{token}", "dir"),
        Entry(f"evil2/alcove-dir-{token}/file", data=b"pwned\n"),
    ]), (pwned_dir,), must_refuse=False)

    add("hardlink_shadow", entry_layout("hardlink_shadow", [
        Entry("shadow", "hardlink", linkname="/etc/shadow"),
        Entry("shadow2", "hardlink", linkname="../../../../../../etc/shadow"),
    ]), (), must_refuse=False)

    add("chardev", entry_layout("chardev", [
        Entry("dev", "dir"),
        Entry("dev/mem", "chardev", devmajor=1, devminor=1, mode=0o666),
        Entry("dev/sda", "blockdev", devmajor=8, devminor=0, mode=0o666),
    ]), (), must_refuse=False)

    add("gzip_bomb", _bomb_layout(dest / "gzip_bomb", cache_dir), (), must_refuse=True)

    # Broken blobs: the layout lies about a blob; a registry would not even take them.
    # Unique per run: a layer the store already holds would be taken from the store, whatever
    # the archive says about it.
    good = build_tar([Entry("ok.txt", data=b"fine\n" * 1000 + token.encode())])
    blob = gzip_bytes(good)
    cut = blob[: len(blob) // 2]
    # A gzip stream that ends early, described as it is (digest and size of the cut bytes).
    layout = _one_layer_layout(dest / "truncated_gzip", good, blob=cut)
    add("truncated_gzip", layout, (), must_refuse=True)
    # A blob file shorter than its descriptor says (digest and size of the whole blob).
    layout = _one_layer_layout(dest / "truncated_blob", good)
    layout.blob_path(sha256_digest(blob)).write_bytes(cut)
    add("truncated_blob", layout, (), must_refuse=True, valid=False)

    layout = _one_layer_layout(dest / "digest_mismatch", good)
    layer_desc = layout.manifest("latest")["layers"][0]
    other = gzip_bytes(build_tar([Entry("other.txt", data=b"not what the digest says\n")]))
    layout.blob_path(layer_desc["digest"]).write_bytes(other)
    add("digest_mismatch", layout, (), must_refuse=True, valid=False)

    layout = _one_layer_layout(dest / "unknown_media", good,
                               media_type="application/vnd.example.unknown")
    add("unknown_media", layout, (), must_refuse=True)

    layout = Layout.create(dest / "diffid_mismatch")
    config = {
        "architecture": "amd64", "os": "linux", "config": {"Env": [PATH_ENV]},
        "rootfs": {"type": "layers", "diff_ids": [sha256_digest(b"something else")]},
    }
    layout.put_image("latest", config, [(descriptor(MT_LAYER_GZIP, blob), blob)])
    add("diffid_mismatch", layout, (), must_refuse=True)
    return out


HOSTILE_NAMES = (
    "escape_dotdot", "escape_abs", "symlink_escape", "symlink_dir_escape", "hardlink_shadow",
    "chardev", "gzip_bomb", "truncated_gzip", "truncated_blob", "digest_mismatch",
    "unknown_media", "diffid_mismatch",
)


def write_docker_save_raw(dest: Path, layer_tar: bytes, repo_tag: str) -> Path:
    """A `docker save` archive of one image whose one layer is `layer_tar` as given."""
    config = {
        "architecture": "amd64", "os": "linux", "config": {"Env": [PATH_ENV]},
        "rootfs": {"type": "layers", "diff_ids": [sha256_digest(layer_tar)]},
    }
    config_bytes = json.dumps(config).encode()
    config_name = sha256_digest(config_bytes).split(":")[1] + ".json"
    layer_path = sha256_digest(layer_tar).split(":")[1] + "/layer.tar"
    manifest = [{"Config": config_name, "RepoTags": [repo_tag], "Layers": [layer_path]}]
    return write_members(dest, [
        (config_name, config_bytes), (layer_path, layer_tar),
        ("manifest.json", json.dumps(manifest).encode()),
    ])


# --- the host's side of a store --------------------------------------------------------------
def layer_dir(images_dir: Path, diff_id: str) -> Path:
    """Where a store keeps a layer's unpacked files (`layers/sha256/<hex>/fs`)."""
    return Path(images_dir) / "layers" / "sha256" / diff_id.split(":", 1)[1] / "fs"


# --- musl ------------------------------------------------------------------------------------
MUSL_GCC = shutil.which("musl-gcc") or "/usr/bin/musl-gcc"
MUSL_LOADER = Path("/lib/ld-musl-x86_64.so.1")
MUSL_PROGRAM = "/hello"
MUSL_ENV_NAME, MUSL_ENV_VALUE = "MUSL_GREETING", "hello-from-musl"
MUSL_MISSING = (
    "musl-gcc or /lib/ld-musl-x86_64.so.1 is missing (Debian's musl, musl-dev, musl-tools): "
    "run scripts/setup.sh packages"
)
# A dynamically linked program: it prints each argument on a line of its own (argv[0] too),
# then the value of MUSL_GREETING.
MUSL_SOURCE = r"""
#include <stdio.h>
#include <stdlib.h>

int main(int argc, char **argv) {
    for (int i = 0; i < argc; i++)
        printf("argv[%d]=%s\n", i, argv[i]);
    const char *greeting = getenv("MUSL_GREETING");
    printf("MUSL_GREETING=%s\n", greeting ? greeting : "(unset)");
    return 0;
}
"""


def musl_available() -> bool:
    return Path(MUSL_GCC).exists() and MUSL_LOADER.exists()


def elf_interpreter(data: bytes) -> str | None:
    """The PT_INTERP string of a 64-bit little-endian ELF file (None: statically linked)."""
    import struct

    assert data[:4] == b"\x7fELF" and data[4] == 2 and data[5] == 1, "not an ELF64 LE file"
    e_phoff, = struct.unpack_from("<Q", data, 0x20)
    e_phentsize, e_phnum = struct.unpack_from("<HH", data, 0x36)
    for i in range(e_phnum):
        p_type, _flags, p_offset, _vaddr, _paddr, p_filesz = struct.unpack_from(
            "<IIQQQQ", data, e_phoff + i * e_phentsize)
        if p_type == 3:  # PT_INTERP
            return data[p_offset:p_offset + p_filesz].rstrip(b"\0").decode()
    return None


def make_musl_layout(dest: Path) -> Image:
    """Tag `latest`: one layer holding `/hello`, a C program compiled here with musl-gcc and
    linked dynamically (its ELF interpreter is /lib/ld-musl-x86_64.so.1), and the loader
    itself (musl's libc.so, which is both), and nothing else: no shell, no /etc. The config
    has Env PATH and MUSL_GREETING=hello-from-musl, and no Cmd."""
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="musl-", dir=dest.parent) as tmp:
        src, binary = Path(tmp) / "hello.c", Path(tmp) / "hello"
        src.write_text(MUSL_SOURCE)
        run([MUSL_GCC, "-O2", "-o", str(binary), str(src)])
        program = binary.read_bytes()
    interp = elf_interpreter(program)
    if interp != str(MUSL_LOADER):
        raise RuntimeError(f"musl-gcc made a program whose interpreter is {interp!r}")
    layer = build_tar([
        Entry(MUSL_PROGRAM.lstrip("/"), data=program, mode=0o755),
        Entry("lib", "dir"),
        Entry(str(MUSL_LOADER).lstrip("/"), data=MUSL_LOADER.resolve().read_bytes(), mode=0o755),
    ])
    blob = gzip_bytes(layer)
    config = {
        "architecture": "amd64",
        "os": "linux",
        "config": {"Env": [PATH_ENV, f"{MUSL_ENV_NAME}={MUSL_ENV_VALUE}"]},
        "rootfs": {"type": "layers", "diff_ids": [sha256_digest(layer)]},
    }
    layout = Layout.create(dest)
    layout.put_image("latest", config, [(descriptor(MT_LAYER_GZIP, blob), blob)])
    return Image(layout, "latest")


def unique_image(tmp: Path, label: str, random_kib: int = 256) -> Image:
    """A one-layer image no other test has (a file `<label>.bin` of random bytes), with busybox
    and a few of its applets so that a sandbox of it runs commands."""
    layout = Layout.create(tmp / label)
    layer = build_tar([
        Entry("bin", "dir"),
        Entry("bin/busybox", data=BUSYBOX.read_bytes(), mode=0o755),
        *[Entry(f"bin/{applet}", "symlink", linkname="busybox")
          for applet in ("sh", "sleep", "cat", "env", "echo", "ls", "pwd")],
        Entry("tmp", "dir", mode=0o1777),
        Entry("root", "dir", mode=0o700),
        Entry(f"{label}.bin", data=os.urandom(random_kib * 1024)),
    ])
    blob = gzip_bytes(layer)
    config = {"architecture": "amd64", "os": "linux", "config": {"Env": [PATH_ENV]},
              "rootfs": {"type": "layers", "diff_ids": [sha256_digest(layer)]}}
    layout.put_image("latest", config, [(descriptor(MT_LAYER_GZIP, blob), blob)])
    return Image(layout, "latest")
