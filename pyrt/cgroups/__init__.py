"""Cgroups: limits and their parsing (limits.py), the host's layout (layout.py: v1,
v2, hybrid), the cgroup handle (cgroup.py), systemd scopes (systemd.py), and device
allow-lists (devices.py)."""
