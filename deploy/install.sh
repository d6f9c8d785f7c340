#!/usr/bin/env bash
# Installs crisp on Debian 12 from this checkout and starts it with its embedded defaults:
# socket /run/crisp/crisp.sock, state under /var/lib/crisp, the default CNI network when
# /etc/cni/net.d has none. Run as root. Safe to run again (it upgrades and restarts).
set -euo pipefail
src=$(cd "$(dirname "$0")/.." && pwd)
prefix=${CRISP_PREFIX:-/opt/crisp}

export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends \
    python3 python3-venv python3-pip ca-certificates \
    containernetworking-plugins iproute2 iptables libseccomp2 util-linux >/dev/null

[ -x "$prefix/venv/bin/python" ] || python3 -m venv "$prefix/venv"
"$prefix/venv/bin/python" -m pip install -q --disable-pip-version-check --upgrade "$src"
ln -sf "$prefix/venv/bin/crisp" /usr/local/bin/crisp

install -d -m 0755 /etc/crisp /etc/crisp/crisp.d
if [ ! -e /etc/crisp/crisp.toml ]; then
    cat >/etc/crisp/crisp.toml <<'TOML'
# crisp configuration. Empty means crisp's embedded defaults; `crisp config` prints the
# effective configuration and `crisp config --reference` documents every key.
# Files in /etc/crisp/crisp.d/*.toml are applied after this one, in name order.
TOML
fi

# crisp writes its default bridge network into /etc/cni/net.d at start when that holds no
# network (cni.write_default_network).

socket=$(crisp config | sed -n 's/^socket = "\(.*\)"$/\1/p' | head -n1)
if [ -d /run/systemd/system ]; then
    install -m 0644 "$src/deploy/crisp.service" /etc/systemd/system/crisp.service
    systemctl daemon-reload
    systemctl enable crisp.service >/dev/null
    systemctl restart crisp.service
else
    # No systemd: run in the background with a pid file and a log file.
    install -d -m 0711 /run/crisp
    install -d -m 0755 /var/log/crisp
    pidfile=/run/crisp/crisp.pid
    if [ -s "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null; then
        old=$(cat "$pidfile")
        kill -TERM "$old"
        for _ in $(seq 100); do kill -0 "$old" 2>/dev/null || break; sleep 0.1; done
    fi
    setsid crisp serve >>/var/log/crisp/crisp.log 2>&1 </dev/null &
    echo $! >"$pidfile"
fi

for _ in $(seq 150); do
    if crisp status --timeout 1 >/dev/null 2>&1; then
        crisp status
        exit 0
    fi
    sleep 0.2
done
echo "crisp did not come up on $socket; see /var/log/crisp/crisp.log or journalctl -u crisp" >&2
exit 1
