#!/usr/bin/env bash
# Build Alcove's default image (alcove/debian, aliases "default" and "debian").
#
#   images/debian/build.sh OUTDIR [--force]
#
# Produces OUTDIR/debian/rootfs (a plain directory tree, used read-only as the overlay
# lowerdir of every sandbox) and OUTDIR/debian/manifest.json:
#   {"name": "alcove/debian", "aliases": ["default", "debian"],
#    "recipe_sha256": "<sha256 of recipe.txt + build.sh>", "built_at": "<ISO 8601 UTC>",
#    "size_bytes": N}
# Nothing is done when the manifest's recipe_sha256 matches (unless --force).
# Needs root and debootstrap; the Debian mirror comes from the machine's apt configuration.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)"
# shellcheck source-path=SCRIPTDIR source=../../scripts/lib.sh
source "$HERE/../../scripts/lib.sh"

usage() { echo "usage: $0 OUTDIR [--force]" >&2; exit 2; }

OUTDIR=""
FORCE=0
for arg in "$@"; do
    case "$arg" in
        --force) FORCE=1 ;;
        -h | --help) usage ;;
        -*) usage ;;
        *) [[ -z "$OUTDIR" ]] || usage; OUTDIR="$arg" ;;
    esac
done
[[ -n "$OUTDIR" ]] || usage
require_root
umask 022

RECIPE="$HERE/recipe.txt"
[[ -r "$RECIPE" ]] || die "missing recipe $RECIPE"

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
[[ -n "$NAME" && -n "$SUITE" && -n "$VARIANT" && ${#PACKAGES[@]} -gt 0 ]] ||
    die "recipe $RECIPE must set name, suite, variant and packages"
IMAGE_DIR_NAME="${NAME##*/}" # alcove/debian -> debian

OUTDIR="$(mkdir -p "$OUTDIR" && cd "$OUTDIR" && pwd -P)"
IMG="$OUTDIR/$IMAGE_DIR_NAME"
ROOTFS="$IMG/rootfs"
MANIFEST="$IMG/manifest.json"
HASH="$(sha256_of "$RECIPE" "$HERE/build.sh")"

mkdir -p "$IMG"
# One build at a time per image directory (setup.sh may run from two scripts at once).
exec 9>"$IMG/.lock"
flock 9

manifest_hash() {
    [[ -r "$MANIFEST" ]] || return 0
    sed -n 's/.*"recipe_sha256"[[:space:]]*:[[:space:]]*"\([0-9a-f]*\)".*/\1/p' "$MANIFEST" | head -n1
}

if [[ $FORCE -eq 0 && -x "$ROOTFS/usr/bin/python3" && "$(manifest_hash)" == "$HASH" ]]; then
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

# --- smoke test before publishing -----------------------------------------------------
for cmd in "python -c 'import json, ssl, sqlite3, venv'" "python3 --version" "pip --version" \
    "git --version" "ip -V" "curl --version" "command -v ps" "bash -c true" "ping -V"; do
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

aliases_json=""
for a in "${ALIASES[@]}"; do
    aliases_json+="${aliases_json:+, }\"$a\""
done
printf '{"name": "%s", "aliases": [%s], "recipe_sha256": "%s", "built_at": "%s", "size_bytes": %s}\n' \
    "$NAME" "$aliases_json" "$HASH" "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$SIZE" >"$MANIFEST.tmp"
mv -f "$MANIFEST.tmp" "$MANIFEST"

log "image $NAME ready: $ROOTFS ($((SIZE / 1024 / 1024)) MiB, built in $((SECONDS - t0)) s)"
# cleanup (EXIT trap) removes the temporary directory and the previous rootfs.
