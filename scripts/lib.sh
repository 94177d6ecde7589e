# shellcheck shell=bash disable=SC2034 # (variables are used by the scripts that source this file)
# Shared helpers for Alcove's scripts. Source it; do not run it.
#
#   source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
#
# Environment (all optional):
#   ALCOVE_DATA_DIR     server state            (default /var/lib/alcove)
#   ALCOVE_IMAGES_DIR   built images            (default $ALCOVE_DATA_DIR/images)
#   ALCOVE_CACHE_DIR    build caches (CRIU)     (default /var/cache/alcove)
#   ALCOVE_APT_MIRROR   Debian mirror URI       (default: read from the machine's apt config)

if [[ -n "${_ALCOVE_LIB_SOURCED:-}" ]]; then
    return 0
fi
_ALCOVE_LIB_SOURCED=1

# Repository root: the parent of the directory holding this file.
ALCOVE_REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)"

# Not exported on purpose: `alcove serve` reads ALCOVE_DATA_DIR, ALCOVE_IMAGES_DIR, ... from
# its environment (clap `env`), so the scripts pass them as flags or arguments instead.
: "${ALCOVE_DATA_DIR:=/var/lib/alcove}"
: "${ALCOVE_IMAGES_DIR:=$ALCOVE_DATA_DIR/images}"
: "${ALCOVE_CACHE_DIR:=/var/cache/alcove}"

# Paths of the build products (setup.sh builds them, quickstart/test use them).
ALCOVE_BIN_PATH="$ALCOVE_REPO/target/release/alcove"
# runc's hook for every sandbox start; the server runs it from beside its own binary.
ALCOVE_HOOK_BUILD_PATH="$ALCOVE_REPO/target/release/alcove-hook"
ALCOVE_AGENT_BUILD_PATH="$ALCOVE_REPO/target/x86_64-unknown-linux-gnu/release/alcove-agent"
ALCOVE_CRIU_VERSION="4.2.1"
ALCOVE_CRIU_BIN="/usr/local/sbin/criu"
ALCOVE_PID_FILE="${ALCOVE_PID_FILE:-/run/alcove.pid}"
ALCOVE_LOG_DIR="${ALCOVE_LOG_DIR:-/var/log/alcove}"
ALCOVE_LISTEN="${ALCOVE_LISTEN:-127.0.0.1:8900}"

# cargo from rustup, for shells that did not load ~/.cargo/env.
if ! command -v cargo >/dev/null 2>&1 && [[ -x "${HOME:-/root}/.cargo/bin/cargo" ]]; then
    PATH="${HOME:-/root}/.cargo/bin:$PATH"
fi

_ALCOVE_T0=$SECONDS

# --- logging -----------------------------------------------------------------

_ts() { date '+%H:%M:%S'; }

# log MSG...  informational line on stderr, with a timestamp.
log() { printf '[%s] %s\n' "$(_ts)" "$*" >&2; }

# step MSG...  a visible section header.
step() { printf '\n[%s] ==> %s\n' "$(_ts)" "$*" >&2; }

warn() { printf '[%s] WARNING: %s\n' "$(_ts)" "$*" >&2; }

# die MSG...  print an error and exit 1.
die() {
    printf '[%s] ERROR: %s\n' "$(_ts)" "$*" >&2
    exit 1
}

# elapsed  seconds since lib.sh was sourced.
elapsed() { echo $((SECONDS - _ALCOVE_T0)); }

require_root() {
    [[ $(id -u) -eq 0 ]] || die "this script must run as root (it installs packages and manages namespaces)"
}

# --- packages ----------------------------------------------------------------

# have_pkg NAME  true if the Debian package is installed.
have_pkg() {
    dpkg-query -W -f='${db:Status-Abbrev}' "$1" 2>/dev/null | grep -q '^ii'
}

# missing_pkgs NAME...  prints (one per line) the packages that are not installed.
# One dpkg-query call for the whole list, so it stays fast.
missing_pkgs() {
    local installed
    installed="$(dpkg-query -W -f='${db:Status-Abbrev} ${Package}\n' "$@" 2>/dev/null |
        awk '$1 == "ii" { print $2 }' || true)"
    local p
    for p in "$@"; do
        if ! grep -qxF -- "$p" <<<"$installed"; then
            echo "$p"
        fi
    done
}

# --- apt mirror --------------------------------------------------------------

_ALCOVE_SOURCES_FILE="${ALCOVE_APT_SOURCES_FILE:-/etc/apt/sources.list.d/debian.sources}"

# apt_stanza_field FIELD  prints FIELD of the first deb822 stanza of the machine's
# debian.sources whose Suites include "bookworm" (empty if none).
apt_stanza_field() {
    local field="$1"
    [[ -r "$_ALCOVE_SOURCES_FILE" ]] || return 0
    awk -v want="$field" '
        function flush() {
            if (has_bookworm && !done && (want in val)) { print val[want]; done = 1 }
            has_bookworm = 0; delete val
        }
        /^[[:space:]]*#/ { next }
        /^[[:space:]]*$/ { flush(); next }
        /^[A-Za-z-]+:/ {
            key = $1; sub(/:$/, "", key)
            line = $0; sub(/^[^:]+:[[:space:]]*/, "", line)
            val[key] = line
            if (key == "Suites") {
                n = split(line, s, /[[:space:]]+/)
                for (i = 1; i <= n; i++) if (s[i] == "bookworm") has_bookworm = 1
            }
        }
        END { flush() }
    ' "$_ALCOVE_SOURCES_FILE"
}

# apt_mirror  prints the Debian mirror URI (no trailing slash) configured on this machine.
apt_mirror() {
    if [[ -n "${ALCOVE_APT_MIRROR:-}" ]]; then
        echo "${ALCOVE_APT_MIRROR%/}"
        return 0
    fi
    local uri
    uri="$(apt_stanza_field URIs | awk '{ print $1 }')"
    if [[ -z "$uri" && -r /etc/apt/sources.list ]]; then
        # Fallback: one-line format "deb [opts] URI bookworm main".
        uri="$(awk '$1 == "deb" {
                i = 2; if ($i ~ /^\[/) { while ($i !~ /\]$/) i++; i++ }
                if ($(i + 1) == "bookworm") { print $i; exit }
            }' /etc/apt/sources.list)"
    fi
    [[ -n "$uri" ]] || die "cannot find the Debian mirror: no stanza with Suites: bookworm in $_ALCOVE_SOURCES_FILE (set ALCOVE_APT_MIRROR)"
    echo "${uri%/}"
}

# apt_keyring  prints the keyring used to verify the Debian archive.
apt_keyring() {
    local k
    k="$(apt_stanza_field Signed-By)"
    if [[ -n "$k" && "$k" == /* && -r "$k" ]]; then
        echo "$k"
    else
        echo /usr/share/keyrings/debian-archive-keyring.gpg
    fi
}

# --- misc --------------------------------------------------------------------------

# without_alcove_env CMD...  runs CMD with every ALCOVE_* variable removed from its environment
# (the server's configuration is read from such variables; unit tests must not see them).
without_alcove_env() {
    local unset_args=() v
    for v in $(compgen -e); do
        [[ "$v" == ALCOVE_* ]] && unset_args+=(-u "$v")
    done
    env "${unset_args[@]}" "$@"
}

# sha256_of FILE...  one hash for the concatenation of the files.
sha256_of() { cat -- "$@" | sha256sum | awk '{ print $1 }'; }
