#!/usr/bin/env bash
# Create .venv and install ImgKit into it (editable, with test tools). Idempotent; pip's
# downloads are cached in .cache/pip inside the clone.
#   bash deploy/setup.sh            Python packages only (enough for `imgkit dev`)
#   bash deploy/setup.sh --system   also Debian packages for screenshots, OCR, nginx tests, exiftool
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
export PIP_CACHE_DIR="$ROOT/.cache/pip" PIP_DISABLE_PIP_VERSION_CHECK=1

if [ "${1:-}" = "--system" ]; then
  packages=(chromium nginx tesseract-ocr libimage-exiftool-perl fonts-dejavu-core)
  missing=()
  for p in "${packages[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
  if [ ${#missing[@]} -gt 0 ]; then
    echo "setup: installing Debian packages: ${missing[*]}"
    SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    $SUDO apt-get update -q
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"
  fi
fi

PY="${PYTHON:-python3}"
"$PY" -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
  || { echo "setup: ImgKit needs Python >= 3.11 (found $("$PY" --version))" >&2; exit 1; }
[ -x .venv/bin/python ] || "$PY" -m venv .venv
stamp=".venv/.imgkit-installed"
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  echo "setup: installing Python packages into .venv"
  .venv/bin/pip install -q -U pip
  .venv/bin/pip install -q -e '.[dev]'
  touch "$stamp"
fi
