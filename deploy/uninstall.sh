#!/usr/bin/env bash
# Stops crisp and removes what deploy/install.sh installed. State (/var/lib/crisp), logs and
# /etc/crisp stay unless --purge is given. Running containers keep running; stop pods first.
set -euo pipefail
prefix=${CRISP_PREFIX:-/opt/crisp}
if [ -d /run/systemd/system ] && [ -e /etc/systemd/system/crisp.service ]; then
    systemctl disable --now crisp.service || true
    rm -f /etc/systemd/system/crisp.service
    systemctl daemon-reload
elif [ -s /run/crisp/crisp.pid ]; then
    pid=$(cat /run/crisp/crisp.pid)
    if kill -0 "$pid" 2>/dev/null; then
        kill -TERM "$pid"
        for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    fi
    rm -f /run/crisp/crisp.pid
fi
rm -f /usr/local/bin/crisp
rm -rf "$prefix"
rm -f /etc/cni/net.d/10-crisp-bridge.conflist
if [ "${1:-}" = --purge ]; then
    rm -rf /etc/crisp /var/lib/crisp /var/log/crisp
    # The default cgroup parent, once no pod is left below it (rmdir refuses otherwise).
    for dir in /sys/fs/cgroup/*/crisp /sys/fs/cgroup/crisp; do
        [ -d "$dir" ] && rmdir "$dir" 2>/dev/null || true
    done
fi
