"""pyrt's store: one root directory (0700) holding

    blobs/sha256/<hex>      content-addressed blobs (layers as shipped, configs, manifests)
    snapshots/<chain hex>/  unpacked read-only layers
    tmp/                    temp files and staging dirs (stale ones removed on open)
    pyrt.db                 the SQLite metadata (see db.py)

Every change that adds files stages them first (`Store.staging()`), then, inside one
write transaction, renames them into place and records the rows; on any failure the
staged and newly placed files are removed, so the store is as it was."""
from __future__ import annotations

import contextlib
import os

from pyrt.errors import Conflict, StoreChanged  # noqa: F401 (re-exported)
from pyrt.store.blobs import BlobStore, StagedBlob, _fsync_dir
from pyrt.store.db import Database
from pyrt.store.layers import TEMP_PREFIX, TRASH_PREFIX, SnapshotStore, rmtree

DB_NAME = "pyrt.db"
DEFAULT_ROOT = "/var/lib/pyrt"


def default_root() -> str:
    """The store's root when none is given: $PYRT_ROOT, else /var/lib/pyrt, or for
    an ordinary user $XDG_DATA_HOME/pyrt (~/.local/share/pyrt; pyrt.paths)."""
    from pyrt.paths import default_store_root
    return default_store_root()


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _stale(name: str, prefix: str = "") -> bool:
    """Temp entries are named `<prefix><pid>-...`: stale when that process is gone."""
    rest = name[len(prefix):]
    pid = rest.split("-", 1)[0]
    if not pid.isdigit():
        return True
    return not _pid_alive(int(pid))


def _makedir(path: str) -> None:
    try:
        os.mkdir(path, 0o700)
    except FileExistsError:
        pass
    st = os.stat(path)
    if st.st_mode & 0o077:
        os.chmod(path, 0o700)


def syncfs(path: str) -> None:
    """Flushes the filesystem holding `path` (snapshots are made of many files: one
    syncfs is cheaper than an fsync each)."""
    try:
        import ctypes
        libc = ctypes.CDLL(None, use_errno=True)
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
        try:
            libc.syncfs(fd)
        finally:
            os.close(fd)
    except Exception:
        os.sync()


class Store:
    def __init__(self, root: str):
        self.root = os.path.abspath(root)
        if os.geteuid() != 0:  # an ordinary user's: its own, private (pyrt.paths)
            from pyrt.paths import check_private_dir
            check_private_dir(self.root, "store directory")
        os.makedirs(os.path.dirname(self.root) or "/", exist_ok=True)
        _makedir(self.root)
        for d in ("blobs", "blobs/sha256", "snapshots", "tmp", "containers", "volumes"):
            _makedir(os.path.join(self.root, d))
        self.tmp_dir = os.path.join(self.root, "tmp")
        self.blobs = BlobStore(self.root)
        self.snapshots = SnapshotStore(self.root)
        self.db = Database(os.path.join(self.root, DB_NAME))
        self.clean_stale()

    def __repr__(self):
        return f"Store({self.root!r})"

    def close(self):
        self.db.close()

    # -- temp space -----------------------------------------------------------------

    def mkdtemp(self, prefix: str = "") -> str:
        """A private temp dir in the store (same filesystem as blobs and snapshots),
        removed by `clean_stale` once this process is gone."""
        import tempfile  # here: a `pyrt run` never needs it (measured: random, shutil, weakref)
        return tempfile.mkdtemp(prefix=f"{os.getpid()}-{prefix}", dir=self.tmp_dir)

    def clean_stale(self) -> None:
        """Removes temp entries left by processes that no longer exist."""
        for name in _listdir(self.tmp_dir):
            if _stale(name):
                rmtree(os.path.join(self.tmp_dir, name))
        for name in _listdir(self.snapshots.dir):
            for prefix in (TEMP_PREFIX, TRASH_PREFIX):
                if name.startswith(prefix) and _stale(name, prefix):
                    rmtree(os.path.join(self.snapshots.dir, name))

    @contextlib.contextmanager
    def staging(self):
        st = Staging(self)
        try:
            yield st
        finally:
            st.cleanup()

    def transaction(self):
        return self.db.transaction()


class Staging:
    """Files on their way into the store: staged blobs and temp snapshot dirs, placed
    by `place(tx)` inside a write transaction, undone if that transaction fails."""

    def __init__(self, store: Store):
        self.store = store
        self.dir = store.mkdtemp("stage-")
        self.blobs: dict[str, StagedBlob] = {}
        self.snapshots: dict[str, str] = {}      # chain_id -> temp dir
        self._temp_snapshots: list[str] = []
        self._placed_blobs: list[str] = []
        self._placed_snapshots: list[str] = []
        self._aside: list[str] = []

    def write_blob(self, src, *, expected_digest=None, expected_size=None, what="blob") -> StagedBlob:
        sb = self.store.blobs.write(src, self.dir, expected_digest=expected_digest,
                                    expected_size=expected_size, what=what)
        old = self.blobs.get(sb.digest)
        if old is not None:
            os.unlink(sb.path)
            return old
        self.blobs[sb.digest] = sb
        return sb

    def adopt_blob(self, path: str, digest: str, size: int) -> StagedBlob:
        """Takes a blob file made elsewhere (moved into the staging dir)."""
        dest = os.path.join(self.dir, "adopted-" + digest[7:])
        os.rename(path, dest)
        sb = StagedBlob(digest, size, dest)
        self.blobs[digest] = sb
        return sb

    def hold_blob(self, digest: str) -> bool:
        """Keeps a blob the store has now from vanishing while this change is prepared
        (another process may drop its last reference): a hard link in the staging dir,
        put back by `place` if it went meanwhile. False if the store does not have it."""
        if digest in self.blobs:
            return True
        dest = os.path.join(self.dir, "held-" + digest[7:])
        try:
            os.link(self.store.blobs.path(digest), dest)
        except FileNotFoundError:
            return False
        self.blobs[digest] = StagedBlob(digest, os.stat(dest).st_size, dest)
        return True

    def blob_path(self, digest: str) -> str:
        """Where a blob can be read now: staged, else in the store."""
        sb = self.blobs.get(digest)
        return sb.path if sb else self.store.blobs.path(digest)

    def new_snapshot(self, chain_id: str) -> str:
        d = self.store.snapshots.new_temp()
        self._temp_snapshots.append(d)
        self.snapshots[chain_id] = d
        return d

    def adopt_snapshot(self, chain_id: str, path: str) -> None:
        """Takes a ready snapshot directory (renamed under snapshots/ as a temp)."""
        d = self.store.snapshots.new_temp()
        os.rmdir(d)
        os.rename(path, d)
        self._temp_snapshots.append(d)
        self.snapshots[chain_id] = d

    def place(self, tx, needed_blobs=(), needed_chains=()) -> None:
        """Renames the staged files into place (call inside `tx`). Checks, under the
        write lock, that what the caller counted on finding in the store is still
        there (another process may have removed it since)."""
        store = self.store
        for chain_id in needed_chains:
            if chain_id in self.snapshots:
                continue
            if tx.query_one("SELECT 1 FROM layers WHERE chain_id=?", (chain_id,)) is None:
                raise StoreChanged(f"layer {chain_id} was removed from the store while this change "
                                   "was being prepared: try again")
        for digest in needed_blobs:
            if digest not in self.blobs and not store.blobs.exists(digest):
                raise StoreChanged(f"blob {digest} was removed from the store while this change "
                                   "was being prepared: try again")
        if self.snapshots:
            syncfs(store.snapshots.dir)
        for digest, sb in self.blobs.items():
            if store.blobs.place(sb):
                self._placed_blobs.append(digest)
        if self._placed_blobs:
            store.blobs.sync()
        for chain_id, d in self.snapshots.items():
            if tx.query_one("SELECT 1 FROM layers WHERE chain_id=?", (chain_id,)) is not None:
                continue  # recorded meanwhile by another process: ours is dropped in cleanup
            aside = store.snapshots.place(d, chain_id)
            self._temp_snapshots.remove(d)
            self._placed_snapshots.append(chain_id)
            if aside:
                self._aside.append(aside)
        if self._placed_snapshots:
            _fsync_dir(store.snapshots.dir)

    def undo(self) -> None:
        """Removes what `place` put in (call before the transaction is rolled back)."""
        for digest in self._placed_blobs:
            self.store.blobs.remove(digest)
        for chain_id in self._placed_snapshots:
            self.store.snapshots.remove(chain_id)
        self._placed_blobs.clear()
        self._placed_snapshots.clear()

    def cleanup(self) -> None:
        for d in self._temp_snapshots:
            rmtree(d)
        for d in self._aside:
            rmtree(d)
        self._temp_snapshots.clear()
        self._aside.clear()
        rmtree(self.dir)


def _listdir(path):
    try:
        return os.listdir(path)
    except FileNotFoundError:
        return []


__all__ = ["Store", "Staging", "StoreChanged", "BlobStore", "SnapshotStore", "Database", "rmtree"]
