/* The image side of the native `pyrt run IMAGE` (see front_image.h). */
#include "front_image.h"

#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <yajl/yajl_parse.h>

int pyrt_image_plain(const char *s)
{
    for (; *s; s++)
        if (*s < 0x20 || *s > 0x7e)
            return 0;
    return 1;
}

int pyrt_image_ascii(const char *s)
{
    for (; *s; s++)
        if ((unsigned char)*s > 0x7f)
            return 0;
    return 1;
}

/* -- references (pyrt/oci/reference.py) -------------------------------------------------------- */

static int alnum_lower(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
}

/* _COMPONENT: [a-z0-9]+ ((. | _ | __ | -+) [a-z0-9]+)* over s[0..n) */
static int component(const char *s, size_t n)
{
    size_t i = 0;
    if (n == 0 || !alnum_lower(s[0]) || !alnum_lower(s[n - 1]))
        return 0;
    while (i < n) {
        if (alnum_lower(s[i])) {
            i++;
            continue;
        }
        size_t j = i;
        while (j < n && !alnum_lower(s[j]))
            j++;
        size_t k = j - i;
        int ok = (k == 1 && (s[i] == '.' || s[i] == '_')) || (k == 2 && s[i] == '_' && s[i + 1] == '_');
        if (!ok) {
            ok = 1;
            for (size_t m = i; m < j; m++)
                ok &= s[m] == '-';
        }
        if (!ok)
            return 0;
        i = j;
    }
    return 1;
}

static int path_ok(const char *s)
{
    for (;;) {
        const char *slash = strchr(s, '/');
        size_t n = slash ? (size_t)(slash - s) : strlen(s);
        if (!component(s, n))
            return 0;
        if (!slash)
            return 1;
        s = slash + 1;
    }
}

static int alnum(char c)
{
    return isascii((unsigned char)c) && isalnum((unsigned char)c);
}

/* _DOMAIN: components [a-zA-Z0-9]([a-zA-Z0-9-]*[a-zA-Z0-9])? joined by '.', then :[0-9]+ */
static int domain_ok(const char *s, size_t n)
{
    size_t i = 0;
    for (;;) {
        size_t j = i;
        while (j < n && (alnum(s[j]) || s[j] == '-'))
            j++;
        if (j == i || !alnum(s[i]) || !alnum(s[j - 1]))
            return 0;
        i = j;
        if (i < n && s[i] == '.') {
            i++;
            continue;
        }
        break;
    }
    if (i == n)
        return 1;
    if (s[i] != ':' || i + 1 == n)
        return 0;
    for (i++; i < n; i++)
        if (s[i] < '0' || s[i] > '9')
            return 0;
    return 1;
}

/* _split_domain: the length of the domain part ("" when none) */
static size_t split_domain(const char *name)
{
    const char *slash = strchr(name, '/');
    if (!slash)
        return 0;
    size_t n = (size_t)(slash - name);
    int upper = 0;
    for (size_t i = 0; i < n; i++)
        upper |= name[i] >= 'A' && name[i] <= 'Z';
    if (memchr(name, '.', n) || memchr(name, ':', n) || (n == 9 && strncmp(name, "localhost", 9) == 0) || upper)
        return n;
    return 0;
}

int pyrt_image_parse_ref(const char *ref, char *repo, size_t rcap, char *tag, size_t tcap)
{
    size_t len = strlen(ref);
    if (len == 0 || !pyrt_image_plain(ref) || strchr(ref, ' ') || strchr(ref, '@') ||
        strncmp(ref, "sha256:", 7) == 0)
        return -1;
    const char *slash = strrchr(ref, '/'), *colon = strrchr(ref, ':');
    size_t nlen = len;
    if (colon && (!slash || colon > slash)) {
        const char *t = colon + 1;
        size_t tl = strlen(t);
        if (tl == 0 || tl > 128 || !(alnum(t[0]) || t[0] == '_'))
            return -1;
        for (size_t i = 1; i < tl; i++)
            if (!(alnum(t[i]) || t[i] == '_' || t[i] == '.' || t[i] == '-'))
                return -1;
        if (tl >= tcap)
            return -1;
        strcpy(tag, t);
        nlen = (size_t)(colon - ref);
    } else {
        if (tcap < 7)
            return -1;
        strcpy(tag, "latest");
    }
    if (nlen == 0 || nlen > 255 || nlen >= rcap)
        return -1;
    memcpy(repo, ref, nlen);
    repo[nlen] = 0;
    size_t d = split_domain(repo);
    if (d && !domain_ok(repo, d))
        return -1;
    return path_ok(d ? repo + d + 1 : repo) ? 0 : -1;
}

static void add_unique(char out[][300], int *n, const char *a, const char *b)
{
    char name[300];
    if (snprintf(name, sizeof name, "%s%s", a, b) >= (int)sizeof name)
        return;
    for (int i = 0; i < *n; i++)
        if (strcmp(out[i], name) == 0)
            return;
    strcpy(out[(*n)++], name);
}

int pyrt_image_equivalents(const char *repo, char out[][300])
{
    int n = 0;
    add_unique(out, &n, repo, "");
    size_t d = split_domain(repo);
    const char *path = d ? repo + d + 1 : repo;
    if (!d) {
        if (!strchr(path, '/'))
            add_unique(out, &n, "docker.io/library/", path);
        add_unique(out, &n, "docker.io/", path);
        add_unique(out, &n, "localhost/", path);
    } else if ((d == 9 && strncmp(repo, "docker.io", 9) == 0) || (d == 15 && strncmp(repo, "index.docker.io", 15) == 0)) {
        add_unique(out, &n, strncmp(path, "library/", 8) == 0 ? path + 8 : path, "");
        add_unique(out, &n, "docker.io/", path);
    } else if (d == 9 && strncmp(repo, "localhost", 9) == 0) {
        add_unique(out, &n, path, "");
    }
    return n;
}

/* -- the image config (pyrt/containers/create.py, pyrt/oci/image.py check_platform) ------------- */

enum { C_ROOT = 1, C_CONFIG, C_ENV, C_CMD, C_EP, C_VOLUMES, C_LABELS, C_OTHER };
enum { K_NONE, K_OS, K_ARCH, K_VARIANT, K_CONFIG, K_ENV, K_CMD, K_EP, K_WD, K_USER, K_VOLUMES, K_LABELS, K_STOP };
#define MAX_DEPTH 500 /* deeper: Python's parser may give up (RecursionError): its case */

struct pstate {
    struct pyrt_image_config *c;
    int depth, bad;
    int kind[MAX_DEPTH + 2];
    int key;      /* the key just read in the map at the top */
    unsigned seen1, seen2;
    int config_seen;
};

static int key_of(int kind, const unsigned char *k, size_t n)
{
    static const struct { int kind; const char *name; int key; } KEYS[] = {
        {C_ROOT, "os", K_OS}, {C_ROOT, "architecture", K_ARCH}, {C_ROOT, "variant", K_VARIANT},
        {C_ROOT, "config", K_CONFIG}, {C_CONFIG, "Env", K_ENV}, {C_CONFIG, "Cmd", K_CMD},
        {C_CONFIG, "Entrypoint", K_EP}, {C_CONFIG, "WorkingDir", K_WD}, {C_CONFIG, "User", K_USER},
        {C_CONFIG, "Volumes", K_VOLUMES}, {C_CONFIG, "Labels", K_LABELS}, {C_CONFIG, "StopSignal", K_STOP},
    };
    for (size_t i = 0; i < sizeof KEYS / sizeof KEYS[0]; i++)
        if (KEYS[i].kind == kind && strlen(KEYS[i].name) == n && memcmp(KEYS[i].name, k, n) == 0)
            return KEYS[i].key;
    return K_NONE;
}

static int push(struct pstate *p, int kind)
{
    if (p->depth >= MAX_DEPTH) {
        p->bad = 1;
        return 0;
    }
    p->kind[++p->depth] = kind;
    return 1;
}

static char *dup_plain(struct pstate *p, const unsigned char *s, size_t n, int ascii)
{
    if (memchr(s, 0, n)) {
        p->bad = 1;
        return NULL;
    }
    char *out = malloc(n + 1);
    if (out == NULL) {
        p->bad = 1;
        return NULL;
    }
    memcpy(out, s, n);
    out[n] = 0;
    if (!(ascii ? pyrt_image_ascii(out) : pyrt_image_plain(out))) {
        free(out);
        p->bad = 1;
        return NULL;
    }
    return out;
}

static void append(struct pstate *p, char ***list, size_t *n, char *s)
{
    char **l = realloc(*list, (*n + 2) * sizeof *l);
    if (l == NULL || s == NULL) {
        free(l == NULL ? s : NULL);
        if (l)
            *list = l;
        p->bad = 1;
        return;
    }
    l[(*n)++] = s;
    l[*n] = NULL;
    *list = l;
}

/* A value (type: 'n' null, 'b' bool, '0' number, 's' string, '{', '[') at the top
 * of the stack; 1 go on, 0 stop (bad). */
static int value(struct pstate *p, char type, const unsigned char *s, size_t n)
{
    int where = p->depth ? p->kind[p->depth] : 0, key = p->key;
    p->key = K_NONE;
    if (where == 0) {
        if (type != '{')
            return p->bad = 1, 0;
        return push(p, C_ROOT);
    }
    struct pyrt_image_config *c = p->c;
    if (where == C_ROOT || where == C_CONFIG) {
        switch (key) {
        case K_OS: case K_ARCH: case K_VARIANT: case K_WD: case K_USER: case K_STOP: {
            if (type == 'n') {
                c->working_dir_null |= key == K_WD;
                c->user_null |= key == K_USER;
                return 1;
            }
            if (type != 's')
                return p->bad = 1, 0;
            char *v = dup_plain(p, s, n, 0);
            if (v == NULL)
                return 0;
            const char **slot = key == K_OS ? &c->os : key == K_ARCH ? &c->arch : key == K_WD ? &c->working_dir :
                                key == K_USER ? &c->user : key == K_STOP ? &c->stop_signal : NULL;
            if (slot)
                *slot = v;
            else
                free(v);
            return 1;
        }
        case K_CONFIG:
            if (type == 'n')
                return 1;
            if (type != '{')
                return p->bad = 1, 0;
            return push(p, C_CONFIG);
        case K_ENV: case K_CMD: case K_EP:
            if (type == 'n')
                return 1;
            if (type != '[')
                return p->bad = 1, 0;
            return push(p, key == K_ENV ? C_ENV : key == K_CMD ? C_CMD : C_EP);
        case K_VOLUMES: case K_LABELS:
            if (type == 'n')
                return 1;
            if (type != '{' && !(key == K_VOLUMES && type == '['))
                return p->bad = 1, 0;
            return push(p, key == K_VOLUMES ? C_VOLUMES : C_LABELS);
        default:
            break;
        }
    } else if (where == C_ENV || where == C_CMD || where == C_EP) {
        if (type != 's')
            return p->bad = 1, 0;
        char *v = dup_plain(p, s, n, 1);
        if (where == C_ENV)
            append(p, &c->env, &c->nenv, v);
        else if (where == C_CMD)
            append(p, &c->cmd, &c->ncmd, v);
        else
            append(p, &c->entrypoint, &c->nentrypoint, v);
        return !p->bad;
    } else if (where == C_LABELS) { /* a label's value: a string (json.dumps writes it back as it is) */
        if (type != 's')
            return p->bad = 1, 0;
        append(p, &c->labels, &c->nlabels, dup_plain(p, s, n, 1));
        return !p->bad;
    } else if (where == C_VOLUMES) {
        return p->bad = 1, 0; /* a volume: Python's */
    }
    if (type == '{' || type == '[')
        return push(p, C_OTHER);
    return 1;
}

static int cb_null(void *ctx) { return value(ctx, 'n', NULL, 0); }
static int cb_bool(void *ctx, int b) { (void)b; return value(ctx, 'b', NULL, 0); }
static int cb_number(void *ctx, const char *s, size_t n) { (void)s; (void)n; return value(ctx, '0', NULL, 0); }
static int cb_string(void *ctx, const unsigned char *s, size_t n) { return value(ctx, 's', s, n); }
static int cb_start_map(void *ctx) { return value(ctx, '{', NULL, 0); }
static int cb_start_array(void *ctx) { return value(ctx, '[', NULL, 0); }

static int cb_key(void *ctx, const unsigned char *key, size_t n)
{
    struct pstate *p = ctx;
    int where = p->kind[p->depth];
    if (where == C_VOLUMES)
        return p->bad = 1, 0;
    if (where == C_LABELS) { /* a label's key, once (twice: Python keeps the last value, in the first place) */
        char *k = dup_plain(p, key, n, 1);
        for (size_t i = 0; k && i < p->c->nlabels; i += 2)
            if (strcmp(p->c->labels[i], k) == 0)
                p->bad = 1;
        append(p, &p->c->labels, &p->c->nlabels, k);
        return !p->bad;
    }
    p->key = where == C_ROOT || where == C_CONFIG ? key_of(where, key, n) : K_NONE;
    if (p->key != K_NONE) { /* given twice: Python keeps the last, this code none */
        unsigned *seen = where == C_ROOT ? &p->seen1 : &p->seen2;
        if (*seen & (1u << p->key))
            return p->bad = 1, 0;
        *seen |= 1u << p->key;
    }
    return 1;
}

static int cb_end(void *ctx)
{
    struct pstate *p = ctx;
    p->depth--;
    return 1;
}

int pyrt_image_config(const char *text, const char *host_arch, struct pyrt_image_config *c)
{
    memset(c, 0, sizeof *c);
    /* an escaped surrogate: Python keeps a lone one, yajl does not */
    for (const char *q = text; (q = strstr(q, "\\u")) != NULL; q += 2)
        if ((q[2] == 'd' || q[2] == 'D') && strchr("89abAB", q[3]) && q[3])
            return -1;
        else if ((q[2] == 'd' || q[2] == 'D') && q[3] && strchr("cdefCDEF", q[3]))
            return -1;
    static const yajl_callbacks cbs = {
        .yajl_null = cb_null, .yajl_boolean = cb_bool, .yajl_number = cb_number, .yajl_string = cb_string,
        .yajl_start_map = cb_start_map, .yajl_map_key = cb_key, .yajl_end_map = cb_end,
        .yajl_start_array = cb_start_array, .yajl_end_array = cb_end,
    };
    struct pstate *p = calloc(1, sizeof *p);
    if (p == NULL)
        return -1;
    p->c = c;
    yajl_handle h = yajl_alloc(&cbs, NULL, p);
    if (h == NULL) {
        free(p);
        return -1;
    }
    int ok = yajl_parse(h, (const unsigned char *)text, strlen(text)) == yajl_status_ok &&
             yajl_complete_parse(h) == yajl_status_ok && !p->bad;
    yajl_free(h);
    free(p);
    if (!ok)
        return -1;
    /* check_runnable: another OS is an error, another architecture a warning: Python's */
    if ((c->os && c->os[0] && strcmp(c->os, "linux") != 0) || (c->arch && c->arch[0] && strcmp(c->arch, host_arch) != 0))
        return -1;
    if (c->user && c->user[0]) /* a user to resolve: Python's */
        return -1;
    return 0;
}

/* -- JSON as json.dumps writes it ------------------------------------------------------------- */

int pyrt_json_raw(struct sbuf *b, const char *s)
{
    return pyrt_sbuf_append(b, s, strlen(s));
}

int pyrt_json_str(struct sbuf *b, const char *s)
{
    if (pyrt_sbuf_append(b, "\"", 1) < 0)
        return -1;
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        char esc[8];
        const char *out = esc;
        switch (*p) {
        case '"': out = "\\\""; break;
        case '\\': out = "\\\\"; break;
        case '\n': out = "\\n"; break;
        case '\r': out = "\\r"; break;
        case '\t': out = "\\t"; break;
        case '\b': out = "\\b"; break;
        case '\f': out = "\\f"; break;
        default:
            if (*p < 0x20 || *p > 0x7e)
                snprintf(esc, sizeof esc, "\\u%04x", *p); /* (only ASCII reaches here) */
            else
                esc[0] = (char)*p, esc[1] = 0;
        }
        if (pyrt_sbuf_append(b, out, strlen(out)) < 0)
            return -1;
    }
    return pyrt_sbuf_append(b, "\"", 1);
}

int pyrt_json_float(struct sbuf *b, double v)
{
    char t[64];
    int first = 1; /* in fixed notation from 1e-4 to 1e16, as repr: the integer digits at least */
    if (fabs(v) >= 1 && fabs(v) < 1e16)
        first = (int)floor(log10(fabs(v))) + 1;
    for (int prec = first; prec <= 17; prec++) { /* repr: the shortest text that reads back */
        snprintf(t, sizeof t, "%.*g", prec, v);
        if (strtod(t, NULL) == v)
            break;
    }
    if (!strpbrk(t, ".eEn"))
        strcat(t, ".0");
    return pyrt_json_raw(b, t);
}
