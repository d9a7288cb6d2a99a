/* The floor the perf/ benchmarks compare pyrt's container start with, run in the
 * same run as what it is compared with: N containers one after the other, each
 * cloned into new mount, pid, uts, ipc, net and cgroup namespaces, with a tmpfs
 * upper and a (volatile) overlay over LOWER mounted at ANCHOR, pivot_root into
 * it, exec /bin/true, waitpid. Prints the seconds the N took.
 *
 * What it leaves out that a pyrt container has: /proc, /sys and /dev (devpts,
 * shm, mqueue), the masked and read-only paths, the loopback interface up,
 * the capability bounding set, no_new_privs and the seccomp filter.
 *
 *   cc -O2 -o c-loop perf/c_loop.c && ./c-loop LOWER ANCHOR N */
#define _GNU_SOURCE
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static const char *lower, *anchor;

static int child(void)
{
    char upper[4096], work[4096], opts[8192];
    if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0) return 1;
    if (mount("tmpfs", anchor, "tmpfs", 0, "size=64m") < 0) return 2;
    snprintf(upper, sizeof upper, "%s/upper", anchor);
    snprintf(work, sizeof work, "%s/work", anchor);
    if (mkdir(upper, 0755) < 0 || mkdir(work, 0700) < 0) return 3;
    snprintf(opts, sizeof opts, "lowerdir=%s,upperdir=%s,workdir=%s,volatile", lower, upper, work);
    if (mount("overlay", anchor, "overlay", 0, opts) < 0) return 4;
    if (chdir(anchor) < 0) return 5;
    if (syscall(SYS_pivot_root, ".", ".") < 0) return 6;
    if (umount2(".", MNT_DETACH) < 0) return 7;
    if (chdir("/") < 0) return 8;
    char *argv[] = {"/bin/true", NULL}, *envp[] = {NULL};
    execve("/bin/true", argv, envp);
    return 9;
}

int main(int argc, char **argv)
{
    if (argc != 4) { fprintf(stderr, "usage: c-loop LOWER ANCHOR N\n"); return 2; }
    lower = argv[1];
    anchor = argv[2];
    long n = atol(argv[3]);
    int flags = CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWUTS | CLONE_NEWIPC | CLONE_NEWNET | CLONE_NEWCGROUP;
    struct timespec a, b;
    clock_gettime(CLOCK_MONOTONIC, &a);
    for (long i = 0; i < n; i++) {
        pid_t pid = (pid_t)syscall(SYS_clone, flags | SIGCHLD, NULL, NULL, NULL, 0);
        if (pid < 0) { perror("clone"); return 1; }
        if (pid == 0) _exit(child());
        int st;
        if (waitpid(pid, &st, 0) < 0 || st != 0) { fprintf(stderr, "child status %d\n", st); return 1; }
    }
    clock_gettime(CLOCK_MONOTONIC, &b);
    printf("%.9f\n", (double)(b.tv_sec - a.tv_sec) + (double)(b.tv_nsec - a.tv_nsec) / 1e9);
    return 0;
}
