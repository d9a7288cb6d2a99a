/* The store's database (pyrt/store/db.py) for the native `pyrt run IMAGE`
 * (csrc/front_container.h): SQLite in WAL mode, a busy timeout of 30 s, writes in
 * BEGIN IMMEDIATE transactions, every value a bound parameter. Each function is the
 * C twin of the query pyrt's Python makes; -1 means "not as Python would" (the
 * command line is then handed to Python, before anything was done) or, once
 * something was done, a failure whose SQLite message is in st->why. */
#ifndef PYRT_FRONT_STORE_H
#define PYRT_FRONT_STORE_H

#include <stddef.h>

struct sqlite3;

struct pyrt_store {
    struct sqlite3 *db;
    char why[256];
};

/* Open ROOT/pyrt.db as Database() does, when it exists with this pyrt's schema
 * (version and every table, index and view: Python would add what is missing): 0,
 * or -1. */
int pyrt_store_open(struct pyrt_store *st, const char *path);
void pyrt_store_close(struct pyrt_store *st);

/* The image id a tag names (repository, tag exactly): 1 found (id filled, 72
 * bytes), 0 none, -1 error. */
int pyrt_store_tag(struct pyrt_store *st, const char *repo, const char *tag, char *id, size_t cap);
/* Whether an image of this full id exists: 1, 0, -1. */
int pyrt_store_has_image(struct pyrt_store *st, const char *id);
/* The image's config text (malloc'd) and its layers' chain ids bottom-up
 * (malloc'd array of malloc'd strings, *n of them): 0, or -1. */
int pyrt_store_image(struct pyrt_store *st, const char *id, char **config, char ***chains, size_t *n);
/* Whether a container has this name: 1, 0, -1. */
int pyrt_store_name_used(struct pyrt_store *st, const char *name);
/* create()'s transaction: 0 inserted; 1 the name is taken; 2 the image was removed
 * meanwhile; -1 error. */
int pyrt_store_insert(struct pyrt_store *st, const char *id, const char *name, const char *image_id, double created,
                      const char *config, const char *state);
/* UPDATE containers SET state=? WHERE id=? (in a transaction): rows changed, -1. */
int pyrt_store_set_state(struct pyrt_store *st, const char *id, const char *state);
/* DELETE FROM containers WHERE id=?: rows deleted, -1. */
int pyrt_store_delete(struct pyrt_store *st, const char *id);

#endif
