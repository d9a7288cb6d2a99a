/* Attacks on the seccomp filter, run inside a container (tests/test_seccomp.py).
 * Each argument names a check; prints "name=0" when the call succeeded, else
 * "name=ERRNO" (the number). Built with gcc -static. */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/personality.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#ifndef SYS_io_uring_setup
#define SYS_io_uring_setup 425
#endif
#ifndef SYS_clone3
#define SYS_clone3 435
#endif

static void *thread_main(void *arg)
{
    return arg;
}

/* A syscall through the 32-bit entry (int $0x80: seccomp sees AUDIT_ARCH_I386),
 * the way a 32-bit program in the container makes them: -errno or the result. */
static long i386_syscall(long nr, long a, long b)
{
    long r;
    __asm__ volatile("int $0x80" : "=a"(r) : "a"(nr), "b"(a), "c"(b) : "memory");
    return r;
}

#define X32_BIT 0x40000000L

/* 0 or an errno */
static int check(const char *name)
{
    long r = -1;
    if (!strcmp(name, "io_uring_setup")) {
        unsigned char params[120]; /* struct io_uring_params */
        memset(params, 0, sizeof params);
        r = syscall(SYS_io_uring_setup, 1, params);
    } else if (!strcmp(name, "vsock")) {
        r = socket(40 /* AF_VSOCK */, SOCK_STREAM, 0);
    } else if (!strcmp(name, "vsock_high_bits")) { /* the kernel reads only the low 32 bits */
        r = syscall(SYS_socket, 0x100000028L, SOCK_STREAM, 0L);
    } else if (!strcmp(name, "unix_socket")) {
        r = socket(AF_UNIX, SOCK_STREAM, 0);
    } else if (!strcmp(name, "personality_no_aslr")) {
        r = personality(ADDR_NO_RANDOMIZE);
    } else if (!strcmp(name, "personality_query")) {
        r = personality(0xffffffff);
    } else if (!strcmp(name, "unshare_user")) {
        r = unshare(CLONE_NEWUSER);
    } else if (!strcmp(name, "clone_newuser")) {
        r = syscall(SYS_clone, CLONE_NEWUSER | SIGCHLD, 0L, 0L, 0L, 0L);
        if (r == 0)
            _exit(0);
        if (r > 0)
            waitpid((pid_t)r, NULL, 0);
    } else if (!strcmp(name, "clone3")) {
        unsigned long long args[11]; /* struct clone_args, exit_signal SIGCHLD */
        memset(args, 0, sizeof args);
        args[4] = SIGCHLD;
        r = syscall(SYS_clone3, args, sizeof args);
        if (r == 0)
            _exit(0);
        if (r > 0)
            waitpid((pid_t)r, NULL, 0);
    } else if (!strcmp(name, "syscall_1000")) { /* unallocated on every architecture */
        r = syscall(1000, 0L, 0L, 0L);
    } else if (!strncmp(name, "i386_", 5)) { /* getpid 20, io_uring_setup 425 */
        long nr = !strcmp(name + 5, "getpid") ? 20 : !strcmp(name + 5, "io_uring_setup") ? 425 : 1000;
        r = i386_syscall(nr, 1, 0);
        if (r < 0 && r > -4096) {
            errno = (int)-r;
            r = -1;
        }
    } else if (!strncmp(name, "x32_", 4)) { /* the x32 numbers: getpid 39, io_uring_setup 425 */
        long nr = !strcmp(name + 4, "getpid") ? 39 : !strcmp(name + 4, "io_uring_setup") ? 425 : 1000;
        r = syscall(X32_BIT | nr, 1L, 0L);
    } else if (!strcmp(name, "mount_tmpfs")) {
        r = mount("none", "/tmp", "tmpfs", 0, NULL);
    } else if (!strcmp(name, "fork")) {
        pid_t pid = fork();
        if (pid == 0)
            _exit(7);
        int status;
        r = pid < 0 ? -1 : (waitpid(pid, &status, 0) == pid && WEXITSTATUS(status) == 7 ? 0 : -1);
    } else if (!strcmp(name, "thread")) { /* glibc tries clone3 first, then clone */
        pthread_t t;
        int err = pthread_create(&t, NULL, thread_main, NULL);
        if (err)
            return err;
        r = pthread_join(t, NULL) ? -1 : 0;
    } else if (!strcmp(name, "files")) {
        char buf[64];
        r = getpid() > 0 && getcwd(buf, sizeof buf) && access("/", R_OK) == 0 ? 0 : -1;
    } else {
        return EINVAL;
    }
    return r < 0 ? errno : 0;
}

int main(int argc, char **argv)
{
    for (int i = 1; i < argc; i++)
        printf("%s=%d\n", argv[i], check(argv[i]));
    return 0;
}
