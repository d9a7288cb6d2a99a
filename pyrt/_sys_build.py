"""Generates the C source of pyrt._sys, the cffi (out-of-line, API mode) module
behind pyrt.sys. Run by CMake: python _sys_build.py OUTPUT.c"""
import os
import sys

import cffi

CSRC = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "csrc")

CDEF = """
int unshare(int flags);
int setns(int fd, int nstype);
int mount(const char *source, const char *target, const char *fstype,
          unsigned long flags, const void *data);
int umount2(const char *target, int flags);
int sethostname(const char *name, size_t len);

int pyrt_pivot_root(const char *new_root, const char *put_old);
int pyrt_pidfd_open(int pid, unsigned int flags);
int pyrt_pidfd_send_signal(int pidfd, int sig, void *info, unsigned int flags);
int pyrt_close_range(unsigned int first, unsigned int last, unsigned int flags);
"""

SOURCE = """
#include <sched.h>
#include <sys/mount.h>
#include <unistd.h>
#include "syscalls.h"
"""


def make_ffi():
    ffi = cffi.FFI()
    ffi.cdef(CDEF)
    ffi.set_source("pyrt._sys", SOURCE, include_dirs=[CSRC])
    return ffi


if __name__ == "__main__":
    make_ffi().emit_c_code(sys.argv[1])
