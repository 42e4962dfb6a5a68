#!/bin/sh
# Installs heroku-audit-trail from this checkout into ./.venv (or $1), on a machine that has
# only python3. Debian ships venv/ensurepip separately: install python3-venv when it is missing.
set -eu
cd "$(dirname "$0")/.."
venv=${1:-.venv}
extras=${EXTRAS:-}

if ! python3 -c 'import ensurepip, venv' 2>/dev/null; then
    ver=$(python3 -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')
    sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    $sudo apt-get update -qq
    $sudo apt-get install -y -qq "python${ver}-venv" >/dev/null || $sudo apt-get install -y -qq python3-venv >/dev/null
fi
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
"$venv/bin/python" -m pip install --quiet --upgrade pip
"$venv/bin/python" -m pip install --quiet -e ".${extras:+[$extras]}"
echo "installed: $venv/bin/heroku-audit-trail" >&2
