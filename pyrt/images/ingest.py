"""One way into the store for every image. A load (docker-archive, OCI layout), a
pull (pyrt.registry.pull) and a new image (commit, import, build) each describe what
they bring as ImagePlans (pyrt.images.archive); their blobs are staged, their layers
unpacked into snapshots, and one transaction places the files and records the rows
(see pyrt.store): on any failure the store is as it was."""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import sqlite3
import time

from pyrt.errors import ImageFormatError, InvalidArgument, LayerError, StoreChanged
from pyrt.oci.digest import chain_ids
from pyrt.oci.image import parse_time

# pyrt.store.unpack (its thread pool: concurrent.futures, logging, queue) is imported
# where a layer is unpacked, not with this module: `pyrt images` loads it to list.


class Ingest:
    """Images into `store` (a pyrt.store.Store)."""

    def __init__(self, store):
        self.store = store

    def load(self, plans, progress=None) -> list:
        """Stores the images of `plans` (ImagePlans of a load) that the store lacks and
        tags them with their names; returns their ids."""
        store = self.store
        # one plan per image (an index may list one config under several manifests)
        unique = {}
        for plan in plans:
            first = unique.setdefault(plan.config_digest, plan)
            if first is not plan:
                first.names += [n for n in plan.names if n not in first.names]
        plans = list(unique.values())
        for plan in plans:
            for lp, cid in zip(plan.layers, chain_ids([lp.diff_id for lp in plan.layers])):
                lp.chain_id = cid
        existing = {plan.config_digest for plan in plans
                    if store.db.query_one("SELECT 1 FROM images WHERE id=?", (plan.config_digest,))}
        known_chains = set()
        for plan in plans:
            for lp in plan.layers:
                if store.db.query_one("SELECT 1 FROM layers WHERE chain_id=?", (lp.chain_id,)):
                    known_chains.add(lp.chain_id)
        with store.staging() as st:
            # 1. blobs, streamed and verified
            todo, by_member = [], {}
            for plan in plans:
                if plan.config_digest in existing:
                    continue
                for lp in plan.layers:
                    if lp.digest is not None and st.hold_blob(lp.digest):
                        continue
                    key = ("member", lp.member) if lp.digest is None else lp.digest
                    if key in by_member:
                        continue
                    by_member[key] = lp
                    todo.append((plan, lp))
            total = sum(lp.size for _, lp in todo)
            done = 0
            copied = {}
            for plan, lp in todo:
                what = f"layer {lp.member} of {plan.source}"
                spooled = lp.spooled() if lp.spooled is not None else None
                if spooled is not None:  # already a file of ours: linked, not copied
                    sb = _link_blob(st, *spooled, lp, what)
                else:
                    with lp.open() as f:
                        sb = st.write_blob(f, expected_digest=lp.digest, expected_size=lp.size,
                                           what=what)
                if lp.digest is None:
                    copied[lp.member] = sb.digest
                lp.digest = sb.digest
                done += lp.size
                if progress:
                    progress("copying", done, total)
            for plan in plans:
                for lp in plan.layers:
                    if lp.digest is None:
                        lp.digest = copied.get(lp.member)
            for plan in plans:
                if plan.config_digest in existing:
                    continue
                if any(lp.digest is None for lp in plan.layers):
                    raise ImageFormatError(f"{plan.source}: layer digests unknown")  # not reached
                plan.build_manifest()
                st.write_blob(plan.config, expected_digest=plan.config_digest, what="image config")
                st.write_blob(plan.manifest, expected_digest=plan.manifest_digest, what="manifest")
            # 2. snapshots, unpacked in parallel
            jobs, sizes = [], {}
            for plan in plans:
                if plan.config_digest in existing:
                    continue
                for lp in plan.layers:
                    if lp.chain_id in known_chains or lp.chain_id in st.snapshots:
                        continue
                    dest = st.new_snapshot(lp.chain_id)
                    jobs.append((lp, st.blob_path(lp.digest), dest))
            if jobs:
                results = unpack_jobs(jobs, progress)
                for (lp, _, _), (diff_id, size) in zip(jobs, results):
                    sizes[lp.chain_id] = size
            # 3. one transaction: files into place, then the rows
            needed_blobs = {lp.digest for plan in plans if plan.config_digest not in existing
                            for lp in plan.layers}
            needed_chains = {lp.chain_id for plan in plans if plan.config_digest not in existing
                             for lp in plan.layers}
            now = time.time()
            with self.transaction(st, "while loading") as tx:
                for image_id in existing:
                    if tx.query_one("SELECT 1 FROM images WHERE id=?", (image_id,)) is None:
                        raise StoreChanged(f"image {image_id} was removed from the store while "
                                           "loading: try again")
                st.place(tx, needed_blobs, needed_chains)
                for plan in plans:
                    self.record(tx, plan, sizes, now)
        return [plan.config_digest for plan in plans]

    @contextlib.contextmanager
    def transaction(self, st, during: str, error=StoreChanged):
        """The transaction that ends an ingest (yields it): the staged files of `st`
        are placed in it and the rows recorded; on any failure the files placed are
        removed again. A constraint failure (another process changed the store
        meanwhile) raises `error`: "the store changed {during} (...): try again"."""
        try:
            with self.store.transaction() as tx:
                try:
                    yield tx
                except BaseException:
                    st.undo()
                    raise
        except sqlite3.IntegrityError as e:
            raise error(f"the store changed {during} ({e}): try again") from None

    def record(self, tx, plan, sizes, now, parent=None):
        """The rows of the image of `plan` (its layers, the image, its layer list) unless
        the store has it, and its tags."""
        image_id = plan.config_digest
        if tx.query_one("SELECT 1 FROM images WHERE id=?", (image_id,)) is None:
            prev = None
            total = 0
            for pos, lp in enumerate(plan.layers):
                row = tx.query_one("SELECT unpacked_size FROM layers WHERE chain_id=?", (lp.chain_id,))
                if row is None:
                    usize = sizes.get(lp.chain_id, 0)
                    tx.execute("INSERT INTO layers (chain_id, diff_id, digest, media_type, size, parent, "
                               "unpacked_size, created) VALUES (?,?,?,?,?,?,?,?)",
                               (lp.chain_id, lp.diff_id, lp.digest, lp.media_type, lp.size, prev, usize, now))
                else:
                    usize = row[0]
                total += usize
                prev = lp.chain_id
            cfg = json.loads(plan.config)
            created = parse_time(cfg.get("created")) or now
            tx.execute("INSERT INTO images (id, config, manifest_digest, manifest_media_type, parent, created, "
                       "loaded, size) VALUES (?,?,?,?,?,?,?,?)",
                       (image_id, plan.config.decode("utf-8"), plan.manifest_digest, plan.manifest_media_type,
                        parent, created, now, total))
            tx.executemany("INSERT INTO image_layers (image_id, position, chain_id, digest, media_type, size) "
                           "VALUES (?,?,?,?,?,?)",
                           [(image_id, pos, lp.chain_id, lp.digest, lp.media_type, lp.size)
                            for pos, lp in enumerate(plan.layers)])
        for name in plan.names:
            repo, _, tag = name.rpartition(":")
            tx.execute("INSERT OR REPLACE INTO tags (repository, tag, image_id, created) VALUES (?,?,?,?)",
                       (repo, tag, image_id, now))


def adopt_blob(st, path, digest, size):
    """Moves a layer blob made by the caller into the staging area, checking that its
    size and sha256 are what the caller says (a blob's name is always its hash)."""
    h = hashlib.sha256()
    n = 0
    if not os.path.isfile(path):
        raise InvalidArgument(f"layer blob {path}: no such file")
    with open(path, "rb") as f:
        while True:
            chunk = f.read(1 << 20)
            if not chunk:
                break
            h.update(chunk)
            n += len(chunk)
    got = "sha256:" + h.hexdigest()
    if n != size or got != digest:
        raise InvalidArgument(f"layer blob {path}: expected {digest} ({size} bytes), it is {got} ({n} bytes)")
    try:
        return st.adopt_blob(path, digest, size)
    except OSError:  # another filesystem: copy
        sb = st.write_blob(path, expected_digest=digest, expected_size=size, what=f"layer {path}")
        os.unlink(path)
        return sb


def _link_blob(st, path, digest, lp, what):
    """Stages the file `path` (whose sha256 the caller computed as it wrote it) as the
    blob of layer `lp`, through a hard link: a retried load can link it again."""
    if lp.digest is not None and digest != lp.digest:
        raise ImageFormatError(f"digest mismatch for {what}: expected {lp.digest}, got {digest}")
    if os.path.getsize(path) != lp.size:
        raise ImageFormatError(f"wrong size for {what}: the descriptor says {lp.size} bytes, "
                               f"got {os.path.getsize(path)}")
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        os.fsync(fd)  # as a written blob is: on disk before it is named
    finally:
        os.close(fd)
    link = path + ".link"
    try:
        os.unlink(link)  # left by an attempt that failed
    except FileNotFoundError:
        pass
    try:
        os.link(path, link)
    except OSError:  # the temp dir is on another filesystem: copy
        return st.write_blob(path, expected_digest=digest, expected_size=lp.size, what=what)
    return st.adopt_blob(link, digest, lp.size)


def unpack_one(src, dest, media_type, expected_diff_id):
    from pyrt.launch.userns import in_userns
    from pyrt.store.unpack import unpack_layer
    return in_userns(unpack_layer, src, dest, media_type=media_type, expected_diff_id=expected_diff_id)


def unpack_jobs(jobs, progress=None):
    """Unpacks [(LayerPlan, blob path, dest dir)] in parallel; returns [(diff_id, size)].
    A rejected layer raises ImageFormatError naming it. An ordinary user's layers are
    unpacked in its user namespace, their owners shifted into its range
    (pyrt.launch.userns.in_userns)."""
    from pyrt.launch.userns import in_userns
    results = in_userns(_unpack_jobs_here, jobs)
    if progress:
        progress("unpacking", len(jobs), len(jobs))
    return results


def _unpack_jobs_here(jobs):
    # the blob was verified against its digest when stored: for an uncompressed layer
    # that digest is the diff_id, so the unpacker need not hash it again
    from pyrt.store import unpack as _u
    specs = [{"source": src, "dest": dest, "media_type": lp.media_type, "expected_diff_id": lp.diff_id,
              "source_digest": lp.digest} for lp, src, dest in jobs]
    try:
        if len(jobs) > 1 and hasattr(_u, "unpack_layers_parallel"):
            results = _u.unpack_layers_parallel(specs)
        else:
            results = [_u.unpack_layer(s["source"], s["dest"], media_type=s["media_type"],
                                       expected_diff_id=s["expected_diff_id"], source_digest=s["source_digest"])
                       for s in specs]
    except LayerError as e:
        msg = str(e)
        if msg.startswith("layer: "):
            msg = msg[len("layer: "):]
        culprit = [lp for lp, _, _ in jobs if lp.diff_id in msg]
        if len(jobs) == 1:
            culprit = [jobs[0][0]]
        which = f"layer {culprit[0].digest}" if culprit else "a layer"
        raise ImageFormatError(f"{which} rejected: {msg}") from e
    return [tuple(r[:2]) if not isinstance(r, dict) else (r["diff_id"], r["size"]) for r in results]
