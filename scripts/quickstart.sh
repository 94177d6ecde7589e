#!/usr/bin/env bash
# README command one: install everything, build, and start the Alcove server.
#
#   scripts/quickstart.sh
#
# Runs scripts/setup.sh all, stops a server previously started by this script (so the new
# build is used), then starts `alcove serve` in the background:
#   listen    $ALCOVE_LISTEN      (default 127.0.0.1:8900)
#   data      $ALCOVE_DATA_DIR    (default /var/lib/alcove)
#   images    $ALCOVE_IMAGES_DIR  (default /var/lib/alcove/images)
#   log       /var/log/alcove/server.log
#   pid file  /run/alcove.pid
# and waits until /healthz answers. Stop it with scripts/stop.sh.
set -euo pipefail

# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
require_root

bash "$ALCOVE_REPO/scripts/setup.sh" all

step "starting the Alcove server"
bash "$ALCOVE_REPO/scripts/stop.sh"

[[ -x "$ALCOVE_BIN_PATH" ]] || die "$ALCOVE_BIN_PATH is missing (did the build step run?)"
[[ -x "$ALCOVE_AGENT_BUILD_PATH" ]] || die "$ALCOVE_AGENT_BUILD_PATH is missing"
mkdir -p "$ALCOVE_LOG_DIR" "$ALCOVE_DATA_DIR" "$(dirname "$ALCOVE_PID_FILE")"
LOG="$ALCOVE_LOG_DIR/server.log"
printf '\n===== %s: %s serve (quickstart) =====\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$ALCOVE_BIN_PATH" >>"$LOG"

# setsid: its own session, so the server outlives this shell; nohup: ignore SIGHUP.
# Both exec, so $! is the server's pid.
RUST_LOG="${RUST_LOG:-info}" setsid nohup "$ALCOVE_BIN_PATH" serve \
    --listen "$ALCOVE_LISTEN" \
    --data-dir "$ALCOVE_DATA_DIR" \
    --images-dir "$ALCOVE_IMAGES_DIR" \
    --agent-path "$ALCOVE_AGENT_BUILD_PATH" \
    </dev/null >>"$LOG" 2>&1 &
pid=$!
echo "$pid" >"$ALCOVE_PID_FILE"

url="http://$ALCOVE_LISTEN"
deadline=$((SECONDS + ${ALCOVE_START_TIMEOUT:-30}))
until curl -sf -o /dev/null --max-time 2 "$url/healthz"; do
    if ! kill -0 "$pid" 2>/dev/null; then
        echo "----- $LOG (last 50 lines) -----" >&2
        tail -n 50 "$LOG" >&2
        rm -f "$ALCOVE_PID_FILE"
        die "alcove serve exited during startup (see the log above)"
    fi
    if ((SECONDS >= deadline)); then
        echo "----- $LOG (last 50 lines) -----" >&2
        tail -n 50 "$LOG" >&2
        die "alcove serve did not answer $url/healthz within ${ALCOVE_START_TIMEOUT:-30}s (pid $pid still running; scripts/stop.sh stops it)"
    fi
    sleep 0.2
done

cat <<MSG

  Alcove is running: $url   (pid $pid, ready after $(elapsed) s in all)
    health   curl $url/healthz
    log      $LOG
    data     $ALCOVE_DATA_DIR      images $ALCOVE_IMAGES_DIR
    stop     $ALCOVE_REPO/scripts/stop.sh

MSG
