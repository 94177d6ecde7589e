#!/usr/bin/env bash
# README command two: set everything up, then run the whole test suite, in two stages.
#
#   scripts/test.sh [--quick] [--no-setup] [--fast-only] [-- PYTEST_ARGS...]
#
# Stage one is fast and needs no root, runc or CRIU: the first signal of a mistake comes in
# minutes. Stage two starts real servers and sandboxes as root. Stages stop at the first
# failure (a summary with each one's time is always printed):
#
#   setup-base   scripts/setup.sh packages tools python node   (skipped with --no-setup)
#   -- stage one: unprivileged ---------------------------------------------------------------
#   fmt          cargo fmt --all -- --check
#   clippy       cargo clippy --workspace --all-targets -- -D warnings   (skipped with --quick)
#   deps         cargo machete: no crate declares a dependency it does not use
#   unit         cargo nextest run --workspace: unit and crate tests, the control plane
#                against its in-memory node, contract checks (no root-only test)
#   sdk-unit     the Python SDK's unit tests, the TypeScript SDK's unit tests
#   -- stage two: root ------------------------------------------------------------------------
#   setup-root   scripts/setup.sh criu sysctl image build  (skipped with --no-setup)
#   root-tests   cargo nextest run --workspace --run-ignored only (tests marked #[ignore] that
#                need root, runc or a built server)
#   ts-e2e       the TypeScript SDK's end-to-end tests
#   pytest-e2e   the end-to-end suite (tests/, config tests/pytest.ini)
#
# --fast-only stops after stage one.
# The two pytest runs are separate because each directory has its own pytest configuration.
# PYTEST_ARGS go to both pytest runs; a pytest run that collects no test fails (exit 5),
# unless PYTEST_ARGS were given and the other run did run tests.
# The cargo stages run with no ALCOVE_* variable in their environment (the server reads its
# configuration from them). The pytest stages get ALCOVE_BIN, ALCOVE_AGENT_PATH and
# ALCOVE_IMAGES_DIR (the e2e tests start their own servers on free ports).
# ALCOVE_STAGE_TIMEOUT (seconds, default 2400) bounds each test stage.
set -euo pipefail

# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

QUICK=0
SETUP=1
FAST_ONLY=0
PYTEST_ARGS=()
while [[ $# -gt 0 ]]; do
    case "$1" in
        --quick) QUICK=1 ;;
        --no-setup) SETUP=0 ;;
        --fast-only) FAST_ONLY=1 ;;
        --)
            shift
            PYTEST_ARGS=("$@")
            break
            ;;
        -h | --help)
            sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'
            exit 0
            ;;
        *) die "unknown argument '$1' (pytest arguments go after --)" ;;
    esac
    shift
done

cd "$ALCOVE_REPO"
STAGE_TIMEOUT="${ALCOVE_STAGE_TIMEOUT:-2400}"
VENV_PY="$ALCOVE_REPO/.venv/bin/python"

export ALCOVE_BIN="${ALCOVE_BIN:-$ALCOVE_BIN_PATH}"
export ALCOVE_AGENT_PATH="${ALCOVE_AGENT_PATH:-$ALCOVE_AGENT_BUILD_PATH}"
export ALCOVE_IMAGES_DIR
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"
export PYTHONDONTWRITEBYTECODE=1
# The suite runs many default-size sandboxes (10 GiB sparse layers, each writing a few MB) at
# once, on CI machines that may have only a few GB free: admission by promised disk would
# refuse them. The admission tests pass their own --disk-overcommit.
export ALCOVE_DISK_OVERCOMMIT="${ALCOVE_DISK_OVERCOMMIT:-1000}"

RESULTS=()
CURRENT=""
FAILED=0
print_summary() {
    local rc=$?
    if [[ -n "$CURRENT" ]]; then
        RESULTS+=("FAIL     $CURRENT (interrupted, exit $rc)")
        FAILED=1
    fi
    echo
    echo "==================== test summary ===================="
    local r
    for r in "${RESULTS[@]}"; do
        echo "  $r"
    done
    if [[ $FAILED -eq 0 && $rc -eq 0 ]]; then
        echo "  all stages passed in $(elapsed) s"
    else
        echo "  FAILED after $(elapsed) s"
    fi
    echo "======================================================"
}
trap print_summary EXIT

# run_stage NAME CMD...  runs CMD; records the result; exits on failure.
run_stage() {
    local name="$1" t=$SECONDS rc=0
    shift
    step "test stage: $name"
    CURRENT="$name"
    "$@" || rc=$?
    CURRENT=""
    if [[ $rc -eq 0 ]]; then
        RESULTS+=("ok       $name ($((SECONDS - t)) s)")
    else
        RESULTS+=("FAIL     $name ($((SECONDS - t)) s, exit $rc)")
        FAILED=1
        exit "$rc"
    fi
}

skip_stage() { RESULTS+=("skipped  $1 ($2)"); }

BOUNDED=(timeout --kill-after=60 "$STAGE_TIMEOUT")

# pytest_in DIR [PATH]: pytest from DIR so that DIR's own configuration applies.
PYTEST_RAN=0
pytest_in() {
    local dir="$1" rc=0
    shift
    [[ -x "$VENV_PY" ]] || { echo "missing $VENV_PY: run scripts/setup.sh python" >&2; return 1; }
    [[ -d "$dir" ]] || { echo "missing test directory $dir" >&2; return 1; }
    (cd "$dir" && "${BOUNDED[@]}" "$VENV_PY" -m pytest "$@" -v -p no:cacheprovider "${PYTEST_ARGS[@]}") || rc=$?
    if [[ $rc -eq 5 ]]; then
        if [[ ${#PYTEST_ARGS[@]} -gt 0 ]]; then
            echo "pytest in $dir: no test selected by '${PYTEST_ARGS[*]}' here" >&2
            return 0
        fi
        echo "pytest in $dir collected no tests: that counts as a failure" >&2
        return 5
    fi
    [[ $rc -ne 0 ]] || PYTEST_RAN=1
    return "$rc"
}

if [[ $SETUP -eq 1 ]]; then
    run_stage setup-base bash "$ALCOVE_REPO/scripts/setup.sh" packages tools python node
else
    skip_stage setup-base "--no-setup"
fi

locked=()
[[ -f Cargo.lock ]] && locked=(--locked)
NEXTEST=(cargo nextest run --workspace "${locked[@]}" --no-fail-fast --no-tests fail
    --tool-config-file "alcove:$ALCOVE_REPO/scripts/nextest.toml")

# --- stage one: unprivileged --------------------------------------------------------------
RESULTS+=("-- stage one (unprivileged)")
run_stage fmt without_alcove_env cargo fmt --all -- --check

if [[ $QUICK -eq 0 ]]; then
    run_stage clippy without_alcove_env cargo clippy --workspace --all-targets "${locked[@]}" -- -D warnings
else
    skip_stage clippy "--quick"
fi

run_stage deps without_alcove_env cargo machete

# Per-test time limit comes from scripts/nextest.toml (lower priority than a repo
# .config/nextest.toml, if one is added).
run_stage unit without_alcove_env "${BOUNDED[@]}" "${NEXTEST[@]}"

sdk_unit() {
    pytest_in "$ALCOVE_REPO/sdk/python" tests/unit &&
        (cd "$ALCOVE_REPO/sdk/typescript" && "${BOUNDED[@]}" npm run --silent test:unit)
}
run_stage sdk-unit sdk_unit

if [[ $FAST_ONLY -eq 1 ]]; then
    exit 0
fi

# --- stage two: root ------------------------------------------------------------------------
RESULTS+=("-- stage two (root)")
if [[ $SETUP -eq 1 ]]; then
    run_stage setup-root bash "$ALCOVE_REPO/scripts/setup.sh" criu sysctl image build
else
    skip_stage setup-root "--no-setup"
fi

run_stage root-tests without_alcove_env "${BOUNDED[@]}" "${NEXTEST[@]}" --run-ignored only

if [[ ${#PYTEST_ARGS[@]} -eq 0 ]]; then
    run_stage ts-e2e bash -c 'cd "$1/sdk/typescript" && shift && "$@" npm run --silent test:e2e' _ \
        "$ALCOVE_REPO" "${BOUNDED[@]}"
else
    skip_stage ts-e2e "pytest arguments given"
fi
run_stage pytest-e2e pytest_in "$ALCOVE_REPO/tests"

if [[ $PYTEST_RAN -eq 0 ]]; then
    RESULTS+=("FAIL     pytest: no Python test ran with '${PYTEST_ARGS[*]}'")
    FAILED=1
    exit 5
fi
