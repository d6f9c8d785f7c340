#!/usr/bin/env bash
# Stops crisp and removes what deploy/install.sh installed. Running containers keep running,
# and state, logs and configuration stay, unless --purge is given: then `crisp wipe` removes
# all state (it refuses, and nothing is removed, while pods still run: remove them first)
# and the configuration and logs go too.
#
# Environment: CRISP_PREFIX=DIR for a self-contained installation below DIR (see install.sh);
# --purge then removes DIR entirely.
set -euo pipefail
prefix=${CRISP_PREFIX:-/opt/crisp}
purge=${1:-}

if [ "$prefix" = /opt/crisp ]; then
    etc=/etc/crisp
    root=/var/lib/crisp
    run=/run/crisp
    logs=/var/log/crisp
    cni_conf_dir=/etc/cni/net.d
    flags=()
else
    prefix=$(realpath -m "$prefix")
    etc=$prefix/etc
    root=$prefix/lib
    run=$prefix/run
    logs=$prefix/log
    cni_conf_dir=$etc/net.d
    flags=(--config "$etc/crisp.toml" --config-dir "$etc/crisp.d")
fi
crisp=$prefix/venv/bin/crisp

if [ "$prefix" = /opt/crisp ] && [ -d /run/systemd/system ] &&
    [ -e /etc/systemd/system/crisp.service ]; then
    systemctl disable --now crisp.service || true
    rm -f /etc/systemd/system/crisp.service
    systemctl daemon-reload
elif [ -s "$run/crisp.pid" ]; then
    pid=$(cat "$run/crisp.pid")
    if kill -0 "$pid" 2>/dev/null && grep -qa crisp "/proc/$pid/cmdline"; then
        kill -TERM "$pid"
        for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    fi
    rm -f "$run/crisp.pid"
fi

if [ "$purge" = --purge ]; then
    if [ -x "$crisp" ]; then
        # Before the program goes: wipe knows where the state, mounts and cgroups are.
        if ! "$crisp" wipe "${flags[@]}"; then
            echo "uninstall: crisp wipe refused; nothing was removed" >&2
            exit 1
        fi
    elif grep -qE " ($root|$run)/" /proc/self/mountinfo; then
        # Uninstalled before: without crisp to wipe, state with mounts in it must stay.
        echo "uninstall: mounts remain below $root or $run; remove their pods first" >&2
        exit 1
    else
        rm -rf "$root" "$run"
    fi
fi

if [ "$prefix" = /opt/crisp ]; then
    rm -f /usr/local/bin/crisp
    rm -rf "$prefix"
else
    rm -rf "$prefix/venv"
fi
rm -f "$cni_conf_dir/10-crisp-bridge.conflist"
if [ "$purge" = --purge ]; then
    rm -rf "$etc" "$logs"
    if [ "$prefix" != /opt/crisp ]; then
        rmdir "$prefix" 2>/dev/null || true
    fi
fi
