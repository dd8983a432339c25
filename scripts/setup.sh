#!/usr/bin/env bash
# Set up (or bring up to date) everything Loupe needs to run from this checkout:
#   .venv (Python 3.11) with torch first, then the project with its dev extras; front-end
#   libraries from the npm registry copied into static/vendor/; collected static files;
#   database migrations.
#   --test   also make sure Debian's Chromium is installed for the browser tests.
#
# Idempotent and quick when nothing changed: the installs are keyed on a hash of the files that
# declare dependencies (.setup-stamp, git-ignored), collected static files on a hash of static/.
# Migrations always run (a no-op costs about a second, and LOUPE_DATA_DIR may point elsewhere).
set -euo pipefail
cd "$(dirname "$0")/.."

want_chromium=0
for arg in "$@"; do
  case "$arg" in
    --test) want_chromium=1 ;;
    *) echo "usage: scripts/setup.sh [--test]" >&2; exit 2 ;;
  esac
done

say() { printf 'setup: %s\n' "$*"; }
hash_files() { cat "$@" 2>/dev/null | sha256sum | cut -d' ' -f1; }

# --- Python environment and front-end libraries ------------------------------------------------
PYTHON=${PYTHON:-python3.11}
if ! command -v "$PYTHON" >/dev/null 2>&1; then
  PYTHON=python3
fi
install_key=$(hash_files pyproject.toml package.json package-lock.json scripts/setup.sh scripts/vendor.sh)
if [[ ! -x .venv/bin/python || "$(cat .setup-stamp 2>/dev/null)" != "$install_key" ]]; then
  if [[ ! -x .venv/bin/python ]]; then
    version=$("$PYTHON" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
    if [[ "$version" != "3.11" ]]; then
      echo "setup: Loupe needs Python 3.11; $PYTHON is $version (set PYTHON=...)." >&2
      exit 1
    fi
    say "creating .venv with $PYTHON"
    "$PYTHON" -m venv .venv
  fi
  pip=(.venv/bin/python -m pip --disable-pip-version-check)
  # torch first and pinned, to the wheels this machine's pip configuration finds on local disk;
  # left to the resolver (timm, torchvision...) it could pick another build from the registry.
  say "installing torch and torchvision"
  "${pip[@]}" install --quiet --progress-bar off "torch==2.14.1" "torchvision==0.29.1"
  say "installing Loupe and its dependencies"
  "${pip[@]}" install --quiet --progress-bar off -e ".[dev]"
  say "installing front-end libraries (npm ci)"
  npm ci --no-audit --no-fund --loglevel=error
  scripts/vendor.sh
  echo "$install_key" > .setup-stamp
fi

# --- Static files ------------------------------------------------------------------------------
# Collected again when our static/ changes or the packages that ship static files change.
static_key=$( (echo "$install_key"; find static -type f -print0 | sort -z | xargs -0 sha256sum) \
  | sha256sum | cut -d' ' -f1)
static_root=${LOUPE_STATIC_ROOT:-staticfiles}
if [[ "$(cat "$static_root/.setup-stamp" 2>/dev/null)" != "$static_key" ]]; then
  say "collecting static files"
  .venv/bin/python manage.py collectstatic --noinput --clear --verbosity 0
  echo "$static_key" > "$static_root/.setup-stamp"
fi

# --- Database ----------------------------------------------------------------------------------
# --skip-checks: the system checks import every URLconf and view (a second or more); the run
# command and the tests run them anyway.
.venv/bin/python manage.py migrate --noinput --verbosity 0 --skip-checks

# --- Browser for the tests ---------------------------------------------------------------------
if [[ $want_chromium == 1 && ! -x /usr/bin/chromium ]]; then
  # Debian's package: Playwright's own browser download would need the internet.
  say "installing Debian's chromium"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
fi
say "ready"
