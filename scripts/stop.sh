#!/usr/bin/env bash
# Stop the Alcove server started by scripts/quickstart.sh (pid file /run/alcove.pid).
#
#   scripts/stop.sh
#
# SIGTERM first (the server finishes and stops; its sandboxes keep running and are adopted by
# the next start, see docs/operations.md#recovery), SIGKILL after $ALCOVE_STOP_TIMEOUT seconds
# (default 30). Does nothing, successfully, when no server is running.
set -euo pipefail

# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

timeout_s="${ALCOVE_STOP_TIMEOUT:-30}"

if [[ ! -f "$ALCOVE_PID_FILE" ]]; then
    log "no Alcove server running (no $ALCOVE_PID_FILE)"
    exit 0
fi
pid="$(tr -dc '0-9' <"$ALCOVE_PID_FILE")"
if [[ -z "$pid" ]] || ! kill -0 "$pid" 2>/dev/null; then
    log "no Alcove server running (stale $ALCOVE_PID_FILE removed)"
    rm -f "$ALCOVE_PID_FILE"
    exit 0
fi
# Only signal the process if it really is an alcove server (the pid may have been reused).
cmdline="$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null || true)"
if [[ "$cmdline" != *alcove*serve* ]]; then
    log "pid $pid from $ALCOVE_PID_FILE is not an alcove server ('$cmdline'); removing the stale pid file"
    rm -f "$ALCOVE_PID_FILE"
    exit 0
fi

log "stopping the Alcove server (pid $pid)"
kill -TERM "$pid" 2>/dev/null || true
for ((i = 0; i < timeout_s * 10; i++)); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
done
if kill -0 "$pid" 2>/dev/null; then
    warn "the server did not stop within ${timeout_s}s; sending SIGKILL"
    kill -KILL "$pid" 2>/dev/null || true
    for ((i = 0; i < 50; i++)); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
fi
rm -f "$ALCOVE_PID_FILE"
log "stopped"
