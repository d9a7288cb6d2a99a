/* A parsed JSON value (yajl) as Python's json module makes it, for the native
 * commands that must say exactly what pyrt's Python code says about a config:
 * its type name, its truth, equality with a small integer, repr() (in error
 * messages), members looked up as a dict does (a repeated key: its last value),
 * and integers of any size as decimal text (JSON integers have no bound).
 * Strings are yajl's C strings: one with a \u0000 in it ends there (yajl's tree
 * keeps no length), where Python keeps the rest. */
#ifndef PYRT_RT_PYVAL_H
#define PYRT_RT_PYVAL_H

#include <stddef.h>

#include <yajl/yajl_tree.h>

#include "sbuf.h"

/* The member `key` of the object (the last one of that name), or NULL (absent, or
 * obj no object). */
yajl_val rt_py_get(yajl_val obj, const char *key);

/* type(v).__name__: "dict", "list", "str", "int", "float", "bool" or "NoneType"
 * (NULL is None). */
const char *rt_py_type(yajl_val v);

/* bool(v) */
int rt_py_truthy(yajl_val v);

/* A JSON integer (not a float, not a bool). */
int rt_py_is_int(yajl_val v);

/* v == n, as Python compares (an int, a float or a bool; None equals nothing). */
int rt_py_eq(yajl_val v, long long n);

/* An integer's canonical decimal text ("-0" is "0"); v must be rt_py_is_int. */
const char *rt_py_int_text(yajl_val v);

/* Compare two canonical decimal texts: <0, 0, >0. */
int rt_dec_cmp(const char *a, const char *b);

/* a - b for decimal texts with a >= b >= 0: malloc'd, NULL when out of memory. */
char *rt_dec_sub(const char *a, const char *b);

/* Append repr(v) (a Python str's repr for a string, "None" for NULL) to b; -1
 * when out of memory. Non-ASCII characters are kept as they are except the
 * C1 controls, the no-break and soft hyphen, separators and format characters of
 * the BMP, which repr escapes. */
int rt_py_repr(struct sbuf *b, yajl_val v);

/* Append repr() of a C string (a Python str). */
int rt_py_repr_str(struct sbuf *b, const char *s);

/* Append str(v): the text itself for a string, else repr(v). */
int rt_py_str(struct sbuf *b, yajl_val v);

#endif
