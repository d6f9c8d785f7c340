#!/usr/bin/env bash
# Installs everything crisp's checks and tests need on Debian 12 (run as root), then runs
# them all: generated-code and README freshness, ruff, mypy, and the pytest suite.
set -euo pipefail
cd "$(dirname "$0")/.."

export DEBIAN_FRONTEND=noninteractive
if [ "${CRISP_SKIP_APT:-}" != 1 ]; then
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends \
        python3 python3-venv python3-pip ca-certificates \
        containernetworking-plugins iproute2 iptables libseccomp2 util-linux \
        busybox-static docker-registry >/dev/null
fi

venv=.venv
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
"$venv/bin/python" -m pip install -q --disable-pip-version-check -e '.[dev]'
export PATH="$PWD/$venv/bin:$PATH"
# Test daemons are fresh interpreters: byte-compile crisp once, even where the environment
# sets PYTHONDONTWRITEBYTECODE, instead of every daemon compiling it again.
python -m compileall -q cri sandbox runtime imagesvc cni critest proto bench

echo "== generated code and README are up to date"
python proto/generate.py --check
python .ci/readme_reference.py --check
echo "== ruff"
ruff check .
ruff format --check .
echo "== mypy"
mypy
echo "== pytest"
python -m pytest -q -p no:cacheprovider "$@"
