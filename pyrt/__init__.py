"""pyrt: a container runtime for Python with a C core.

    pyrt.run(argv, rootfs=..., capture_output=True)   # like subprocess.run
    pyrt.spawn(argv, rootfs=...)                      # like subprocess.Popen
"""
__version__ = "0.1.0"

# Imported lazily so that `import pyrt` (and the CLI) stays fast.
_LAZY = {
    "run": "pyrt.api", "spawn": "pyrt.launch.process", "Process": "pyrt.launch.process",
    "CompletedProcess": "pyrt.launch.process", "PIPE": "pyrt.launch.process", "STDOUT": "pyrt.launch.process",
    "DEVNULL": "pyrt.launch.process", "TimeoutExpired": "pyrt.launch.process",
    "CalledProcessError": "pyrt.launch.process",
    "Overlay": "pyrt.launch.mounts", "Bind": "pyrt.launch.mounts", "Tmpfs": "pyrt.launch.mounts",
    "Runtime": "pyrt.runtime",
    "Pool": "pyrt.pool.pool", "arun": "pyrt.pool.aio", "Usage": "pyrt.pool.metering",
    "SpawnError": "pyrt.errors", "PyrtError": "pyrt.errors",
}

__all__ = sorted(_LAZY)


def __getattr__(name):
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'pyrt' has no attribute {name!r}")
    import importlib
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
