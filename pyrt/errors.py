"""pyrt's exceptions: one hierarchy, each message naming the object and the cause.
Errors that come from the kernel are OSError subclasses, so `except OSError` and
`e.errno` keep working."""
import os


class PyrtError(Exception):
    """Base of every pyrt error."""


class SpawnError(PyrtError, OSError):
    """A step of starting a container failed: `op` on `path`, with `errno`."""

    def __init__(self, err, op, path=""):
        OSError.__init__(self, err, os.strerror(err), path or None)
        self.op = op
        self.path = path

    def __str__(self):
        where = f' "{self.path}"' if self.path else ""
        return f"{self.op}{where}: {self.strerror}"

    def __reduce__(self):
        return (type(self), (self.errno, self.op, self.path))


class LayerError(PyrtError, ValueError):
    """A layer tar was rejected (hostile or broken input): names the entry and why."""


class ImageNotFound(PyrtError, LookupError):
    """No image matches the reference."""


class ContainerNotFound(PyrtError, LookupError):
    """No container matches the reference."""


class VolumeNotFound(PyrtError, LookupError):
    """No volume has that name."""


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
