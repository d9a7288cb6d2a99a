"""`Runtime(root).containers`: the collection of a store's containers, with the
docker SDK's names (get, list, create, run, prune)."""
from __future__ import annotations

from pyrt.containers.create import create as _create
from pyrt.containers.model import Container
from pyrt.errors import Conflict, ContainerError, ContainerNotFound, InvalidArgument
from pyrt.filters import all_labels_match, wanted_filters
from pyrt.launch.process import DEVNULL, PIPE
from pyrt.store.layers import tree_size


class ContainerCollection:
    def __init__(self, runtime):
        self.runtime = runtime
        self.store = runtime.store

    def _row(self, ident):
        return self.store.db.query_one("SELECT * FROM containers WHERE id=?", (ident,))

    def get(self, ref: str) -> Container:
        """By full id, then name, then unambiguous id prefix (docker's order): a
        container named with another one's id never stands in for it."""
        db = self.store.db
        row = self._row(ref) or db.query_one("SELECT * FROM containers WHERE name=?", (ref.lstrip("/"),))
        if row is None and ref and all(c in "0123456789abcdef" for c in ref):
            rows = db.query("SELECT * FROM containers WHERE id LIKE ? LIMIT 2", (ref + "%",))
            if len(rows) > 1:
                raise InvalidArgument(f"container id prefix {ref!r} is ambiguous: use more characters")
            row = rows[0] if rows else None
        if row is None:
            raise ContainerNotFound(f"no such container: {ref}")
        c = Container(self, row)
        c._refresh_running()
        return c

    FILTERS = ("id", "name", "status", "exited", "ancestor", "label")

    def list(self, all=False, filters=None) -> list[Container]:
        """Running containers (`all`: every one), newest first. `filters` as the
        docker SDK takes them: {"status": "exited", "name": "web", "id": prefix,
        "exited": code, "ancestor": image}; a list of values matches any of them,
        and a status filter looks at every container; label filters ("key" or
        "key=value") must all hold."""
        wanted = wanted_filters(filters, self.FILTERS, "container")
        ancestors = {self.runtime.images.get(ref).id for ref in wanted.get("ancestor", ())}
        from pyrt.network.endpoints import reconcile
        reconcile(self.runtime)  # network leases a killed pyrt process left
        out = []
        for row in self.store.db.query("SELECT * FROM containers ORDER BY created DESC"):
            c = Container(self, row)
            c._refresh_running()
            if not (all or "status" in wanted or c.status in ("running", "paused")):
                continue
            if _matches(c, wanted, ancestors):
                out.append(c)
        return out

    # (self, image, command=None, *, name=None, ...): its options and what it makes
    # are in pyrt.containers.create
    create = _create

    def run(self, image, command=None, *, stdout=True, stderr=False, remove=False, detach=False, **kwargs):
        """Create and start; wait and return its output (stdout by default), as the
        docker SDK does. Raises ContainerError on a non-zero exit."""
        if detach:
            c = self.create(image, command, auto_remove=remove, **kwargs)
            try:
                c.start()
            except BaseException:
                c.remove(force=True, v=True)
                raise
            return c
        from pyrt.network.names import default_network
        if kwargs.get("ports") and (kwargs.get("network_mode") or kwargs.get("network") or default_network()) == "none":
            raise InvalidArgument("published ports without a network need a detached container (detach=True): "
                                  "its monitor forwards them")
        c = self.create(image, command, auto_remove=False, **kwargs)
        try:
            proc = c.start_process(stdin=DEVNULL, stdout=PIPE, stderr=PIPE)
            out, err = proc.communicate()
            from pyrt.containers.logs import LogWriter  # on use: `pyrt ps` loads this module
            log = LogWriter(c)  # `logs` shows what a foreground run printed too
            log.write("stdout", out)
            log.write("stderr", err)
            log.close()
            c.finished(proc.returncode)
            code = c.state["ExitCode"]
            if code != 0:
                raise ContainerError(c, code, c.config["Cmd"], c.config["ImageRef"], err)
            return (out if stdout else b"") + (err if stderr else b"")
        finally:
            if remove:
                c.remove(force=True)

    def prune(self, filters=None):
        """Removes every stopped container (created, exited or dead; running and
        paused ones stay). docker SDK's result: {"ContainersDeleted", "SpaceReclaimed"}."""
        if filters:
            raise InvalidArgument("container prune: filters are not supported")
        removed, freed = [], 0
        for c in self.list(all=True):
            if c.status in ("created", "exited", "dead"):
                size = tree_size(c.dir)
                try:
                    c.remove()
                except (Conflict, ContainerNotFound):  # started or removed meanwhile
                    continue
                removed.append(c.id)
                freed += size
        return {"ContainersDeleted": removed, "SpaceReclaimed": freed}


def _matches(c, wanted: dict, ancestors: set) -> bool:
    import re
    checks = {
        "id": lambda v: c.id.startswith(v),
        "name": lambda v: re.search(v, c.name) is not None,
        "status": lambda v: c.status == v,
        "exited": lambda v: c.status == "exited" and str(c.state.get("ExitCode")) == str(v),
        "ancestor": lambda v: c.image_id in ancestors,
    }
    return all(all_labels_match(c.config.get("Labels", {}), values) if k == "label"
               else any(checks[k](v) for v in values) for k, values in wanted.items())
