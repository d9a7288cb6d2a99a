/* The store's database for the native `pyrt run IMAGE` (see front_store.h). */
#include "front_store.h"

#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define BUSY_TIMEOUT_MS 30000
#define SCHEMA_VERSION 2

/* What pyrt/store/db.py's SCHEMA creates (SCHEMA_NAMES). */
static const char *const SCHEMA_NAMES[] = {
    "layers", "images", "image_layers", "image_layers_chain", "image_layers_digest", "images_parent",
    "tags", "tags_image", "containers", "containers_image", "layer_refcounts", "build_cache",
    "build_cache_image", "build_cache_parent", "networks", "endpoints", "blob_sources",
};

static int note(struct pyrt_store *st, int rc)
{
    snprintf(st->why, sizeof st->why, "%s", st->db ? sqlite3_errmsg(st->db) : sqlite3_errstr(rc));
    return -1;
}

static int exec(struct pyrt_store *st, const char *sql)
{
    int rc = sqlite3_exec(st->db, sql, NULL, NULL, NULL);
    return rc == SQLITE_OK ? 0 : note(st, rc);
}

/* A statement with text parameters (NULL ends them). */
static sqlite3_stmt *prepare(struct pyrt_store *st, const char *sql, const char *const *params)
{
    sqlite3_stmt *s = NULL;
    int rc = sqlite3_prepare_v2(st->db, sql, -1, &s, NULL);
    if (rc != SQLITE_OK) {
        note(st, rc);
        return NULL;
    }
    for (int i = 0; params && params[i]; i++)
        if ((rc = sqlite3_bind_text(s, i + 1, params[i], -1, SQLITE_TRANSIENT)) != SQLITE_OK) {
            note(st, rc);
            sqlite3_finalize(s);
            return NULL;
        }
    return s;
}

/* 1 a row, 0 none, -1 error; the first column's text into out (when given). */
static int one(struct pyrt_store *st, const char *sql, const char *const *params, char *out, size_t cap)
{
    sqlite3_stmt *s = prepare(st, sql, params);
    if (s == NULL)
        return -1;
    int rc = sqlite3_step(s), found = rc == SQLITE_ROW;
    if (found && out) {
        const unsigned char *t = sqlite3_column_text(s, 0);
        if (t == NULL || strlen((const char *)t) >= cap)
            found = -1;
        else
            strcpy(out, (const char *)t);
    }
    if (rc != SQLITE_ROW && rc != SQLITE_DONE)
        found = note(st, rc);
    sqlite3_finalize(s);
    return found;
}

int pyrt_store_open(struct pyrt_store *st, const char *path)
{
    memset(st, 0, sizeof *st);
    int rc = sqlite3_open_v2(path, &st->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOFOLLOW, NULL);
    if (rc != SQLITE_OK) {
        pyrt_store_close(st);
        return -1;
    }
    sqlite3_busy_timeout(st->db, BUSY_TIMEOUT_MS);
    if (exec(st, "PRAGMA journal_mode = WAL") < 0 || exec(st, "PRAGMA synchronous = NORMAL") < 0 ||
        exec(st, "PRAGMA foreign_keys = ON") < 0) {
        pyrt_store_close(st);
        return -1;
    }
    char v[32];
    if (one(st, "PRAGMA user_version", NULL, v, sizeof v) != 1 || atoi(v) != SCHEMA_VERSION) {
        pyrt_store_close(st);
        return -1;
    }
    for (size_t i = 0; i < sizeof SCHEMA_NAMES / sizeof SCHEMA_NAMES[0]; i++) {
        const char *p[] = {SCHEMA_NAMES[i], NULL};
        if (one(st, "SELECT 1 FROM sqlite_master WHERE name=?", p, NULL, 0) != 1) {
            pyrt_store_close(st);
            return -1;
        }
    }
    return 0;
}

void pyrt_store_close(struct pyrt_store *st)
{
    if (st->db)
        sqlite3_close(st->db);
    st->db = NULL;
}

int pyrt_store_tag(struct pyrt_store *st, const char *repo, const char *tag, char *id, size_t cap)
{
    const char *p[] = {repo, tag, NULL};
    return one(st, "SELECT image_id FROM tags WHERE repository=? AND tag=?", p, id, cap);
}

int pyrt_store_has_image(struct pyrt_store *st, const char *id)
{
    const char *p[] = {id, NULL};
    return one(st, "SELECT 1 FROM images WHERE id=?", p, NULL, 0);
}

int pyrt_store_image(struct pyrt_store *st, const char *id, char **config, char ***chains, size_t *n)
{
    *config = NULL;
    *chains = NULL;
    *n = 0;
    const char *p[] = {id, NULL};
    sqlite3_stmt *s = prepare(st, "SELECT config FROM images WHERE id=?", p);
    if (s == NULL)
        return -1;
    int rc = sqlite3_step(s);
    if (rc == SQLITE_ROW && sqlite3_column_type(s, 0) == SQLITE_TEXT) {
        const unsigned char *t = sqlite3_column_text(s, 0);
        int len = sqlite3_column_bytes(s, 0);
        if (t && (size_t)len == strlen((const char *)t)) /* (a NUL inside: not Python's text) */
            *config = strdup((const char *)t);
    }
    sqlite3_finalize(s);
    if (*config == NULL)
        return -1;
    s = prepare(st, "SELECT il.chain_id FROM image_layers il JOIN layers l ON l.chain_id = il.chain_id "
                    "WHERE il.image_id=? ORDER BY il.position", p);
    if (s == NULL)
        return -1;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        const unsigned char *t = sqlite3_column_text(s, 0);
        char **l = realloc(*chains, (*n + 1) * sizeof *l);
        if (t == NULL || l == NULL)
            break;
        *chains = l;
        if ((l[*n] = strdup((const char *)t)) == NULL)
            break;
        (*n)++;
    }
    sqlite3_finalize(s);
    return rc == SQLITE_DONE ? 0 : -1;
}

int pyrt_store_name_used(struct pyrt_store *st, const char *name)
{
    const char *p[] = {name, NULL};
    return one(st, "SELECT 1 FROM containers WHERE name=?", p, NULL, 0);
}

static int changes(struct pyrt_store *st, const char *sql, const char *const *params)
{
    sqlite3_stmt *s = prepare(st, sql, params);
    if (s == NULL)
        return -1;
    int rc = sqlite3_step(s);
    sqlite3_finalize(s);
    return rc == SQLITE_DONE ? sqlite3_changes(st->db) : note(st, rc);
}

static int end(struct pyrt_store *st, int result)
{
    if (result < 0 || result > 0x10000) {
        char why[sizeof st->why];
        memcpy(why, st->why, sizeof why);
        (void)sqlite3_exec(st->db, "ROLLBACK", NULL, NULL, NULL);
        memcpy(st->why, why, sizeof why);
        return result > 0x10000 ? result - 0x10000 : -1;
    }
    return exec(st, "COMMIT") < 0 ? -1 : result;
}

int pyrt_store_insert(struct pyrt_store *st, const char *id, const char *name, const char *image_id, double created,
                      const char *config, const char *state)
{
    if (exec(st, "BEGIN IMMEDIATE") < 0)
        return -1;
    const char *pn[] = {name, NULL}, *pi[] = {image_id, NULL};
    int r = one(st, "SELECT 1 FROM containers WHERE name=?", pn, NULL, 0);
    if (r != 0)
        return end(st, r < 0 ? -1 : 0x10000 + 1);
    r = one(st, "SELECT 1 FROM images WHERE id=?", pi, NULL, 0);
    if (r != 1)
        return end(st, r < 0 ? -1 : 0x10000 + 2);
    sqlite3_stmt *s = prepare(st, "INSERT INTO containers (id, name, image_id, created, config, state) "
                                  "VALUES (?,?,?,?,?,?)", NULL);
    if (s == NULL)
        return end(st, -1);
    int rc = sqlite3_bind_text(s, 1, id, -1, SQLITE_TRANSIENT);
    if (rc == SQLITE_OK)
        rc = sqlite3_bind_text(s, 2, name, -1, SQLITE_TRANSIENT);
    if (rc == SQLITE_OK)
        rc = sqlite3_bind_text(s, 3, image_id, -1, SQLITE_TRANSIENT);
    if (rc == SQLITE_OK)
        rc = sqlite3_bind_double(s, 4, created);
    if (rc == SQLITE_OK)
        rc = sqlite3_bind_text(s, 5, config, -1, SQLITE_TRANSIENT);
    if (rc == SQLITE_OK)
        rc = sqlite3_bind_text(s, 6, state, -1, SQLITE_TRANSIENT);
    if (rc == SQLITE_OK)
        rc = sqlite3_step(s);
    if (rc != SQLITE_DONE)
        note(st, rc);
    sqlite3_finalize(s);
    return end(st, rc == SQLITE_DONE ? 0 : -1);
}

int pyrt_store_set_state(struct pyrt_store *st, const char *id, const char *state)
{
    if (exec(st, "BEGIN IMMEDIATE") < 0)
        return -1;
    const char *p[] = {state, id, NULL};
    return end(st, changes(st, "UPDATE containers SET state=? WHERE id=?", p));
}

int pyrt_store_delete(struct pyrt_store *st, const char *id)
{
    if (exec(st, "BEGIN IMMEDIATE") < 0)
        return -1;
    const char *p[] = {id, NULL};
    return end(st, changes(st, "DELETE FROM containers WHERE id=?", p));
}
