/* JSON for pyrt-runtime (csrc/bin/pyrt-runtime.c) with yajl: lookups in a parsed
 * tree that never trust the shape of what they read (a key missing or of another
 * type gives the default), and a generator for trees and plain values. */
#ifndef PYRT_RT_JSON_H
#define PYRT_RT_JSON_H

#include <yajl/yajl_gen.h>
#include <yajl/yajl_tree.h>

/* The value of `key` in the object `obj`, or NULL (absent, or obj no object). */
yajl_val rt_json_get(yajl_val obj, const char *key);

/* A string member, or dflt when it is absent or not a string. */
const char *rt_json_str(yajl_val obj, const char *key, const char *dflt);

/* An integer member, or dflt when it is absent or not an integer. */
long long rt_json_int(yajl_val obj, const char *key, long long dflt);

/* Whether a member is truthy as Python sees it (true, a non-zero number, a
 * non-empty string, array or object). */
int rt_json_truthy(yajl_val obj, const char *key);

/* A parsed file (at most 16 MiB) relative to dirfd, or NULL with errno set
 * (EINVAL for bad JSON, with its reason in why[whylen]). */
yajl_val rt_json_load_at(int dirfd, const char *path, char *why, size_t whylen);

/* The value as JSON (numbers as they were written). */
void rt_json_gen(yajl_gen g, yajl_val v);

/* Helpers: a C string (NULL as null), and a key-value pair with a string value. */
void rt_gen_str(yajl_gen g, const char *s);
void rt_gen_kv_str(yajl_gen g, const char *key, const char *value);

/* Write the generator's buffer to fd (all of it); 0 or -1 with errno. */
int rt_gen_write(yajl_gen g, int fd);

/* Compact JSON text re-indented as Python's json.dumps(..., indent=...) writes it
 * ("key": value, one member a line, {} and [] when empty), with a newline at the
 * end (indent NULL: on one line, ", " and ": " between items, as json.dumps
 * without indent): malloc'd, its length in *outlen; NULL when out of memory. */
char *rt_json_pretty(const unsigned char *in, size_t len, const char *indent, size_t *outlen);

#endif
