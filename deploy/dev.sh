#!/usr/bin/env bash
# Quick start: install ImgKit into .venv if needed, then run everything in one process
# (`imgkit dev`: in-process bus, embedded ClickHouse). Extra arguments go to `imgkit dev`.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$ROOT/deploy/setup.sh"
cd "$ROOT"
exec .venv/bin/imgkit dev "$@"
