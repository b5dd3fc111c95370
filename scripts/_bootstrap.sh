# shellcheck shell=bash
# Shared setup for scripts/test and scripts/dev. Source it; don't run it.
#
# After sourcing, the cwd is the repository root and these are defined:
#   ESSEN_ROOT  absolute path of the repository root
#   VENV        $ESSEN_ROOT/.venv
#   VPY         the venv's python (use "$VPY -m tool" so moved venvs still work)
# Functions:
#   header TEXT          print a step header
#   die TEXT             print an error and exit 1
#   ensure_python_env    create .venv (Python 3.11) and `pip install -e '.[test]'`
#                        when pyproject.toml changed since the last install
#   ensure_node_peers    `npm ci` in tests/interop/node when node_modules is
#                        missing or package-lock.json changed
#   ensure_browser       install Debian's chromium if browser tests are enabled

ESSEN_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ESSEN_ROOT"

VENV="$ESSEN_ROOT/.venv"
VPY="$VENV/bin/python"
PY_STAMP="$VENV/.essen-pyproject.sha256"
NODE_PEERS_DIR="$ESSEN_ROOT/tests/interop/node"
NODE_STAMP_NAME=".essen-package-lock.sha256"   # lives inside node_modules/

header() { printf '\n==> %s\n' "$*"; }
die() { printf '\nERROR: %s\n' "$*" >&2; exit 1; }

_sha256() { sha256sum "$1" | cut -d' ' -f1; }

# Print the path of a working Python 3.11 interpreter (with the venv module).
_find_python311() {
    local cand path
    for cand in python3.11 /usr/bin/python3.11 /usr/local/bin/python3.11 python3; do
        path="$(command -v "$cand" 2>/dev/null)" || continue
        if "$path" -c 'import sys, venv; sys.exit(sys.version_info[:2] != (3, 11))' \
            >/dev/null 2>&1; then
            printf '%s\n' "$path"
            return 0
        fi
    done
    return 1
}

_venv_ok() {
    [[ -x "$VPY" ]] &&
        "$VPY" -c 'import sys, pip; sys.exit(sys.version_info[:2] != (3, 11))' >/dev/null 2>&1
}

ensure_python_env() {
    if ! _venv_ok; then
        local py
        py="$(_find_python311)" || die "Python 3.11 not found (tried python3.11, /usr/bin/python3.11, python3)."
        if [[ -e "$VENV" ]]; then
            header "Recreating broken or non-3.11 virtualenv at .venv"
            rm -rf "$VENV"
        else
            header "Creating virtualenv .venv with $py"
        fi
        "$py" -m venv "$VENV" || die "could not create .venv with $py"
    fi

    local want have=""
    want="$(_sha256 pyproject.toml)"
    [[ -f "$PY_STAMP" ]] && have="$(cat "$PY_STAMP")"
    if [[ "$want" != "$have" || ! -e "$VENV/bin/essen" ]]; then
        header "Installing essen and test dependencies (pip install -e '.[test]')"
        rm -f "$PY_STAMP"
        # pip -q still lets the build backend's warnings through; keep them in
        # a log and show it only when the install fails.
        local log="$VENV/.essen-pip-install.log"
        if ! "$VPY" -m pip install --quiet --disable-pip-version-check -e '.[test]' >"$log" 2>&1; then
            cat "$log" >&2
            die "pip install -e '.[test]' failed (output above, also in .venv/${log##*/})"
        fi
        # Hash taken before the install: if pyproject.toml changed meanwhile,
        # the next run installs again.
        printf '%s\n' "$want" >"$PY_STAMP"
    fi
}

ensure_node_peers() {
    [[ -f "$NODE_PEERS_DIR/package-lock.json" ]] || return 0
    command -v npm >/dev/null 2>&1 ||
        die "npm not found: Node.js 20+ and npm are needed for the interop peers in tests/interop/node"

    local want have="" stamp="$NODE_PEERS_DIR/node_modules/$NODE_STAMP_NAME"
    want="$(_sha256 "$NODE_PEERS_DIR/package-lock.json")"
    [[ -f "$stamp" ]] && have="$(cat "$stamp")"
    if [[ "$want" != "$have" ]]; then
        header "Installing Node interop peers (npm ci in tests/interop/node)"
        (cd "$NODE_PEERS_DIR" && npm ci --no-audit --no-fund --loglevel=warn) ||
            die "npm ci failed in tests/interop/node"
        printf '%s\n' "$want" >"$stamp"
    fi
}

# The dashboard: `npm ci` when its lock changed, `npm run build` when its
# sources changed (stamps keyed by content hashes, so repeated runs are quick).
ensure_dashboard() {
    local dir="$ESSEN_ROOT/dashboard"
    [[ -f "$dir/package-lock.json" ]] || return 0
    command -v npm >/dev/null 2>&1 ||
        die "npm not found: Node.js 20+ and npm are needed to build the dashboard"
    local want have="" stamp="$dir/node_modules/$NODE_STAMP_NAME"
    want="$(_sha256 "$dir/package-lock.json")"
    [[ -f "$stamp" ]] && have="$(cat "$stamp")"
    if [[ "$want" != "$have" ]]; then
        header "Installing the dashboard's packages (npm ci in dashboard/)"
        (cd "$dir" && npm ci --no-audit --no-fund --loglevel=warn) || die "npm ci failed in dashboard/"
        printf '%s\n' "$want" >"$stamp"
    fi
    local sources build_stamp="$dir/dist/.essen-build.sha256"
    sources="$(cd "$dir" && find src package.json package-lock.json build.mjs -type f 2>/dev/null \
        | LC_ALL=C sort | xargs cat 2>/dev/null | _sha256 /dev/stdin)"
    have=""
    [[ -f "$build_stamp" ]] && have="$(cat "$build_stamp")"
    if [[ "$sources" != "$have" || ! -f "$dir/dist/index.html" ]]; then
        header "Building the dashboard (npm run build in dashboard/)"
        (cd "$dir" && npm run build --silent) || die "the dashboard build failed"
        printf '%s\n' "$sources" >"$build_stamp"
    fi
}

# Browser tests use Debian's chromium (/usr/bin/chromium): test tools can't
# download their own browser builds on these machines. Only needed once the
# dashboard exists or when asked for with ESSEN_BROWSER_TESTS=1.
ensure_browser() {
    if [[ "${ESSEN_BROWSER_TESTS:-}" != "1" && ! -f "$ESSEN_ROOT/dashboard/package.json" ]]; then
        return 0
    fi
    [[ -x /usr/bin/chromium ]] && return 0
    header "Installing Debian's chromium for browser tests (apt-get)"
    local sudo=()
    if [[ "$(id -u)" != 0 ]]; then
        command -v sudo >/dev/null 2>&1 || die "chromium is missing and installing it needs root (or sudo)"
        sudo=(sudo)
    fi
    # apt/dpkg stay chatty even with -qq: keep their output in a log and show
    # it only when the install fails.
    local log="${TMPDIR:-/tmp}/essen-apt-chromium.$$.log"
    if ! { "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq &&
        "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; } \
        >"$log" 2>&1; then
        cat "$log" >&2
        die "apt-get install chromium failed (output above, also in $log)"
    fi
    rm -f "$log"
    [[ -x /usr/bin/chromium ]] || die "chromium installed but /usr/bin/chromium is missing"
}

# wait_for SECONDS NAME CMD...: poll CMD until it succeeds or time runs out.
wait_for() {
    local secs="$1" name="$2"; shift 2
    local i
    for (( i = 0; i < secs * 2; i++ )); do
        "$@" >/dev/null 2>&1 && return 0
        sleep 0.5
    done
    echo "WARNING: $name still not ready after ${secs}s" >&2
    return 1
}

pg_up() {
    if command -v pg_isready >/dev/null 2>&1; then
        pg_isready -q -h 127.0.0.1 -p 5432
    else
        (exec 3<>/dev/tcp/127.0.0.1/5432) 2>/dev/null
    fi
}

redis_up() {
    [[ "$(redis-cli -h 127.0.0.1 ping 2>/dev/null)" == "PONG" ]]
}

# ensure_services: the machine's PostgreSQL (127.0.0.1:5432) and Redis
# (127.0.0.1:6379) must be up for the integration tests; start them if they
# are down (the commands the machine's own start-up uses).
ensure_services() {
    if pg_up; then
        echo "==> PostgreSQL is up on 127.0.0.1:5432"
    else
        echo "==> Starting PostgreSQL"
        if pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | sort -V | tail -n 1)" main start; then
            wait_for 30 PostgreSQL pg_up || true
        else
            echo "WARNING: could not start PostgreSQL; tests that need it will fail" >&2
        fi
    fi

    if redis_up; then
        echo "==> Redis is up on 127.0.0.1:6379"
    else
        echo "==> Starting Redis"
        mkdir -p /var/lib/redis /var/log/redis
        if redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" \
            --appendonly no --dir /var/lib/redis --logfile /var/log/redis/ci.log; then
            wait_for 15 Redis redis_up || true
        else
            echo "WARNING: could not start Redis; tests that need it will fail" >&2
        fi
    fi
}
