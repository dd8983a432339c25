#!/usr/bin/env bash
# Every check CI runs, in order: ruff (lint and format), import contracts, mypy, migrations in
# step with the models, the whole pytest suite on SQLite (browser tests included), then again on
# PostgreSQL without the browser tests and the `sqlite_only` ones (they make their own database).
# Every step runs even if an earlier one failed; the exit status is non-zero if any failed.
# Expects scripts/setup.sh --test to have run (`make test` does both).
#
# PostgreSQL: DATABASE_URL for the second pass is TEST_POSTGRES_URL, default
# postgres://postgres@127.0.0.1:5432/loupe. If it does not answer, the pass is skipped with a
# notice on a developer machine and fails under CI=true (CI always has PostgreSQL).
#
# Arguments are passed to both pytest runs, e.g. `scripts/test.sh tests/project -x`.
set -uo pipefail
cd "$(dirname "$0")/.."

py=.venv/bin/python
pg_url=${TEST_POSTGRES_URL:-postgres://postgres@127.0.0.1:5432/loupe}
failed=()

step() {  # step NAME COMMAND...: run it, remember a failure
  local name=$1
  shift
  printf '\n=== %s\n' "$name"
  local started=$SECONDS
  "$@"
  local rc=$?
  if [[ $rc == 5 ]]; then
    echo "=== $name: pytest collected no tests (exit code 5): that is a failure here." >&2
  fi
  if [[ $rc != 0 ]]; then
    failed+=("$name (exit code $rc)")
  fi
  printf '=== %s: %s in %d s\n' "$name" "$([[ $rc == 0 ]] && echo ok || echo FAILED)" \
    $((SECONDS - started))
}

postgres_answers() {
  "$py" - "$pg_url" <<'PY'
import sys

import psycopg

url = sys.argv[1]
server, _, name = url.rpartition("/")
try:
    with psycopg.connect(f"{server}/postgres", connect_timeout=3, autocommit=True) as conn:
        # The test database is created by Django; the main one only has to exist to connect to.
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone():
            conn.execute(f'CREATE DATABASE "{name}"')
except psycopg.Error as err:
    print(f"PostgreSQL at {server} does not answer: {err}", file=sys.stderr)
    sys.exit(1)
PY
}

step "ruff check" .venv/bin/ruff check .
step "ruff format --check" .venv/bin/ruff format --check --output-format concise .
step "import contracts" .venv/bin/lint-imports
step "mypy" .venv/bin/mypy
step "migrations match the models" "$py" manage.py makemigrations --check --dry-run
step "pytest on SQLite" env -u DATABASE_URL "$py" -m pytest "$@"
if postgres_answers; then
  step "pytest on PostgreSQL" env DATABASE_URL="$pg_url" \
    "$py" -m pytest -m "not browser and not sqlite_only" "$@"
elif [[ "${CI:-}" == "true" ]]; then
  failed+=("PostgreSQL is not reachable at $pg_url, and CI must test on it")
else
  echo "=== pytest on PostgreSQL: SKIPPED, no PostgreSQL at $pg_url (CI fails instead)" >&2
fi

echo
if ((${#failed[@]})); then
  printf 'FAILED: %s\n' "${failed[@]}" >&2
  exit 1
fi
echo "All checks passed."
