"""pyrt: a container runtime for Python with a C core.

    pyrt.run(argv, rootfs=..., capture_output=True)   # like subprocess.run
    pyrt.spawn(argv, rootfs=...)                      # like subprocess.Popen
"""
__version__ = "0.1.0"

# Imported lazily so that `import pyrt` (and the CLI) stays fast.
_LAZY = {
    "run": "pyrt.process", "spawn": "pyrt.process", "Process": "pyrt.process",
    "CompletedProcess": "pyrt.process", "PIPE": "pyrt.process", "STDOUT": "pyrt.process",
    "DEVNULL": "pyrt.process", "TimeoutExpired": "pyrt.process",
    "CalledProcessError": "pyrt.process",
    "Overlay": "pyrt.mounts", "Bind": "pyrt.mounts", "Tmpfs": "pyrt.mounts",
    "Runtime": "pyrt.runtime",
    "Pool": "pyrt.pool", "arun": "pyrt.pool", "Usage": "pyrt.pool",
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
