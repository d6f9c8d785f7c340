"""Tests of runtime/: syscalls, capabilities, cgroups."""
