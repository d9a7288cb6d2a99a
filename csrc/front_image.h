/* The image side of the native `pyrt run IMAGE` (csrc/front_container.h): an image
 * reference read as pyrt.oci.reference and pyrt.images.catalog read it, the image
 * config's fields a run uses read as pyrt.containers.create reads them, and JSON
 * written as Python's json.dumps writes it. Whatever this code does not read
 * exactly as Python (a key given twice, a value of another type, text outside
 * printable ASCII, nesting deeper than Python's parser goes) is "not mine" (-1):
 * the command line goes to Python. */
#ifndef PYRT_FRONT_IMAGE_H
#define PYRT_FRONT_IMAGE_H

#include <stddef.h>

#include "sbuf.h"

/* parse_reference(ref) for a `name[:tag]` without digest: the repository and tag
 * (default latest) into repo/tag; 0, or -1 (anything else: Python's). */
int pyrt_image_parse_ref(const char *ref, char *repo, size_t rcap, char *tag, size_t tcap);

/* equivalent_repositories(repo): up to 4 names into out[i] (each 300 bytes); their count. */
int pyrt_image_equivalents(const char *repo, char out[][300]);

struct pyrt_image_config {
    char **env, **cmd, **entrypoint; /* NULL-terminated; NULL when absent or null */
    size_t nenv, ncmd, nentrypoint;
    char **labels;                   /* key, value, key, value, ... in the config's order */
    size_t nlabels;                  /* (pairs x 2) */
    const char *working_dir, *user, *stop_signal, *os, *arch; /* NULL: absent or null */
    int working_dir_null, user_null; /* given as null (Python records None) */
};

/* The config JSON's fields a run uses; 0, or -1: not read here (see above), or an
 * image Python would refuse or warn about, or one with what this code does not
 * do (Volumes, a User). host_arch: Go's name of this machine. */
int pyrt_image_config(const char *text, const char *host_arch, struct pyrt_image_config *c);

/* Python's json.dumps(s) appended to b (ensure_ascii; s printable ASCII or
 * escapes); -1 out of memory. */
int pyrt_json_str(struct sbuf *b, const char *s);
int pyrt_json_raw(struct sbuf *b, const char *s);
/* repr(float) as json.dumps writes it. */
int pyrt_json_float(struct sbuf *b, double v);

/* Printable ASCII only (what this code writes as Python would). */
int pyrt_image_plain(const char *s);
/* ASCII (control characters too: json.dumps escapes them as this code does). */
int pyrt_image_ascii(const char *s);

#endif
