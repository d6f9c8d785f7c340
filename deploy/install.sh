#!/usr/bin/env bash
# Installs crisp on Debian 12 from this checkout and starts it. Run as root. Safe to run
# again: it upgrades and restarts the daemon, and running containers keep running.
#
# By default crisp runs with its embedded defaults: socket /run/crisp/crisp.sock, state under
# /var/lib/crisp, configuration in /etc/crisp, the default CNI network when /etc/cni/net.d
# has none; the program lives in a venv under /opt/crisp, linked to /usr/local/bin/crisp.
# Under systemd it runs as crisp.service; without systemd in the background, with its pid in
# /run/crisp/crisp.pid and its log in /var/log/crisp/crisp.log.
#
# Environment:
#   CRISP_PREFIX=DIR  install self-contained below DIR instead (DIR other than /opt/crisp):
#                     venv DIR/venv; configuration DIR/etc/crisp.toml and DIR/etc/crisp.d/;
#                     state DIR/lib; run dir DIR/run with the socket DIR/run/crisp.sock and
#                     the pid file DIR/run/crisp.pid; logs DIR/log; CNI configurations
#                     DIR/etc/net.d. No /usr/local/bin link and no systemd unit: crisp runs
#                     in the background, and every crisp command needs
#                     --config DIR/etc/crisp.toml --config-dir DIR/etc/crisp.d.
#                     Settings that would collide with another crisp on the host
#                     (metrics.address, cgroup.parent, cni.write_default_network) go in
#                     DIR/etc/crisp.d/*.toml, before or after installing. Keep DIR short:
#                     a unix socket path holds at most 107 bytes.
#   CRISP_SKIP_APT=1  do not install Debian packages (they are there already).
#   CRISP_ENABLE_KSM=0  leave the kernel's samepage merging (ksmd) as it is. By default an
#                     installation in /opt/crisp turns it on (/sys/kernel/mm/ksm/run = 1,
#                     until the next boot): each container's monitor offers its memory to
#                     KSM, and merged it costs about 1 MiB less. ksmd merges only memory
#                     that opted in (the monitors, and whatever else asked for it), for
#                     some ksmd CPU time.
#                     An installation with CRISP_PREFIX leaves it alone unless
#                     CRISP_ENABLE_KSM=1.
set -euo pipefail
src=$(cd "$(dirname "$0")/.." && pwd)
prefix=${CRISP_PREFIX:-/opt/crisp}

if [ "$prefix" = /opt/crisp ]; then
    etc=/etc/crisp
    run=/run/crisp
    logs=/var/log/crisp
    flags=()  # the embedded defaults and /etc/crisp are what crisp reads anyway
else
    prefix=$(realpath -m "$prefix")
    etc=$prefix/etc
    run=$prefix/run
    logs=$prefix/log
    flags=(--config "$etc/crisp.toml" --config-dir "$etc/crisp.d")
fi
crisp=$prefix/venv/bin/crisp

if [ "${CRISP_SKIP_APT:-}" != 1 ]; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends \
        python3 python3-venv python3-pip ca-certificates \
        containernetworking-plugins iproute2 iptables libseccomp2 util-linux >/dev/null
fi

if [ "$prefix" = /opt/crisp ]; then ksm_default=1; else ksm_default=0; fi
ksm=/sys/kernel/mm/ksm/run
if [ "${CRISP_ENABLE_KSM:-$ksm_default}" = 1 ]; then
    if [ -w "$ksm" ]; then
        echo 1 >"$ksm"
    else
        echo "no $ksm to turn on: container monitors will not share their memory" >&2
    fi
fi

[ -x "$prefix/venv/bin/python" ] || python3 -m venv "$prefix/venv"
"$prefix/venv/bin/python" -m pip install -q --disable-pip-version-check --upgrade "$src"
if [ "$prefix" = /opt/crisp ]; then
    ln -sf "$crisp" /usr/local/bin/crisp
fi

install -d -m 0755 "$etc" "$etc/crisp.d"
if [ ! -e "$etc/crisp.toml" ]; then
    {
        cat <<'TOML'
# crisp configuration. Empty means crisp's embedded defaults; `crisp config` prints the
# effective configuration and `crisp config --reference` documents every key.
# Files in crisp.d/*.toml next to this file are applied after it, in name order.
TOML
        if [ "$prefix" != /opt/crisp ]; then
            cat <<TOML
# A self-contained installation below $prefix (see deploy/install.sh).
root_dir = "$prefix/lib"
run_dir = "$run"
log_dir = "$logs/pods"

[grpc]
socket = "$run/crisp.sock"

[cni]
conf_dir = "$etc/net.d"
TOML
        fi
    } >"$etc/crisp.toml"
fi

# crisp writes its default bridge network into cni.conf_dir at start when that holds no
# network (cni.write_default_network).

socket=$("$crisp" config "${flags[@]}" | sed -n 's/^socket = "\(.*\)"$/\1/p' | head -n1)
if [ "$prefix" = /opt/crisp ] && [ -d /run/systemd/system ]; then
    install -m 0644 "$src/deploy/crisp.service" /etc/systemd/system/crisp.service
    systemctl daemon-reload
    systemctl enable crisp.service >/dev/null
    systemctl restart crisp.service
else
    # No systemd (or a self-contained installation): run in the background with a pid file
    # and a log file. Only the daemon is stopped; containers' monitors are not its children.
    install -d -m 0711 "$run"
    install -d -m 0755 "$logs"
    pidfile=$run/crisp.pid
    if [ -s "$pidfile" ]; then
        old=$(cat "$pidfile")
        # A stale pid file may name a pid that now belongs to something else.
        if kill -0 "$old" 2>/dev/null && grep -qa crisp "/proc/$old/cmdline"; then
            kill -TERM "$old"
            for _ in $(seq 100); do kill -0 "$old" 2>/dev/null || break; sleep 0.1; done
        fi
    fi
    setsid "$crisp" serve "${flags[@]}" >>"$logs/crisp.log" 2>&1 </dev/null &
    echo $! >"$pidfile"
fi

for _ in $(seq 150); do
    if "$crisp" status "${flags[@]}" --timeout 1 >/dev/null 2>&1; then
        "$crisp" status "${flags[@]}"
        exit 0
    fi
    sleep 0.2
done
echo "crisp did not come up on $socket; see $logs/crisp.log or journalctl -u crisp" >&2
exit 1
