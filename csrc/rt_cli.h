/* pyrt-runtime's command-line plumbing, apart from its commands
 * (csrc/bin/pyrt-runtime.c): the --log file and stderr, runc-style options (-opt
 * or --opt, --opt=value), JSON output as Python's json.dumps writes it, signal
 * names, and the state directory's default. */
#ifndef PYRT_RT_CLI_H
#define PYRT_RT_CLI_H

#include <stddef.h>
#include <yajl/yajl_gen.h>

#include "rt.h"

#define PROG "pyrt-runtime"

/* -- the log: records go to path (text or JSON lines, as runc's); errors, and
 *    warnings when there is no log or with --debug, also to stderr -- */
struct rt_log {
    const char *path; /* --log, or NULL */
    int json;         /* --log-format json */
    int debug;        /* --debug */
};
extern struct rt_log RT_LOG;

void rt_log_error(const char *msg);
void rt_log_warn(struct rt_ctx *ctx, const char *msg); /* an rt_ctx's warn */
void rt_log_debug(const char *msg);

/* -- options -- */
enum kind { FLAG, VALUE, LIST }; /* LIST: a value option that may be given again (each kept) */
enum key { K_ROOT, K_LOG, K_LOG_FORMAT, K_DEBUG, K_SYSTEMD, K_CRIU, K_VERSION, K_HELP, K_ALL, K_FORCE, K_FORMAT,
           K_QUIET, K_BUNDLE, K_ROOTLESS, K_PID_FILE, K_CONSOLE_SOCKET, K_NO_PIVOT, K_NO_NEW_KEYRING, K_PRESERVE_FDS,
           K_NOTIFY_SOCKET, K_DETACH, K_KEEP, K_PROCESS, K_TTY, K_CWD, K_ENV, K_USER, K_GIDS, K_CAP, K_NO_NEW_PRIVS,
           K_LABEL, K_APPARMOR, K_IGNORE_PAUSED, K_CGROUP, K_NKEYS };

struct optdef {
    const char *name;
    enum kind kind;
    enum key key;
};

struct opts {
    int flag[K_NKEYS];
    const char *value[K_NKEYS];
    char **pos; /* positionals (pointers into argv) */
    int npos;
    char **lv;  /* LIST options' values in order (pointers into argv), */
    int *lk;    /* their keys */
    int nl;
};


#define RT_WANTS_HELP 1

/* The option called name[0..len) in defs, or NULL. */
const struct optdef *rt_find_opt(const struct optdef *defs, const char *name, size_t len);

/* Parse args[0..n) against defs (a table ended by a NULL name). stop_at_positional:
 * everything from the first positional on is positional. Returns 0,
 * RT_WANTS_HELP (a --help/-h not in defs), or -1 with the usage error in ctx.
 * o->pos, o->lv and o->lk are malloc'd (free them). */
int rt_parse_opts(struct rt_ctx *ctx, char **args, int n, const struct optdef *defs, int stop_at_positional,
                  struct opts *o);

/* A usage error unless there is one positional (the id), and at most `extra` more. */
int rt_one_id(struct rt_ctx *ctx, struct opts *o, const char *cmd, int extra);

/* -- output: the generator's text as Python's json.dumps writes it (indent NULL: on
 *    one line), a newline after it -- */
int rt_write_gen(yajl_gen g, int fd, const char *indent);
/* the same to stdout; -1 with ctx->err set */
int rt_print_gen(struct rt_ctx *ctx, yajl_gen g, const char *indent);

/* A signal name (TERM, SIGTERM, term, RTMIN+3) or number; -1 when not one. */
int rt_parse_signal(const char *text);

/* -- paths -- */
/* path made absolute and normalized (as os.path.abspath) into out; -1 with errno */
int rt_abspath(const char *path, char *out, size_t cap);
/* An ordinary user's state directory, made 0700 when missing and checked (as
 * pyrt/paths.py's check_private_dir); its real path into out. */
int rt_private_dir(struct rt_ctx *ctx, const char *path, char *out, size_t cap);
/* The state directory when --root is not given: /run/pyrt-runtime for root, else
 * (an ordinary user, or root of a user namespace with $XDG_RUNTIME_DIR set, as
 * runc and crun) $XDG_RUNTIME_DIR/pyrt-runtime or /tmp/pyrt-runtime-UID (private). */
int rt_default_root(struct rt_ctx *ctx, char *out, size_t cap);

#endif
