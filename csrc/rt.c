/* See rt.h. */
#include "rt.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "fdio.h"

static int vfail(struct rt_ctx *ctx, int code, const char *fmt, va_list ap)
{
    vsnprintf(ctx->err, sizeof ctx->err, fmt, ap);
    ctx->code = code;
    return -1;
}

int rt_fail(struct rt_ctx *ctx, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vfail(ctx, 1, fmt, ap);
    va_end(ap);
    return -1;
}

int rt_usage(struct rt_ctx *ctx, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vfail(ctx, 2, fmt, ap);
    va_end(ap);
    return -1;
}

void rt_warn(struct rt_ctx *ctx, const char *fmt, ...)
{
    char msg[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (ctx->warn != NULL)
        ctx->warn(ctx, msg);
}

double rt_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

void rt_sleep(double s)
{
    if (s <= 0)
        return;
    struct timespec ts = {.tv_sec = (time_t)s, .tv_nsec = (long)((s - (double)(time_t)s) * 1e9)};
    nanosleep(&ts, NULL);
}

int rt_in_user_namespace(void)
{
    char buf[4096];
    unsigned long inside, outside, count;
    char end;
    if (pyrt_read_small("/proc/self/uid_map", buf, sizeof buf) < 0)
        return 0; /* nothing says so */
    return !(sscanf(buf, " %lu %lu %lu %c", &inside, &outside, &count, &end) == 3 && inside == 0 &&
             outside == 0 && count == 4294967295UL);
}

int rt_ordinary_user(void)
{
    return geteuid() != 0 || rt_in_user_namespace();
}

unsigned rt_host_uid(void)
{
    unsigned long uid = geteuid(), inside, outside, count;
    char buf[4096];
    if (pyrt_read_small("/proc/self/uid_map", buf, sizeof buf) < 0)
        return (unsigned)uid;
    for (char *line = buf; line != NULL && *line; line = strchr(line, '\n') ? strchr(line, '\n') + 1 : NULL)
        if (sscanf(line, " %lu %lu %lu", &inside, &outside, &count) == 3 && uid >= inside &&
            uid - inside < count)
            return (unsigned)(outside + uid - inside);
    return (unsigned)uid;
}
