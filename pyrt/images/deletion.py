"""Deleting images: `docker rmi` (untag, delete, and the untagged parents left without
children) and prune, each one write transaction; the files of layers and blobs no
image uses any more are removed once it commits."""
from __future__ import annotations

from pyrt.errors import Conflict, ImageNotFound
from pyrt.oci.digest import is_digest


def _short(image_id: str) -> str:
    return image_id[7:19]


def remove(images, ref, force=False, noprune=False) -> list:
    """docker rmi: removing by name untags; the image itself is deleted when no tag
    is left, no container uses it and no child image depends on it (removing by id
    deletes it, untagging all its names if `force` when it has several). Untagged
    parents left without children are deleted too (unless `noprune`). Returns
    [{"Untagged": name} | {"Deleted": id}, ...]."""
    image_id, matched = images._resolve(ref)
    out = []
    freed = []
    with images.store.transaction() as tx:
        if tx.query_one("SELECT 1 FROM images WHERE id=?", (image_id,)) is None:
            raise ImageNotFound(f"image {ref!r} not found")
        tags = [f"{r['repository']}:{r['tag']}" for r in tx.query(
            "SELECT repository, tag FROM tags WHERE image_id=? ORDER BY repository, tag", (image_id,))]
        children = [r["id"] for r in tx.query("SELECT id FROM images WHERE parent=?", (image_id,))]
        users = _containers_using(tx, image_id)
        if matched is not None:
            if len(tags) > 1:
                _untag(tx, matched)
                return [{"Untagged": matched}]
            if users and not force:
                raise Conflict(f"unable to remove {matched}: container {_describe(users[0])} is using "
                               f"image {_short(image_id)} (remove the container first, or force to untag)")
            _untag(tx, matched)
            out.append({"Untagged": matched})
            if children or users:
                return out
        else:
            if children:
                raise Conflict(f"unable to delete image {_short(image_id)}: it has dependent child "
                               f"images ({', '.join(_short(c) for c in children[:3])})")
            if users and not force:
                raise Conflict(f"unable to delete image {_short(image_id)}: container "
                               f"{_describe(users[0])} is using it (remove the container first, or force)")
            if len(tags) > 1 and not force:
                raise Conflict(f"unable to delete image {_short(image_id)}: it is referenced in several "
                               f"repositories ({', '.join(tags)}); remove them by name, or force")
            for t in tags:
                _untag(tx, t)
                out.append({"Untagged": t})
            if users:
                return out  # forced: untagged, kept while the container needs its layers
        parent = _delete_image(images.store, tx, image_id, freed)
        out.append({"Deleted": image_id})
        while parent and not noprune:
            if tx.query_one("SELECT 1 FROM tags WHERE image_id=?", (parent,)) or \
                    tx.query_one("SELECT 1 FROM images WHERE parent=?", (parent,)) or \
                    _containers_using(tx, parent):
                break
            nxt = _delete_image(images.store, tx, parent, freed)
            out.append({"Deleted": parent})
            parent = nxt
    return out

def prune(images, all=False, filters=None) -> dict:
    """Deletes dangling images (untagged, no children, no container), or with
    `all` every image no container uses (and no child of a used image depends on).
    Also removes files no row refers to (left by a crash). Returns
    {"ImagesDeleted": [...], "SpaceReclaimed": bytes}."""
    if filters and filters.get("dangling") is False:
        all = True
    deleted, freed = [], []
    with images.store.transaction() as tx:
        while True:
            rows = tx.query(
                "SELECT i.id FROM images i WHERE NOT EXISTS (SELECT 1 FROM images c WHERE c.parent = i.id) "
                "AND NOT EXISTS (SELECT 1 FROM containers k WHERE k.image_id = i.id)"
                + ("" if all else " AND NOT EXISTS (SELECT 1 FROM tags t WHERE t.image_id = i.id)"))
            if not rows:
                break
            for r in rows:
                for t in tx.query("SELECT repository, tag FROM tags WHERE image_id=?", (r["id"],)):
                    name = f"{t['repository']}:{t['tag']}"
                    _untag(tx, name)
                    deleted.append({"Untagged": name})
                _delete_image(images.store, tx, r["id"], freed)
                deleted.append({"Deleted": r["id"]})
        _collect_orphans(images.store, tx, freed)
    return {"ImagesDeleted": deleted, "SpaceReclaimed": sum(freed)}


def _containers_using(tx, image_id):
    return tx.query("SELECT id, name FROM containers WHERE image_id=? ORDER BY created", (image_id,))


def _describe(row) -> str:
    return f"{row['name']} ({row['id'][:12]})" if row["name"] else row["id"][:12]


def _untag(tx, name):
    repo, _, tag = name.rpartition(":")
    tx.execute("DELETE FROM tags WHERE repository=? AND tag=?", (repo, tag))


def _blob_referenced(tx, digest) -> bool:
    return bool(tx.query_one("SELECT 1 FROM images WHERE id=? OR manifest_digest=? LIMIT 1", (digest, digest))
                or tx.query_one("SELECT 1 FROM image_layers WHERE digest=? LIMIT 1", (digest,))
                or tx.query_one("SELECT 1 FROM layers WHERE digest=? LIMIT 1", (digest,)))


def _delete_image(store, tx, image_id, freed):
    """Deletes an image's rows and, when no image uses them any more, its layers and
    blobs (files removed after the commit). Returns its parent id."""
    row = tx.query_one("SELECT parent, manifest_digest FROM images WHERE id=?", (image_id,))
    if row is None:
        return None
    parent, manifest_digest = row["parent"], row["manifest_digest"]
    lrows = tx.query("SELECT chain_id, digest FROM image_layers WHERE image_id=? ORDER BY position DESC",
                     (image_id,))
    tx.execute("DELETE FROM tags WHERE image_id=?", (image_id,))
    tx.execute("DELETE FROM image_layers WHERE image_id=?", (image_id,))
    tx.execute("UPDATE images SET parent=NULL WHERE parent=?", (image_id,))
    tx.execute("DELETE FROM images WHERE id=?", (image_id,))
    blobs = [image_id, manifest_digest] + [r["digest"] for r in lrows]
    for r in lrows:
        cid = r["chain_id"]
        if tx.query_one("SELECT 1 FROM image_layers WHERE chain_id=? LIMIT 1", (cid,)):
            continue
        lrow = tx.query_one("SELECT digest, unpacked_size FROM layers WHERE chain_id=?", (cid,))
        if lrow is None:
            continue
        tx.execute("UPDATE layers SET parent=NULL WHERE parent=?", (cid,))
        tx.execute("DELETE FROM layers WHERE chain_id=?", (cid,))
        blobs.append(lrow["digest"])
        freed.append(lrow["unpacked_size"])
        tx.after_commit(lambda c=cid: store.snapshots.remove(c))
    for d in dict.fromkeys(blobs):
        if is_digest(d) and not _blob_referenced(tx, d) and store.blobs.exists(d):
            freed.append(store.blobs.size(d))
            tx.after_commit(lambda d=d: store.blobs.remove(d))
    return parent


def _collect_orphans(store, tx, freed):
    """Files no row refers to (a crash between the rename and the commit): removed
    under the write lock, so no other writer is between those two steps."""
    for name in store.snapshots.names():
        cid = "sha256:" + name
        if tx.query_one("SELECT 1 FROM layers WHERE chain_id=?", (cid,)) is None:
            tx.after_commit(lambda c=cid: store.snapshots.remove(c))
    for d in store.blobs.digests():
        if not _blob_referenced(tx, d):
            try:
                freed.append(store.blobs.size(d))
            except OSError:
                pass
            tx.after_commit(lambda d=d: store.blobs.remove(d))
