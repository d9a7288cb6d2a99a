/* See rt_resources.h. */
#include "rt_resources.h"

#include <stdlib.h>
#include <string.h>

int rt_resources_parse_ex(struct rt_ctx *ctx, yajl_val linux_obj, int dev_is_fs, struct rt_resources *out)
{
    (void)linux_obj;
    (void)dev_is_fs;
    memset(out, 0, sizeof *out);
    out->mem_swappiness = -1;
    return rt_fail(ctx, "linux.resources: not implemented yet");
}

int rt_resources_parse(struct rt_ctx *ctx, yajl_val linux_obj, struct rt_resources *out)
{
    return rt_resources_parse_ex(ctx, linux_obj, 1, out);
}

void rt_resources_free(struct rt_resources *r)
{
    (void)r;
}

int rt_resources_any(const struct rt_resources *r, int ignore_devices)
{
    (void)r;
    (void)ignore_devices;
    return 0;
}

size_t rt_resources_controllers(const struct rt_resources *r, int ignore_devices, const char *out[8])
{
    (void)r;
    (void)ignore_devices;
    out[0] = NULL;
    return 0;
}
