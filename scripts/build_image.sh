#!/usr/bin/env bash
# Build one of Alcove's images from its recipe directory (images/<name>/).
#
#   scripts/build_image.sh IMAGE_DIR OUTDIR [--force]
#
# IMAGE_DIR holds recipe.txt and, optionally, rootfs/ (files copied over the built tree).
# Produces OUTDIR/<short name>/rootfs (a plain directory tree, used read-only as the overlay
# lowerdir of every sandbox) and OUTDIR/<short name>/manifest.json:
#   {"name": "alcove/debian", "aliases": ["default", "debian"],
#    "env": {"K": "V"}, "services": [{"name": "n", "command": ["prog", "arg"]}],
#    "recipe_sha256": "<sha256 of the recipe, rootfs/ and this script>",
#    "built_at": "<ISO 8601 UTC>", "size_bytes": N}
# Nothing is done when the manifest's recipe_sha256 matches (unless --force).
# Needs root and debootstrap; the Debian mirror comes from the machine's apt configuration.
#
# Recipe keys ("key: value" lines, '#' starts a comment line; list keys accumulate):
#   name, aliases, suite, variant   the image's names and the debootstrap suite/variant
#   packages                        packages debootstrap installs (with their dependencies)
#   env: KEY=VALUE                  default environment of every process in its sandboxes
#   service: NAME PROGRAM ARGS...   started by the server in each new sandbox, in order
#   smoke: COMMAND                  must succeed in the new tree before it is published
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)"
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$HERE/lib.sh"

usage() { echo "usage: $0 IMAGE_DIR OUTDIR [--force]" >&2; exit 2; }

SRC=""
OUTDIR=""
FORCE=0
for arg in "$@"; do
    case "$arg" in
        --force) FORCE=1 ;;
        -h | --help) usage ;;
        -*) usage ;;
        *)
            if [[ -z "$SRC" ]]; then SRC="$arg"
            elif [[ -z "$OUTDIR" ]]; then OUTDIR="$arg"
            else usage; fi
            ;;
    esac
done
[[ -n "$SRC" && -n "$OUTDIR" ]] || usage
require_root
umask 022

SRC="$(cd "$SRC" && pwd -P)"
RECIPE="$SRC/recipe.txt"
[[ -r "$RECIPE" ]] || die "missing recipe $RECIPE"
OVERLAY="$SRC/rootfs"

# --- parse the recipe -----------------------------------------------------------
recipe_value() { # KEY -> the values of all "KEY:" lines, space separated
    awk -v k="$1" '
        /^[[:space:]]*#/ { next }
        {
            key = $0; sub(/:.*/, "", key); gsub(/[[:space:]]/, "", key)
            if (key != k || index($0, ":") == 0) next
            v = $0; sub(/^[^:]*:[[:space:]]*/, "", v); sub(/[[:space:]]+$/, "", v)
            out = (out == "" ? v : out " " v)
        }
        END { print out }
    ' "$RECIPE"
}
NAME="$(recipe_value name)"
read -r -a ALIASES <<<"$(recipe_value aliases)"
SUITE="$(recipe_value suite)"
VARIANT="$(recipe_value variant)"
read -r -a PACKAGES <<<"$(recipe_value packages)"
recipe_lines() { # KEY -> each "KEY:" value on its own line
    awk -v k="$1" '
        /^[[:space:]]*#/ { next }
        {
            key = $0; sub(/:.*/, "", key); gsub(/[[:space:]]/, "", key)
            if (key != k || index($0, ":") == 0) next
            v = $0; sub(/^[^:]*:[[:space:]]*/, "", v); sub(/[[:space:]]+$/, "", v)
            print v
        }
    ' "$RECIPE"
}
[[ -n "$NAME" && -n "$SUITE" && -n "$VARIANT" && ${#PACKAGES[@]} -gt 0 ]] ||
    die "recipe $RECIPE must set name, suite, variant and packages"
IMAGE_DIR_NAME="${NAME##*/}" # alcove/debian -> debian

OUTDIR="$(mkdir -p "$OUTDIR" && cd "$OUTDIR" && pwd -P)"
IMG="$OUTDIR/$IMAGE_DIR_NAME"
ROOTFS="$IMG/rootfs"
MANIFEST="$IMG/manifest.json"
OVERLAY_FILES=()
if [[ -d "$OVERLAY" ]]; then
    mapfile -t OVERLAY_FILES < <(find "$OVERLAY" -type f | LC_ALL=C sort)
fi
# The recipe, this script, and each overlay file's path, mode and content.
HASH="$({
    cat -- "$RECIPE" "${BASH_SOURCE[0]}"
    for f in "${OVERLAY_FILES[@]}"; do
        printf '%s %s\n' "${f#"$OVERLAY"}" "$(stat -c %a "$f")"
        cat -- "$f"
    done
} | sha256sum | awk '{ print $1 }')"

mkdir -p "$IMG"
# One build at a time per image directory (setup.sh may run from two scripts at once).
exec 9>"$IMG/.lock"
flock 9

manifest_hash() {
    [[ -r "$MANIFEST" ]] || return 0
    sed -n 's/.*"recipe_sha256"[[:space:]]*:[[:space:]]*"\([0-9a-f]*\)".*/\1/p' "$MANIFEST" | head -n1
}

if [[ $FORCE -eq 0 && -x "$ROOTFS/bin/sh" && "$(manifest_hash)" == "$HASH" ]]; then
    log "image $NAME is up to date ($ROOTFS, recipe ${HASH:0:12})"
    exit 0
fi

command -v debootstrap >/dev/null || die "debootstrap is not installed (run scripts/setup.sh packages)"
MIRROR="$(apt_mirror)"
KEYRING="$(apt_keyring)"

# --- build into a temporary directory beside the target ---------------------------
TMP="$(mktemp -d "$IMG/.build.XXXXXX")"
NEW="$TMP/rootfs"

umount_under() { # unmount everything mounted below $1 (deepest first)
    local dir="$1" m
    awk -v d="$dir/" 'index($2, d) == 1 { print $2 }' /proc/self/mounts | sort -r |
        while read -r m; do
            umount -l "$m" 2>/dev/null || true
        done
}
cleanup() {
    if [[ -n "${TMP:-}" && -d "$TMP" ]]; then
        umount_under "$TMP"
        rm -rf --one-file-system "$TMP"
    fi
}
trap cleanup EXIT

INCLUDE="$(IFS=,; echo "${PACKAGES[*]}")"
log "building image $NAME: debootstrap --variant=$VARIANT $SUITE from $MIRROR"
log "packages: ${PACKAGES[*]}"
t0=$SECONDS
# Downloaded .debs are kept so that a rebuild after a recipe change downloads little.
DEB_CACHE="$ALCOVE_CACHE_DIR/debootstrap-$SUITE"
mkdir -p "$DEB_CACHE"
if ! debootstrap --variant="$VARIANT" --include="$INCLUDE" --keyring="$KEYRING" \
    --cache-dir="$DEB_CACHE" \
    "$SUITE" "$NEW" "$MIRROR" >"$TMP/debootstrap.log" 2>&1; then
    tail -n 40 "$TMP/debootstrap.log" >&2 || true
    if [[ -r "$NEW/debootstrap/debootstrap.log" ]]; then
        echo "--- $NEW/debootstrap/debootstrap.log (tail) ---" >&2
        tail -n 40 "$NEW/debootstrap/debootstrap.log" >&2 || true
    fi
    die "debootstrap failed"
fi
umount_under "$NEW"
log "debootstrap done in $((SECONDS - t0)) s"

# --- make it small and friendly -----------------------------------------------------
chroot "$NEW" /usr/bin/apt-get clean
rm -rf "${NEW:?}"/var/lib/apt/lists/* "${NEW:?}"/var/cache/apt/*.bin
mkdir -p "$NEW/var/lib/apt/lists/partial"
rm -rf "${NEW:?}"/var/cache/debconf/*-old "${NEW:?}"/var/lib/dpkg/*-old
rm -rf "${NEW:?}"/tmp/* "${NEW:?}"/var/tmp/*
find "$NEW/var/log" -type f -exec truncate -s 0 {} +
# No man pages, docs (copyright files stay) or translations: about 70 MB less. The dpkg
# config keeps later "apt-get install" inside a sandbox consistent with that.
cat >"$NEW/etc/dpkg/dpkg.cfg.d/alcove-nodoc" <<'EOF'
path-exclude=/usr/share/man/*
path-exclude=/usr/share/doc/*
path-include=/usr/share/doc/*/copyright
path-exclude=/usr/share/locale/*
path-include=/usr/share/locale/locale.alias
path-exclude=/usr/share/info/*
EOF
find "$NEW/usr/share/doc" -mindepth 1 ! -type d ! -name copyright -delete
find "$NEW/usr/share/doc" -mindepth 1 -type d -empty -delete
rm -rf "${NEW:?}"/usr/share/man/* "${NEW:?}"/usr/share/info/*
find "$NEW/usr/share/locale" -mindepth 1 -maxdepth 1 ! -name locale.alias -exec rm -rf {} +

# The runtime bind-mounts its own resolv.conf and hosts; keep host details out of the image.
rm -f "$NEW/etc/resolv.conf" "$NEW/etc/hostname"
: >"$NEW/etc/resolv.conf"
chmod 0644 "$NEW/etc/resolv.conf"
cat >"$NEW/etc/hosts" <<'EOF'
127.0.0.1	localhost
::1	localhost ip6-localhost ip6-loopback
EOF

# Honour a prompt given in the environment (create_pty(env={"PS1": ...})): Debian's
# /etc/bash.bashrc and /etc/skel/.bashrc set their own unconditionally. The system bashrc,
# read first, remembers an inherited PS1 (bash's own default is '\s-\v\$ ') and both put it back.
PS1_SAVE="$NEW/etc/alcove-ps1-save"
cat >"$PS1_SAVE" <<'RC'
# Alcove: remember a prompt given in the environment.
[ "$PS1" != '\s-\v\$ ' ] && ALCOVE_ENV_PS1="$PS1"
RC
sed -i "/^\[ -z \"\$PS1\" \] && return\$/r $PS1_SAVE" "$NEW/etc/bash.bashrc"
rm -f "$PS1_SAVE"
grep -q ALCOVE_ENV_PS1 "$NEW/etc/bash.bashrc" || { echo "could not patch /etc/bash.bashrc" >&2; exit 1; }
for rc in "$NEW/etc/bash.bashrc" "$NEW/etc/skel/.bashrc"; do
    printf '\n%s\n' '[ -n "${ALCOVE_ENV_PS1:-}" ] && PS1="$ALCOVE_ENV_PS1"' >>"$rc"
done

mkdir -p "$NEW/workspace" "$NEW/root" "$NEW/tmp"
chmod 0777 "$NEW/workspace"
chmod 0700 "$NEW/root"
chmod 1777 "$NEW/tmp"

# --- the recipe's own files ------------------------------------------------------------
if [[ -d "$OVERLAY" ]]; then
    # Owned by root whoever checked the repository out; modes as committed.
    cp -a --no-preserve=ownership "$OVERLAY/." "$NEW/"
fi

# --- smoke test before publishing -----------------------------------------------------
mapfile -t SMOKE < <(recipe_lines smoke)
for cmd in "python -c 'import json, ssl, sqlite3, venv'" "python3 --version" "pip --version" \
    "git --version" "ip -V" "curl --version" "command -v ps" "bash -c true" "ping -V" \
    "${SMOKE[@]}"; do
    if ! chroot "$NEW" /usr/bin/env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
        /bin/sh -c "$cmd" >/dev/null 2>&1; then
        die "smoke test failed in the new image: $cmd"
    fi
done

SIZE="$(du -sb --one-file-system "$NEW" | awk '{ print $1 }')"

# --- publish: swap the new tree in, then write the manifest ---------------------------
rm -f "$MANIFEST"
OLD=""
if [[ -e "$ROOTFS" ]]; then
    OLD="$TMP/rootfs.old"
    mv -T "$ROOTFS" "$OLD"
fi
mv -T "$NEW" "$ROOTFS"

# The manifest is written by Python (in every image's build host) so that values are quoted right.
recipe_lines env >"$TMP/env.txt"
recipe_lines service >"$TMP/services.txt"
python3 - "$NAME" "$HASH" "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$SIZE" "$TMP/env.txt" "$TMP/services.txt" \
    "${ALIASES[@]}" >"$MANIFEST.tmp" <<'PY'
import json, sys
name, digest, built_at, size, env_file, services_file, *aliases = sys.argv[1:]
env = {}
for line in open(env_file):
    if line.strip():
        key, sep, value = line.rstrip("\n").partition("=")
        if not sep:
            sys.exit(f"recipe env line {line!r} is not KEY=VALUE")
        env[key.strip()] = value
services = []
for line in open(services_file):
    words = line.split()
    if len(words) < 2:
        sys.exit(f"recipe service line {line!r} is not NAME PROGRAM [ARGS...]")
    services.append({"name": words[0], "command": words[1:]})
print(json.dumps({"name": name, "aliases": aliases, "env": env, "services": services,
                  "recipe_sha256": digest, "built_at": built_at, "size_bytes": int(size)}))
PY
mv -f "$MANIFEST.tmp" "$MANIFEST"

log "image $NAME ready: $ROOTFS ($((SIZE / 1024 / 1024)) MiB, built in $((SECONDS - t0)) s)"
# cleanup (EXIT trap) removes the temporary directory and the previous rootfs.
