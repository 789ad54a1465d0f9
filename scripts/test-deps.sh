#!/usr/bin/env bash
# Installs or starts what the tests need, idempotently. The X12 core needs
# only Go; later capabilities add their peers here (apt-get, as root in CI).
set -euo pipefail
command -v go >/dev/null || { echo "test-deps: Go is required" >&2; exit 1; }
