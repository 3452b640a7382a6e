#!/usr/bin/env bash
# Install what the interop test suite needs. Idempotent and fast when
# everything is already there:
#   - Debian packages (mosquitto, mosquitto-clients, openssl, libcoap3-bin, postgresql, mariadb-server,
#     redis-server), apt-get update only if an install is actually needed;
#   - a Python venv at interop-tests/.venv with interop-tests/requirements.txt.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/interop-tests/.venv"
REQ="$ROOT/interop-tests/requirements.txt"
PYTHON="${PYTHON:-python3}"

# --- Debian packages ---------------------------------------------------------
missing=()
# openssl: the command line makes the test certificates of test_transports.py, and its
# s_client is the DTLS interop peer of portico-transport's tests (src/dtls/tests/openssl.rs).
# libcoap3-bin: coap-client-notls / coap-client-openssl, the CoAP interop peers (test_coap.py).
# postgresql, mariadb-server, redis-server: the database backend tests (scripts/test-services.sh
# runs them on loopback; the Debian services themselves are not used).
for pkg in mosquitto mosquitto-clients openssl libcoap3-bin postgresql mariadb-server redis-server; do
    if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed"; then
        missing+=("$pkg")
    fi
done
# The venv module must work with the chosen python (Debian splits it out).
if ! "$PYTHON" -c 'import venv, ensurepip' >/dev/null 2>&1; then
    missing+=(python3-venv)
fi
if ((${#missing[@]})); then
    SUDO=""
    if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
    echo "install-test-deps: installing Debian packages: ${missing[*]}"
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -q
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

# --- Python venv ---------------------------------------------------------------
if [ ! -x "$VENV/bin/python" ]; then
    echo "install-test-deps: creating $VENV"
    "$PYTHON" -m venv "$VENV"
fi

# Fast no-op check: are all pinned requirements already satisfied?
if ! "$VENV/bin/python" - "$REQ" <<'PY' >/dev/null 2>&1
import sys
from importlib.metadata import version, PackageNotFoundError
ok = True
for line in open(sys.argv[1]):
    line = line.split("#", 1)[0].strip()
    if not line:
        continue
    name, _, want = line.partition("==")
    try:
        if want and version(name.strip()) != want.strip():
            ok = False
    except PackageNotFoundError:
        ok = False
sys.exit(0 if ok else 1)
PY
then
    echo "install-test-deps: installing Python requirements"
    "$VENV/bin/python" -m pip install -q --disable-pip-version-check -r "$REQ"
fi
# --- Node: @stomp/stompjs for test_stomp.py (skipped there when absent) ----------------------
# The browser STOMP library on Node 20's WebSocket (--experimental-websocket). Reinstalled when
# the pinned version in package.json differs from the installed one.
STOMPJS="$ROOT/interop-tests/stompjs"
if command -v npm >/dev/null 2>&1; then
    want="$(node -p "require('$STOMPJS/package.json').dependencies['@stomp/stompjs']")"
    have="$(node -p "try { require('$STOMPJS/node_modules/@stomp/stompjs/package.json').version } catch (e) { '' }")"
    if [ "$want" != "$have" ]; then
        echo "install-test-deps: installing @stomp/stompjs $want"
        (cd "$STOMPJS" && npm ci --no-audit --no-fund -q)
    fi
else
    echo "install-test-deps: npm not found; test_stomp.py's stompjs test will be skipped"
fi
echo "install-test-deps: ok"
