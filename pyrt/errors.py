"""pyrt's exceptions: one hierarchy, each message naming the object and the cause.
Errors that come from the kernel are OSError subclasses, so `except OSError` and
`e.errno` keep working."""
import errno
import os


class PyrtError(Exception):
    """Base of every pyrt error."""


def _errno_class(err):
    """The OSError subclass Python gives errno `err` (PermissionError for EACCES and
    EPERM, FileNotFoundError for ENOENT, ...), or OSError when it has none."""
    if not isinstance(err, int) or isinstance(err, bool):
        return OSError
    return type(OSError(err, ""))


class SyscallError(PyrtError, OSError):
    """A system call (or a step made of one) failed: `op` on `path`, with `errno`.

    Constructing one gives the errno's own OSError subclass as well: SyscallError(
    errno.EACCES, "exec", "/bin/x") is a SyscallError *and* a PermissionError, so
    `except PermissionError` and `except FileNotFoundError` work. Its message names
    what failed and why: `mount "/proc": Operation not permitted`.
    Subclasses (SpawnError, CgroupError, ...) get the same treatment."""

    _variants = {}  # (class, OSError subclass) -> their combination, made on first use

    def __new__(cls, err=0, op="", path="", *args, path2="", **kwargs):
        base = cls._base()
        builtin = _errno_class(err)
        if builtin is not OSError:
            cls = SyscallError._variant(base, builtin)
        else:
            cls = base
        strerror = os.strerror(err) if isinstance(err, int) and err else ""
        if path2:
            return OSError.__new__(cls, err, strerror, path or None, None, path2)
        return OSError.__new__(cls, err, strerror, path or None)

    def __init__(self, err=0, op="", path="", *, path2=""):
        self.op = op
        self.path = path
        self.path2 = path2

    @classmethod
    def _base(cls):
        """The class a per-errno variant was made from (cls itself otherwise)."""
        return cls.__dict__.get("_variant_of") or cls

    @staticmethod
    def _variant(base, builtin):
        key = (base, builtin)
        v = SyscallError._variants.get(key)
        if v is None:
            v = type(base.__name__, (base, builtin), {
                "_variant_of": base, "__module__": base.__module__,
                "__qualname__": base.__qualname__, "__doc__": base.__doc__})
            v = SyscallError._variants.setdefault(key, v)
        return v

    def _where(self):
        where = f' "{self.path}"' if self.path else ""
        if getattr(self, "path2", ""):
            where += f' -> "{self.path2}"'
        return where

    def __str__(self):
        why = self.strerror or (f"errno {self.errno}" if self.errno else "failed")
        if not self.op:
            return f"{self.path}: {why}" if self.path else why
        return f"{self.op}{self._where()}: {why}"

    def _args(self):
        """The arguments that make this error again (for pickling and copying)."""
        return (self.errno, self.op, self.path)

    def __reduce__(self):
        state = dict(self.__dict__)
        kwargs_state = {}
        if state.get("path2"):
            kwargs_state["path2"] = state["path2"]
        return (_rebuild, (type(self)._base(), self._args(), kwargs_state), state)


def _rebuild(cls, args, kwargs):
    return cls(*args, **kwargs)


class SpawnError(SyscallError):
    """A step of starting a container failed: `op` on `path`, with `errno` (the
    errno's OSError subclass too: `except PermissionError` works)."""


class CgroupError(SyscallError):
    """A cgroup operation failed: `op` on `path` (a cgroup directory or file), with
    `errno`, and an optional hint on what to do."""

    def __init__(self, err=0, op="", path="", hint="", **kwargs):
        super().__init__(err, op, path, **kwargs)
        self.hint = hint

    def __str__(self):
        hint = f" ({self.hint})" if self.hint else ""
        return f"{super().__str__()}{hint}"

    def _args(self):
        return (self.errno, self.op, self.path, self.hint)


class ControllerUnavailable(CgroupError):
    """A limit needs a cgroup controller this host does not offer."""

    def __new__(cls, controller="", detail=""):
        return super().__new__(cls, errno.ENODEV, "cgroup", "")

    def __init__(self, controller="", detail=""):
        CgroupError.__init__(self, errno.ENODEV, "cgroup", "", detail)
        self.controller = controller

    def __str__(self):
        more = f" ({self.hint})" if self.hint else ""
        return f"cgroup controller '{self.controller}' is not available on this host{more}"

    def _args(self):
        return (self.controller, self.hint)


class LayerError(PyrtError, ValueError):
    """A layer tar was rejected (hostile or broken input): names the entry and why."""


class ImageNotFound(PyrtError, LookupError):
    """No image matches the reference."""


class ContainerNotFound(PyrtError, LookupError):
    """No container matches the reference."""


class VolumeNotFound(PyrtError, LookupError):
    """No volume has that name."""


class NetworkNotFound(PyrtError, LookupError):
    """No network matches the name or id."""


class NetworkError(PyrtError):
    """Wiring a container to a network failed (a CNI plugin, the firewall, no free
    address): names the network and the cause."""


class Conflict(PyrtError):
    """The change conflicts with the store's state (name in use, image in use, ...)."""


class InvalidArgument(PyrtError, ValueError):
    """A user-given value (reference, limit, flag) is not valid."""


class ImageFormatError(PyrtError, ValueError):
    """An image archive, manifest or config is invalid (digest or size mismatch,
    missing blob, unknown media type, bad JSON, ...)."""


class PlatformWarning(UserWarning):
    """An image made for another architecture than this machine's is being run
    (Python's `warnings`: the CLI prints it as a one-line warning; filter it
    with warnings.simplefilter("ignore", PlatformWarning))."""


class RegistryError(PyrtError):
    """A registry could not be reached, refused a request or sent something wrong
    (`status`: the HTTP status when there was one)."""

    def __init__(self, message, status=None):
        super().__init__(message)
        self.status = status


class BuildError(PyrtError):
    """`pyrt build` failed: a bad Dockerfile, context or build argument, or a failing
    step (named `Dockerfile:LINE: ...`). `output` holds the last lines a failing
    RUN printed."""

    def __init__(self, message, output=()):
        super().__init__(message)
        self.output = list(output)


class BootstrapError(PyrtError):
    """`pyrt image bootstrap` failed: the package mirror could not be reached, or
    mmdebstrap (or apt inside it) failed; the message is the line that says why."""


class ContainerError(PyrtError):
    """A container run by `containers.run` (not detached) exited non-zero."""

    def __init__(self, container, exit_status, command, image, stderr):
        self.container, self.exit_status, self.command, self.image = container, exit_status, command, image
        self.stderr = stderr
        tail = f": {stderr.decode(errors='replace').strip()}" if stderr else ""
        super().__init__(f"command {command!r} in image {image!r} returned non-zero exit status {exit_status}{tail}")


class ConfigError(InvalidArgument):
    """config.json is not a valid runtime spec (or asks for what pyrt cannot do)."""


class OciRuntimeError(PyrtError):
    """An OCI runtime operation (pyrt-runtime) that could not be done: a container
    in the wrong state for it, a hook that failed, a console socket out of reach."""


class FuseError(PyrtError):
    """fuse-overlayfs could not mount a container's root (the daemon's own words in
    the message)."""


class StoreChanged(Conflict):
    """Another process removed something this change counted on: redo it."""


class Unsupported(PyrtError, RuntimeError):
    """This host or installation lacks what the operation needs (a kernel feature,
    an optional package, ...)."""


class UnsafeDirectory(PyrtError, PermissionError):
    """A directory pyrt would keep an ordinary user's data in (its store, its runtime
    state) belongs to someone else, or someone else could replace it (pyrt.paths)."""


class PoolClosed(PyrtError, RuntimeError):
    """The warm pool was closed: it starts no more commands."""
