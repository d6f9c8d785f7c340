"""Every zygote entry point of the runtime. Import this before starting the Zygote: the
fork server can only run functions registered in it when it forked from the daemon."""

from __future__ import annotations

from runtime import exec_process, monitor, namespaces, oci_exec, oci_monitor

__all__ = ["exec_process", "monitor", "namespaces", "oci_exec", "oci_monitor"]
