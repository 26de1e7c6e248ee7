#!/usr/bin/env bash
# checkov on terraform/, from its own venv: checkov pins its dependencies (boto3 among
# them) and would clash with the project's .venv. The venv is made on first use (about
# 25 s) and reused after: idempotent, and a lock serialises concurrent first runs.
#
#   bash .ci/checkov.sh            # checkov -d terraform --quiet --compact --skip-download
#   bash .ci/checkov.sh -o json    # extra arguments go to checkov
#
# CHECKOV_VENV overrides where the venv lives (default: .venv-checkov in the repo, which
# ignores itself: it holds a .gitignore of "*"). No --skip-check here: each skipped check
# is an inline #checkov:skip comment next to its resource, listed with its reason in
# terraform/README.md. --skip-download: no Prisma Cloud look-up (offline, reproducible).
#
# Exit status: checkov's (0 clean, 1 failed checks), or 70 when checkov could not be
# installed (tests/unit/test_terraform.py reports that as "checkov not available").
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
CHECKOV_VERSION="3.3.30"
venv="${CHECKOV_VENV:-$PWD/.venv-checkov}"
python="${CHECKOV_PYTHON:-python3}"
stamp="$venv/.checkov-$CHECKOV_VERSION"

install() {
    [ -x "$venv/bin/checkov" ] && [ -f "$stamp" ] && return 0
    echo "checkov.sh: installing checkov==$CHECKOV_VERSION into $venv" >&2
    rm -rf "$venv"
    "$python" -m venv "$venv"
    printf '*\n' >"$venv/.gitignore"
    local log="$venv/pip-install.log"
    if ! "$venv/bin/python" -m pip install --disable-pip-version-check \
        "checkov==$CHECKOV_VERSION" >"$log" 2>&1; then
        tail -n 30 "$log" >&2
        echo "checkov.sh: pip install checkov==$CHECKOV_VERSION failed (log: $log)" >&2
        return 1
    fi
    touch "$stamp"
}

if command -v flock >/dev/null 2>&1; then
    lock="${TMPDIR:-/tmp}/vault-dr-checkov-$(id -u).lock"
    (flock 9 && install) 9>"$lock" || exit 70
else
    install || exit 70
fi

exec "$venv/bin/checkov" -d terraform --quiet --compact --skip-download "$@"
