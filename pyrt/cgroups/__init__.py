"""Cgroups: limits, the host's layout (v1, v2, hybrid; systemd scopes), the cgroup
handle, and device allow-lists."""
