/* pyrt-init: the tiny init that --init makes the container's pid 1. */
#ifndef PYRT_INIT_H
#define PYRT_INIT_H

/* argv: {"pyrt-init", "<pid of the program>"}, started by the spawn core with every
 * signal blocked. Forwards each signal it receives (but SIGCHLD) to the program,
 * reaps every child (orphans are re-parented to it), and exits with the program's
 * status: its exit code, or 128+N when signal N killed it. */
int pyrt_init_main(int argc, char **argv);

#endif
