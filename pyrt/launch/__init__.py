"""Starting processes: the spawn spec and its builder, run/spawn/Process, mounts,
the console, capabilities, users and seccomp profiles."""
