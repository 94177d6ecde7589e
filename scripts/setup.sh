#!/usr/bin/env bash
# Alcove's one setup step: idempotent, and fast when everything is already in place.
#
#   scripts/setup.sh [STEP...]      (default: all)
#
# STEP is one of:
#   all       = packages tools criu sysctl image python node build
#   packages  Debian packages (runc, nftables, debootstrap, CRIU build deps, image test tools, ...)
#   criu      CRIU 4.2.1 from Debian's source tarball, with scripts/criu/*.patch applied
#             -> /usr/local/sbin/criu (cached per version and patch set)
#   sysctl    kernel settings: forwarding, and the host-wide limits sandboxes share
#             (also written to /etc/sysctl.d/60-alcove.conf; `alcove serve` checks them too)
#   image     the images of images/*/recipe.txt (alcove/debian, alcove/desktop) in
#             $ALCOVE_IMAGES_DIR, by scripts/build_image.sh (rebuilt when a recipe changes)
#   tools     cargo-machete (unused-dependency check of the test command) and s3s-fs (an S3
#             server for the blob store's tests, cached), from the crate registry
#   python    virtualenv $REPO/.venv with the SDK (editable) and the test tools
#   node      the TypeScript SDK's dependencies and build (npm ci in sdk/typescript), and the
#             web console (npm ci and build in console/ -> console/dist, embedded in the server
#             by the build step; skipped when console/dist is newer than its sources)
#   build     cargo build: target/release/alcove, target/release/alcove-hook and the static
#             target/x86_64-unknown-linux-gnu/release/alcove-agent (skipped if ALCOVE_SKIP_BUILD=1)
#
# Steps may be combined: scripts/setup.sh packages criu image
# Environment: ALCOVE_DATA_DIR, ALCOVE_IMAGES_DIR, ALCOVE_CACHE_DIR (see scripts/lib.sh),
#   ALCOVE_SKIP_BUILD=1, ALCOVE_PYTHON (base interpreter for the venv),
#   ALCOVE_CRIU_TARBALL (a local criu_4.2.1.orig.tar.xz, if Debian no longer serves it).
set -euo pipefail

# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

ALL_STEPS=(packages tools criu sysctl image python node build)

usage() {
    sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//' >&2
    exit 2
}

# --- packages ----------------------------------------------------------------------
# CRIU build dependencies (for the criu step: CRIU 4.2.1 from Debian's source tarball).
CRIU_BUILD_DEPS=(libbsd-dev libcap-dev libgnutls28-dev libnet1-dev libnftables-dev libnl-3-dev
    libprotobuf-c-dev libprotobuf-dev pkgconf protobuf-c-compiler protobuf-compiler uuid-dev
    python3-protobuf libaio-dev make gcc xz-utils patch)
# openssl: the TLS tests (tests/framework/tls.py) make a private CA and node certificates with it.
RUNTIME_PKGS=(runc iproute2 nftables debootstrap e2fsprogs util-linux zstd sqlite3 curl
    ca-certificates git lxcfs openssl)
PYTHON_PKGS=(python3 python3-venv)
# Desktops: noVNC's files for the desktop page (`alcove serve --novnc-dir`); a display, a VNC
# server and xdotool for the SDKs' desktop-client tests; Chromium to test the page headless.
DESKTOP_PKGS=(novnc xvfb x11vnc xdotool x11-xserver-utils chromium)
# Images (the e2e tests of pulls, imports and builds, tests/framework/registry.py and
# image_fixtures.py; all offline):
#   docker-registry  the CNCF distribution registry (/usr/bin/docker-registry), started by the
#                    tests on a free loopback port with a config of their own; the package's own
#                    service is never used (see ensure_image_test_pkgs)
#   skopeo           pushes the test images to that registry and writes OCI archives
#   umoci            builds the test images as OCI layouts without a daemon or the network
#   busybox-static   the one static binary the test images are made of
#   apache2-utils    htpasswd, for the registry's basic-auth users
#   musl musl-dev musl-tools  musl-gcc and /lib/ld-musl-x86_64.so.1, for the musl test image
#                    (a dynamically linked program and musl's loader, image_fixtures.make_musl_layout)
IMAGE_TEST_PKGS=(docker-registry skopeo umoci busybox-static apache2-utils musl musl-dev musl-tools)
# The PostgreSQL store's tests (crates/server/src/store/testing.rs, tests/framework/postgres.py)
# start private clusters of their own with its initdb and postgres; the package's own cluster
# is never started (see ensure_pkgs_without_services).
TEST_DB_PKGS=(postgresql-15)

_apt_updated=0
# ensure_pkgs NAME...  installs whichever are missing (apt-get update only if needed).
ensure_pkgs() {
    local missing
    mapfile -t missing < <(missing_pkgs "$@")
    if [[ ${#missing[@]} -eq 0 ]]; then
        return 0
    fi
    log "installing ${#missing[@]} package(s): ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    local apt_opts=(-o DPkg::Lock::Timeout=300 -o Dpkg::Options::=--force-confdef
        -o Dpkg::Options::=--force-confold)
    if [[ $_apt_updated -eq 0 ]]; then
        apt-get "${apt_opts[@]}" update -qq || die "apt-get update failed"
        _apt_updated=1
    fi
    apt-get "${apt_opts[@]}" install -y -qq --no-install-recommends "${missing[@]}" >/dev/null ||
        die "apt-get install failed for: ${missing[*]}"
    mapfile -t missing < <(missing_pkgs "$@")
    [[ ${#missing[@]} -eq 0 ]] || die "still missing after apt-get install: ${missing[*]}"
}

# ensure_pkgs_without_services NAME...  ensure_pkgs, without any service starting: a package's
# postinst calls invoke-rc.d, which on a machine without a policy-rc.d would start its daemon
# (or fail without an init system). A policy-rc.d that denies every start is put in place for
# the install only (an existing one is left alone).
ensure_pkgs_without_services() {
    local missing
    mapfile -t missing < <(missing_pkgs "$@")
    [[ ${#missing[@]} -gt 0 ]] || return 0
    local policy=/usr/sbin/policy-rc.d ours=0
    if [[ ! -e $policy ]]; then
        printf '#!/bin/sh\n# alcove setup.sh: no service starts while installing\nexit 101\n' >"$policy"
        chmod 755 "$policy"
        ours=1
    fi
    local rc=0
    (ensure_pkgs "$@") || rc=$?
    if [[ $ours -eq 1 ]]; then
        rm -f "$policy"
    fi
    [[ $rc -eq 0 ]] || die "installing $* failed"
}

# ensure_image_test_pkgs  installs IMAGE_TEST_PKGS without ever starting docker-registry's own
# service (a registry on :5000): the service is also disabled in the init scripts, and a daemon
# the package may have started anyway is stopped.
ensure_image_test_pkgs() {
    local missing
    mapfile -t missing < <(missing_pkgs "${IMAGE_TEST_PKGS[@]}")
    [[ ${#missing[@]} -gt 0 ]] || return 0
    ensure_pkgs_without_services "${IMAGE_TEST_PKGS[@]}"
    if [[ -x /etc/init.d/docker-registry ]]; then
        /etc/init.d/docker-registry stop >/dev/null 2>&1 || true
        update-rc.d docker-registry disable >/dev/null 2>&1 || true
    fi
}

step_packages() {
    local all=("${RUNTIME_PKGS[@]}" "${CRIU_BUILD_DEPS[@]}" "${PYTHON_PKGS[@]}" "${DESKTOP_PKGS[@]}")
    ensure_pkgs "${all[@]}"
    ensure_image_test_pkgs
    ensure_pkgs_without_services "${TEST_DB_PKGS[@]}"
    all+=("${IMAGE_TEST_PKGS[@]}" "${TEST_DB_PKGS[@]}")
    log "packages: all ${#all[@]} present"
}

# --- CRIU --------------------------------------------------------------------------
criu_version_of() { # BINARY -> "4.2.1" (or empty)
    "$1" --version 2>/dev/null | awk '/^Version:/ { print $2; exit }'
}

# Alcove's patches to CRIU (scripts/criu/*.patch, applied in name order; each says why).
CRIU_PATCH_DIR="$ALCOVE_REPO/scripts/criu"

criu_build_id() { # -> "4.2.1-<hash of the patches>": the cache key of a build
    local h
    h="$(cat "$CRIU_PATCH_DIR"/*.patch 2>/dev/null | sha256sum | cut -c1-12)"
    echo "$ALCOVE_CRIU_VERSION-$h"
}

build_criu() { # -> writes $ALCOVE_CACHE_DIR/criu-<V>/criu
    local v="$ALCOVE_CRIU_VERSION"
    local cache
    cache="$ALCOVE_CACHE_DIR/criu-$(criu_build_id)"
    ensure_pkgs "${CRIU_BUILD_DEPS[@]}"
    mkdir -p "$ALCOVE_CACHE_DIR" "$cache"
    local work
    work="$(mktemp -d "$ALCOVE_CACHE_DIR/criu-build.XXXXXX")"
    CLEANUP_DIRS+=("$work")
    local tarball="$work/src/criu_$v.orig.tar.xz"
    mkdir -p "$work/src"

    if [[ -n "${ALCOVE_CRIU_TARBALL:-}" ]]; then
        log "criu: using the local tarball $ALCOVE_CRIU_TARBALL"
        cp -- "$ALCOVE_CRIU_TARBALL" "$tarball"
    else
        # A private apt configuration: a deb-src line for sid, its own lists and caches,
        # so that the machine's apt configuration and state stay untouched.
        local mirror keyring suites
        mirror="$(apt_mirror)"
        keyring="$(apt_keyring)"
        suites="${ALCOVE_CRIU_SUITES:-sid}"
        mkdir -p "$work/lists/partial"
        local s
        for s in $suites; do
            echo "deb-src [signed-by=$keyring] $mirror $s main"
        done >"$work/sources.list"
        local O=(-o "Dir::Etc::SourceList=$work/sources.list" -o "Dir::Etc::SourceParts=-"
            -o "Dir::State::Lists=$work/lists" -o "Dir::Cache::pkgcache=$work/pkgcache.bin"
            -o "Dir::Cache::srcpkgcache=$work/srcpkgcache.bin" -o "APT::Sandbox::User=root")
        log "criu: fetching the source index of Debian '$suites' from $mirror"
        apt-get "${O[@]}" update -qq >"$work/update.log" 2>&1 || {
            cat "$work/update.log" >&2
            die "criu: apt-get update against the private deb-src list failed"
        }
        local versions chosen
        versions="$(apt-cache "${O[@]}" showsrc criu 2>/dev/null | awk '/^Version:/ { print $2 }' | sort -uV)"
        chosen="$(grep -E "^${v//./\\.}-" <<<"$versions" | tail -n1 || true)"
        if [[ -z "$chosen" ]]; then
            die "criu: Debian '$suites' does not carry CRIU $v any more (it has: ${versions//$'\n'/ })." \
                "Get criu_${v}.orig.tar.xz and rerun with ALCOVE_CRIU_TARBALL=/path/to/it," \
                "or try ALCOVE_CRIU_SUITES='sid trixie-backports'."
        fi
        log "criu: downloading the source of criu $chosen"
        # The Debian packaging tarball may 404; the upstream (orig) tarball alone builds.
        if ! (cd "$work/src" && apt-get "${O[@]}" source --download-only -qq "criu=$chosen") \
            >"$work/source.log" 2>&1; then
            if [[ -s "$tarball" ]]; then
                log "criu: apt-get source reported an error but the orig tarball is there (fine)"
            else
                cat "$work/source.log" >&2
                die "criu: could not download criu_${v}.orig.tar.xz"
            fi
        fi
        # Cross-check the tarball against the .dsc (apt already checked both against the index).
        local dsc="$work/src/criu_$chosen.dsc"
        if [[ -r "$dsc" ]]; then
            local want got
            want="$(awk -v f="criu_$v.orig.tar.xz" '$3 == f && length($1) == 64 { print $1; exit }' "$dsc")"
            got="$(sha256sum "$tarball" | awk '{ print $1 }')"
            [[ -z "$want" || "$want" == "$got" ]] || die "criu: sha256 mismatch for $(basename "$tarball")"
        fi
    fi
    [[ -s "$tarball" ]] || die "criu: no tarball at $tarball"

    tar -xf "$tarball" -C "$work/src"
    local srcdir
    srcdir="$(find "$work/src" -mindepth 1 -maxdepth 1 -type d -name 'criu*' | head -n1)"
    [[ -n "$srcdir" ]] || die "criu: the tarball did not unpack into a criu-* directory"
    local patch
    for patch in "$CRIU_PATCH_DIR"/*.patch; do
        [[ -f "$patch" ]] || continue
        log "criu: applying $(basename "$patch")"
        patch -d "$srcdir" -p1 --quiet <"$patch" || die "criu: $(basename "$patch") does not apply"
    done
    log "criu: make criu (about 30 s)"
    if ! make -C "$srcdir" -j"$(nproc)" criu >"$work/make.log" 2>&1; then
        tail -n 40 "$work/make.log" >&2
        die "criu: build failed (see the log above)"
    fi
    local built="$srcdir/criu/criu"
    [[ "$(criu_version_of "$built")" == "$v" ]] ||
        die "criu: the built binary reports version '$(criu_version_of "$built")', expected $v"
    install -m 0755 "$built" "$cache/criu.tmp"
    mv -f "$cache/criu.tmp" "$cache/criu"
    rm -rf "$work"
    log "criu: cached $cache/criu"
}

step_criu() {
    local v="$ALCOVE_CRIU_VERSION"
    local cached
    cached="$ALCOVE_CACHE_DIR/criu-$(criu_build_id)/criu"
    if [[ ! -x "$cached" || "$(criu_version_of "$cached")" != "$v" ]]; then
        build_criu
    fi
    if ! cmp -s "$cached" "$ALCOVE_CRIU_BIN"; then
        mkdir -p "$(dirname "$ALCOVE_CRIU_BIN")"
        install -m 0755 "$cached" "$ALCOVE_CRIU_BIN.tmp"
        mv -f "$ALCOVE_CRIU_BIN.tmp" "$ALCOVE_CRIU_BIN"
        log "criu: installed $ALCOVE_CRIU_BIN"
    fi
    local got out
    got="$(criu_version_of "$ALCOVE_CRIU_BIN")"
    [[ "$got" == "$v" ]] || die "criu: $ALCOVE_CRIU_BIN --version says '$got', expected $v"
    out="$("$ALCOVE_CRIU_BIN" check 2>&1 || true)"
    if ! grep -q "Looks good" <<<"$out"; then
        echo "$out" >&2
        die "criu: '$ALCOVE_CRIU_BIN check' did not say 'Looks good'"
    fi
    local on_path
    on_path="$(command -v criu || true)"
    if [[ "$on_path" != "$ALCOVE_CRIU_BIN" ]]; then
        warn "criu on PATH is '$on_path', not $ALCOVE_CRIU_BIN: pass 'runc --criu $ALCOVE_CRIU_BIN'"
    fi
    log "criu: $ALCOVE_CRIU_BIN $got, criu check: Looks good"
}

# --- kernel settings ------------------------------------------------------------------
# Floors, never lowered (the reasons are in crates/runtime/src/host.rs).
SYSCTL_FLOORS=(
    net.ipv4.ip_forward=1
    kernel.pid_max=4194304
    fs.file-max=9223372036854775807
    fs.inotify.max_user_instances=1048576
    fs.inotify.max_user_watches=16777216
    net.ipv4.neigh.default.gc_thresh1=16384
    net.ipv4.neigh.default.gc_thresh2=32768
    net.ipv4.neigh.default.gc_thresh3=65536
)

step_sysctl() {
    local conf=/etc/sysctl.d/60-alcove.conf kv key want now
    {
        echo "# Written by Alcove's scripts/setup.sh: host-wide limits sandboxes share."
        printf '%s\n' "${SYSCTL_FLOORS[@]}"
    } >"$conf.tmp"
    mv -f "$conf.tmp" "$conf"
    for kv in "${SYSCTL_FLOORS[@]}"; do
        key="${kv%%=*}"
        want="${kv#*=}"
        now="$(sysctl -n "$key" 2>/dev/null || echo 0)"
        # Compare as strings of digits: these may exceed bash's 64-bit range.
        if [[ ${#now} -lt ${#want} || (${#now} -eq ${#want} && "$now" < "$want") ]]; then
            sysctl -q -w "$key=$want"
        fi
    done
    log "sysctl: $(for kv in "${SYSCTL_FLOORS[@]}"; do printf '%s=%s ' "${kv%%=*}" "$(sysctl -n "${kv%%=*}")"; done)"
}

# --- Rust tools ------------------------------------------------------------------------
CARGO_MACHETE_VERSION="0.9.2"

step_tools() {
    command -v cargo >/dev/null || die "cargo is not on PATH"
    ensure_s3s_fs
    if cargo machete --version 2>/dev/null | grep -q "$CARGO_MACHETE_VERSION"; then
        log "tools: cargo-machete $CARGO_MACHETE_VERSION present"
        return 0
    fi
    log "tools: cargo install cargo-machete $CARGO_MACHETE_VERSION (about a minute)"
    cargo install --locked --quiet cargo-machete --version "$CARGO_MACHETE_VERSION" ||
        die "tools: installing cargo-machete failed"
}

# s3s-fs: an S3 server over a directory, from the crate registry. The blob store's tests
# (crates/blobs, tests/blobs) start it on a free loopback port: S3 really spoken, signatures
# and multipart uploads included. Built once into the cache (a few minutes).
S3S_FS_VERSION="0.14.1"
S3S_FS_BIN="$ALCOVE_CACHE_DIR/s3s-fs-$S3S_FS_VERSION/bin/s3s-fs"

ensure_s3s_fs() {
    if [[ -x "$S3S_FS_BIN" ]]; then
        log "tools: s3s-fs $S3S_FS_VERSION present"
        return 0
    fi
    log "tools: cargo install s3s-fs $S3S_FS_VERSION (a few minutes, cached in $ALCOVE_CACHE_DIR)"
    mkdir -p "$ALCOVE_CACHE_DIR"
    cargo install --locked --quiet s3s-fs --version "$S3S_FS_VERSION" --features binary \
        --root "$ALCOVE_CACHE_DIR/s3s-fs-$S3S_FS_VERSION" ||
        die "tools: installing s3s-fs failed"
}

# --- Rust build ---------------------------------------------------------------------
step_build() {
    if [[ "${ALCOVE_SKIP_BUILD:-0}" == 1 ]]; then
        log "build: skipped (ALCOVE_SKIP_BUILD=1)"
        return 0
    fi
    command -v cargo >/dev/null || die "cargo is not on PATH"
    cd "$ALCOVE_REPO"
    local locked=()
    [[ -f Cargo.lock ]] && locked=(--locked)
    log "build: cargo build --release ${locked[*]} -p alcove-cli -p alcove-hook"
    cargo build --release "${locked[@]}" -p alcove-cli -p alcove-hook
    log "build: static agent (crt-static, x86_64-unknown-linux-gnu)"
    RUSTFLAGS="${RUSTFLAGS:+$RUSTFLAGS }-C target-feature=+crt-static" \
        cargo build --release "${locked[@]}" -p alcove-agent --target x86_64-unknown-linux-gnu
    [[ -x "$ALCOVE_BIN_PATH" ]] || die "build: $ALCOVE_BIN_PATH was not produced (is the alcove-cli binary named 'alcove'?)"
    [[ -x "$ALCOVE_HOOK_BUILD_PATH" ]] || die "build: $ALCOVE_HOOK_BUILD_PATH was not produced"
    [[ -x "$ALCOVE_AGENT_BUILD_PATH" ]] || die "build: $ALCOVE_AGENT_BUILD_PATH was not produced"
    if ldd "$ALCOVE_AGENT_BUILD_PATH" 2>&1 | grep -q '=>'; then
        warn "build: $ALCOVE_AGENT_BUILD_PATH is dynamically linked; it must be static to run inside any image"
    fi
    # Also on PATH, the agent and the hook next to the server binary (where it looks for them).
    local src dst
    for src in "$ALCOVE_BIN_PATH" "$ALCOVE_HOOK_BUILD_PATH" "$ALCOVE_AGENT_BUILD_PATH"; do
        dst="/usr/local/bin/$(basename "$src")"
        if ! cmp -s "$src" "$dst"; then
            install -m 0755 "$src" "$dst.tmp"
            mv -f "$dst.tmp" "$dst"
        fi
    done
    log "build: $ALCOVE_BIN_PATH, $ALCOVE_HOOK_BUILD_PATH, $ALCOVE_AGENT_BUILD_PATH (copied to /usr/local/bin)"
}

# --- images ---------------------------------------------------------------------------
step_image() {
    ensure_pkgs debootstrap util-linux
    mkdir -p "$ALCOVE_IMAGES_DIR"
    local r
    for r in "$ALCOVE_REPO"/images/*/recipe.txt; do
        [[ -f "$r" ]] || continue
        bash "$ALCOVE_REPO/scripts/build_image.sh" "$(dirname "$r")" "$ALCOVE_IMAGES_DIR"
    done
}

# --- Python virtualenv -----------------------------------------------------------------
# playwright: the console's tests drive Debian's chromium with it (tests/console; its own
# browser download, `playwright install`, is never used).
PY_TEST_PKGS=(pytest pytest-timeout httpx tensorlake==0.5.161 openapi-spec-validator jsonschema
    prometheus_client playwright==1.65.2)

base_python() {
    if [[ -n "${ALCOVE_PYTHON:-}" ]]; then
        echo "$ALCOVE_PYTHON"
    elif [[ -x /usr/bin/python3 ]]; then
        echo /usr/bin/python3 # Debian's, with python3-venv: present on every machine of this kind
    else
        command -v python3
    fi
}

step_python() {
    ensure_pkgs "${PYTHON_PKGS[@]}"
    local venv="$ALCOVE_REPO/.venv"
    local pyproject="$ALCOVE_REPO/sdk/python/pyproject.toml"
    local stamp="$venv/.alcove-setup-stamp"
    local py want
    py="$(base_python)"
    want="$({
        echo "python=$("$py" -c 'import sys; print(sys.version)')"
        printf '%s\n' "${PY_TEST_PKGS[@]}"
        if [[ -f "$pyproject" ]]; then cat "$pyproject"; else echo "no-sdk"; fi
    } | sha256sum | awk '{ print $1 }')"
    if [[ -x "$venv/bin/python" ]] && "$venv/bin/python" -c 'import pytest' 2>/dev/null &&
        [[ "$(cat "$stamp" 2>/dev/null)" == "$want" ]]; then
        log "python: $venv is up to date"
        return 0
    fi
    if [[ ! -x "$venv/bin/python" ]] || ! "$venv/bin/python" -c 'import sys' 2>/dev/null; then
        rm -rf "$venv"
        log "python: creating $venv with $py"
        "$py" -m venv "$venv"
    fi
    local args=("${PY_TEST_PKGS[@]}")
    if [[ -f "$pyproject" ]]; then
        args=(-e "$ALCOVE_REPO/sdk/python[test]" "${args[@]}")
    else
        warn "python: $pyproject does not exist yet; installing the test tools only"
    fi
    log "python: pip install ${args[*]}"
    "$venv/bin/python" -m pip install --disable-pip-version-check -q "${args[@]}" ||
        die "python: pip install failed"
    echo "$want" >"$stamp"
    log "python: $venv ready"
}

step_node() {
    command -v npm >/dev/null || die "node: npm is missing (this machine kind ships Node.js and npm)"
    node_sdk
    node_console
}

# node_ci DIR  npm ci in DIR unless its node_modules matches its lock file already.
node_ci() {
    local dir="$1"
    local stamp="$dir/node_modules/.alcove-setup-stamp" want
    want="$(cat "$dir/package-lock.json" "$dir/package.json" | sha256sum | awk '{ print $1 }')"
    if [[ -d "$dir/node_modules" && "$(cat "$stamp" 2>/dev/null)" == "$want" ]]; then
        log "node: $dir/node_modules is up to date"
        return 0
    fi
    log "node: npm ci in $dir"
    (cd "$dir" && npm ci --no-audit --no-fund --loglevel=error) || die "node: npm ci failed in $dir"
    echo "$want" >"$stamp"
}

# The web console's files (docs/console.md): built before the cargo build, which embeds them
# (crates/server/build.rs; without them the server serves a "console not built" page).
node_console() {
    local dir="$ALCOVE_REPO/console"
    [[ -f "$dir/package-lock.json" ]] || { warn "node: $dir has no package-lock.json; skipped"; return 0; }
    node_ci "$dir"
    local newest
    newest="$(find "$dir/src" "$dir/index.html" "$dir/build.mjs" "$dir/package-lock.json" \
        -type f -newer "$dir/dist/index.html" -print -quit 2>/dev/null || true)"
    if [[ -f "$dir/dist/index.html" && -z "$newest" ]]; then
        log "node: $dir/dist is up to date"
        return 0
    fi
    log "node: building the console ($dir/dist)"
    (cd "$dir" && node build.mjs --quiet) || die "node: the console build failed"
    [[ -f "$dir/dist/index.html" && -f "$dir/dist/app.js" ]] || die "node: $dir/dist is incomplete"
}

node_sdk() {
    local dir="$ALCOVE_REPO/sdk/typescript"
    [[ -f "$dir/package-lock.json" ]] || { warn "node: $dir has no package-lock.json; skipped"; return 0; }
    node_ci "$dir"
}

# --- main -----------------------------------------------------------------------------
CLEANUP_DIRS=()
cleanup() {
    local d
    for d in "${CLEANUP_DIRS[@]}"; do
        rm -rf "$d"
    done
}
trap cleanup EXIT

main() {
    local steps=() a
    [[ $# -gt 0 ]] || set -- all
    for a in "$@"; do
        case "$a" in
            all) steps+=("${ALL_STEPS[@]}") ;;
            packages | tools | criu | sysctl | build | image | images | python | node)
                [[ "$a" == images ]] && a=image
                steps+=("$a")
                ;;
            -h | --help | help) usage ;;
            *) echo "unknown step '$a'" >&2; usage ;;
        esac
    done
    require_root
    # One setup at a time (quickstart.sh and test.sh may overlap).
    mkdir -p /run/lock
    exec 8>/run/lock/alcove-setup.lock
    if ! flock -n 8; then
        log "another scripts/setup.sh is running; waiting for it"
        flock 8
    fi

    local s t report=()
    for s in "${steps[@]}"; do
        step "setup: $s"
        t=$SECONDS
        "step_$s"
        report+=("$s $((SECONDS - t))s")
    done
    log "setup done in $(elapsed) s (${report[*]})"
}

main "$@"
