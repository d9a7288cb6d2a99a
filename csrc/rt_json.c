/* See rt_json.h. */
#include "rt_json.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fdio.h"

yajl_val rt_json_get(yajl_val obj, const char *key)
{
    if (obj == NULL || !YAJL_IS_OBJECT(obj))
        return NULL;
    for (size_t i = 0; i < obj->u.object.len; i++)
        if (strcmp(obj->u.object.keys[i], key) == 0)
            return obj->u.object.values[i];
    return NULL;
}

const char *rt_json_str(yajl_val obj, const char *key, const char *dflt)
{
    yajl_val v = rt_json_get(obj, key);
    return v != NULL && YAJL_IS_STRING(v) ? v->u.string : dflt;
}

long long rt_json_int(yajl_val obj, const char *key, long long dflt)
{
    yajl_val v = rt_json_get(obj, key);
    return v != NULL && YAJL_IS_INTEGER(v) ? v->u.number.i : dflt;
}

int rt_json_truthy(yajl_val obj, const char *key)
{
    yajl_val v = rt_json_get(obj, key);
    if (v == NULL)
        return 0;
    switch (v->type) {
    case yajl_t_true:
        return 1;
    case yajl_t_number:
        return YAJL_IS_INTEGER(v) ? v->u.number.i != 0 : YAJL_IS_DOUBLE(v) && v->u.number.d != 0;
    case yajl_t_string:
        return v->u.string[0] != 0;
    case yajl_t_array:
        return v->u.array.len > 0;
    case yajl_t_object:
        return v->u.object.len > 0;
    default:
        return 0;
    }
}

yajl_val rt_json_load_at(int dirfd, const char *path, char *why, size_t whylen)
{
    /* O_NONBLOCK: a FIFO planted in its place must not hang us at open (it is
       refused below: not a regular file) */
    int fd = openat(dirfd, path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
    if (fd < 0) {
        if (errno == ELOOP && why != NULL && whylen > 0)
            snprintf(why, whylen, "a symlink");
        if (errno == ELOOP)
            errno = EINVAL;
        return NULL;
    }
    struct stat st;
    if (fstat(fd, &st) < 0) {
        int err = errno;
        close(fd);
        errno = err;
        return NULL;
    }
    if (!S_ISREG(st.st_mode) || st.st_size > (16 << 20)) {
        close(fd);
        if (why != NULL && whylen > 0)
            snprintf(why, whylen, "not a regular file of at most 16 MiB");
        errno = EINVAL;
        return NULL;
    }
    size_t cap = (size_t)st.st_size + 1, len = 0;
    char *buf = malloc(cap + 1);
    if (buf == NULL) {
        close(fd);
        return NULL;
    }
    for (;;) {
        if (len == cap) { /* it grew while read */
            char *more = realloc(buf, cap * 2 + 1);
            if (more == NULL || cap > (16 << 20)) {
                free(more != NULL ? more : buf);
                close(fd);
                errno = more == NULL ? ENOMEM : EINVAL;
                return NULL;
            }
            buf = more;
            cap *= 2;
        }
        ssize_t n = read(fd, buf + len, cap - len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            int err = errno;
            free(buf);
            close(fd);
            errno = err;
            return NULL;
        }
        if (n == 0)
            break;
        len += (size_t)n;
    }
    close(fd);
    buf[len] = 0;
    char err[256] = "";
    yajl_val v = yajl_tree_parse(buf, err, sizeof err);
    free(buf);
    if (v == NULL) {
        if (why != NULL && whylen > 0) {
            /* yajl's message spans lines (with a pointer under the text): the first */
            char *nl = strchr(err, '\n');
            if (nl != NULL)
                *nl = 0;
            snprintf(why, whylen, "%s", err[0] ? err : "not JSON");
        }
        errno = EINVAL;
    }
    return v;
}

void rt_gen_str(yajl_gen g, const char *s)
{
    if (s == NULL)
        yajl_gen_null(g);
    else
        yajl_gen_string(g, (const unsigned char *)s, strlen(s));
}

void rt_gen_kv_str(yajl_gen g, const char *key, const char *value)
{
    rt_gen_str(g, key);
    rt_gen_str(g, value);
}

static void gen(yajl_gen g, yajl_val v, int depth)
{
    if (v == NULL || depth > 128) { /* deeper: yajl_gen refuses it anyway (YAJL_MAX_DEPTH) */
        yajl_gen_null(g);
        return;
    }
    switch (v->type) {
    case yajl_t_string:
        rt_gen_str(g, v->u.string);
        break;
    case yajl_t_number:
        yajl_gen_number(g, v->u.number.r, strlen(v->u.number.r));
        break;
    case yajl_t_object:
        yajl_gen_map_open(g);
        for (size_t i = 0; i < v->u.object.len; i++) {
            rt_gen_str(g, v->u.object.keys[i]);
            gen(g, v->u.object.values[i], depth + 1);
        }
        yajl_gen_map_close(g);
        break;
    case yajl_t_array:
        yajl_gen_array_open(g);
        for (size_t i = 0; i < v->u.array.len; i++)
            gen(g, v->u.array.values[i], depth + 1);
        yajl_gen_array_close(g);
        break;
    case yajl_t_true:
        yajl_gen_bool(g, 1);
        break;
    case yajl_t_false:
        yajl_gen_bool(g, 0);
        break;
    default:
        yajl_gen_null(g);
        break;
    }
}

void rt_json_gen(yajl_gen g, yajl_val v)
{
    gen(g, v, 0);
}

int rt_gen_write(yajl_gen g, int fd)
{
    const unsigned char *buf;
    size_t len;
    if (yajl_gen_get_buf(g, &buf, &len) != yajl_gen_status_ok) {
        errno = EINVAL;
        return -1;
    }
    return pyrt_write_all(fd, buf, len);
}

/* -- pretty printing ------------------------------------------------------------------ */

struct buf {
    char *p;
    size_t len, cap;
};

static int put(struct buf *b, const char *s, size_t n)
{
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->len + n + 1)
            cap *= 2;
        char *more = realloc(b->p, cap);
        if (more == NULL)
            return -1;
        b->p = more;
        b->cap = cap;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = 0;
    return 0;
}

static int newline(struct buf *b, const char *indent, int depth)
{
    if (indent == NULL)
        return 0;
    if (put(b, "\n", 1) < 0)
        return -1;
    for (int i = 0; i < depth; i++)
        if (put(b, indent, strlen(indent)) < 0)
            return -1;
    return 0;
}

char *rt_json_pretty(const unsigned char *in, size_t len, const char *indent, size_t *outlen)
{
    struct buf b = {NULL, 0, 0};
    int depth = 0, in_str = 0, rc = 0;
    for (size_t i = 0; i < len && rc == 0; i++) {
        char c = (char)in[i];
        if (in_str) {
            rc = put(&b, &c, 1);
            if (c == '\\' && i + 1 < len)
                rc |= put(&b, (const char *)&in[++i], 1);
            else if (c == '"')
                in_str = 0;
            continue;
        }
        switch (c) {
        case '"':
            in_str = 1;
            rc = put(&b, &c, 1);
            break;
        case '{':
        case '[':
            if (i + 1 < len && in[i + 1] == (c == '{' ? '}' : ']')) {
                rc = put(&b, c == '{' ? "{}" : "[]", 2);
                i++;
            } else {
                rc = put(&b, &c, 1) | newline(&b, indent, ++depth);
            }
            break;
        case '}':
        case ']':
            rc = newline(&b, indent, --depth) | put(&b, &c, 1);
            break;
        case ',':
            rc = indent == NULL ? put(&b, ", ", 2) : put(&b, ",", 1) | newline(&b, indent, depth);
            break;
        case ':':
            rc = put(&b, ": ", 2);
            break;
        case ' ':
        case '\n':
        case '\t':
        case '\r':
            break;
        default:
            rc = put(&b, &c, 1);
        }
    }
    if (rc == 0)
        rc = put(&b, "\n", 1);
    if (rc != 0) {
        free(b.p);
        errno = ENOMEM;
        return NULL;
    }
    *outlen = b.len;
    return b.p;
}
