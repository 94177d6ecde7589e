#!/usr/bin/env bash
# Builds Alcove at another commit (a benchmark's baseline) beside this checkout.
#
#   bench/build_baseline.sh COMMIT     -> prints the directory holding `alcove`, `alcove-hook` (where that
#                                         commit has it) and `alcove-agent`
#
# The build lives under $ALCOVE_CACHE_DIR/bench-baseline/<commit> (a git worktree with its own
# target directory) and is reused when it is already there.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=../scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/../scripts/lib.sh"

[[ $# -eq 1 ]] || die "usage: bench/build_baseline.sh COMMIT"
commit="$(git -C "$ALCOVE_REPO" rev-parse --verify "$1^{commit}")"
dir="$ALCOVE_CACHE_DIR/bench-baseline/$commit"
out="$dir/bin"
if [[ -x "$out/alcove" && -x "$out/alcove-agent" ]]; then
    echo "$out"
    exit 0
fi
mkdir -p "$ALCOVE_CACHE_DIR/bench-baseline"
if [[ ! -d "$dir/src" ]]; then
    git -C "$ALCOVE_REPO" worktree add --detach "$dir/src" "$commit" >&2
fi
(
    cd "$dir/src"
    export CARGO_TARGET_DIR="$dir/target"
    cargo build --release --locked -p alcove-cli >&2
    # Commits before the dedicated hook binary run `alcove __hook` instead.
    if [[ -d crates/hook ]]; then
        cargo build --release --locked -p alcove-hook >&2
    fi
    RUSTFLAGS="-C target-feature=+crt-static" \
        cargo build --release --locked -p alcove-agent --target x86_64-unknown-linux-gnu >&2
)
mkdir -p "$out"
install -m 0755 "$dir/target/release/alcove" "$out/alcove"
if [[ -x "$dir/target/release/alcove-hook" ]]; then
    install -m 0755 "$dir/target/release/alcove-hook" "$out/alcove-hook"
fi
install -m 0755 "$dir/target/x86_64-unknown-linux-gnu/release/alcove-agent" "$out/alcove-agent"
echo "$out"
