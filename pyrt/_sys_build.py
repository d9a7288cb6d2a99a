"""Generates the C source of pyrt._sys, the cffi (out-of-line, API mode) module
behind pyrt.sys. Run by CMake: python _sys_build.py OUTPUT.c

The constants are declared with ``#define NAME ...``: cffi takes their values from
the C headers when the module is compiled (csrc/syscalls.h and SOURCE below hold
fallbacks for the ones an older libc lacks)."""
import os
import re
import sys

import cffi

CSRC = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "csrc")

CONSTANTS = """
CLONE_NEWNS CLONE_NEWUTS CLONE_NEWIPC CLONE_NEWUSER CLONE_NEWPID CLONE_NEWNET
CLONE_NEWCGROUP CLONE_NEWTIME CLONE_FILES CLONE_FS CLONE_SYSVSEM
CLONE_PIDFD CLONE_INTO_CGROUP CLONE_CLEAR_SIGHAND

MS_RDONLY MS_NOSUID MS_NODEV MS_NOEXEC MS_SYNCHRONOUS MS_REMOUNT MS_MANDLOCK
MS_DIRSYNC MS_NOSYMFOLLOW MS_NOATIME MS_NODIRATIME MS_BIND MS_MOVE MS_REC MS_SILENT
MS_POSIXACL MS_UNBINDABLE MS_PRIVATE MS_SLAVE MS_SHARED MS_RELATIME MS_KERNMOUNT
MS_I_VERSION MS_STRICTATIME MS_LAZYTIME

MNT_FORCE MNT_DETACH MNT_EXPIRE UMOUNT_NOFOLLOW

RESOLVE_NO_XDEV RESOLVE_NO_MAGICLINKS RESOLVE_NO_SYMLINKS RESOLVE_BENEATH
RESOLVE_IN_ROOT RESOLVE_CACHED

FSOPEN_CLOEXEC
FSPICK_CLOEXEC FSPICK_SYMLINK_NOFOLLOW FSPICK_NO_AUTOMOUNT FSPICK_EMPTY_PATH
FSCONFIG_SET_FLAG FSCONFIG_SET_STRING FSCONFIG_SET_BINARY FSCONFIG_SET_PATH
FSCONFIG_SET_PATH_EMPTY FSCONFIG_SET_FD FSCONFIG_CMD_CREATE FSCONFIG_CMD_RECONFIGURE
FSMOUNT_CLOEXEC
MOUNT_ATTR_RDONLY MOUNT_ATTR_NOSUID MOUNT_ATTR_NODEV MOUNT_ATTR_NOEXEC
MOUNT_ATTR__ATIME MOUNT_ATTR_RELATIME MOUNT_ATTR_NOATIME MOUNT_ATTR_STRICTATIME
MOUNT_ATTR_NODIRATIME MOUNT_ATTR_IDMAP MOUNT_ATTR_NOSYMFOLLOW
MOVE_MOUNT_F_SYMLINKS MOVE_MOUNT_F_AUTOMOUNTS MOVE_MOUNT_F_EMPTY_PATH
MOVE_MOUNT_T_SYMLINKS MOVE_MOUNT_T_AUTOMOUNTS MOVE_MOUNT_T_EMPTY_PATH
MOVE_MOUNT_SET_GROUP MOVE_MOUNT_BENEATH
OPEN_TREE_CLONE OPEN_TREE_CLOEXEC

AT_FDCWD AT_EMPTY_PATH AT_RECURSIVE AT_SYMLINK_NOFOLLOW AT_NO_AUTOMOUNT
CLOSE_RANGE_UNSHARE CLOSE_RANGE_CLOEXEC
PIDFD_NONBLOCK
PR_SET_PDEATHSIG
""".split()



def header_cdef(path=os.path.join(CSRC, "syscalls.h")):
    """The declarations of csrc/syscalls.h (its structs and pyrt_* prototypes) as cffi
    reads them: comments and preprocessor lines dropped (the #define fallbacks reach
    the module through SOURCE's #include instead)."""
    with open(path) as f:
        text = f.read()
    text = re.sub(r"/\*.*?\*/", "", text, flags=re.S)
    text = re.sub(r"//[^\n]*", "", text)
    text = re.sub(r"^[ \t]*#(?:[^\n]*\\\n)*[^\n]*", "", text, flags=re.M)
    return "\n".join(line for line in text.splitlines() if line.strip()) + "\n"


# The libc calls pyrt.sys wraps, then csrc/syscalls.h's own, then the constants.
CDEF = """
typedef int... pid_t;

int unshare(int flags);
int setns(int fd, int nstype);
int mount(const char *source, const char *target, const char *fstype,
          unsigned long flags, const void *data);
int umount2(const char *target, int flags);
int sethostname(const char *name, size_t len);
int prctl(int option, ...);
""" + header_cdef() + "".join(f"#define {name} ...\n" for name in CONSTANTS)


SOURCE = """
#include <fcntl.h>
#include <sched.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <unistd.h>
#if defined(__has_include)
#if __has_include(<sys/pidfd.h>)
#include <sys/pidfd.h>
#endif
#endif
#include "syscalls.h"

/* Newer than some libc headers, and not in syscalls.h. */
#ifndef MS_NOSYMFOLLOW
#define MS_NOSYMFOLLOW 256
#endif
#ifndef MOUNT_ATTR_NOSYMFOLLOW
#define MOUNT_ATTR_NOSYMFOLLOW 0x00200000
#endif
#ifndef MOVE_MOUNT_SET_GROUP
#define MOVE_MOUNT_SET_GROUP 0x00000100
#endif
#ifndef MOVE_MOUNT_BENEATH
#define MOVE_MOUNT_BENEATH 0x00000200
#endif
#ifndef PIDFD_NONBLOCK
#define PIDFD_NONBLOCK O_NONBLOCK
#endif
"""


def make_ffi():
    ffi = cffi.FFI()
    ffi.cdef(CDEF)
    ffi.set_source("pyrt._sys", SOURCE, include_dirs=[CSRC])
    return ffi


if __name__ == "__main__":
    make_ffi().emit_c_code(sys.argv[1])
