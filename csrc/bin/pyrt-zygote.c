/* The pyrt-zygote executable: parks containers for a pyrt.Pool (csrc/zygote.h).
 * Usage: pyrt-zygote FD [USERNS_FD] (the control socket; for an ordinary user,
 * the pool's user namespace, joined first: its containers are cloned in it). */
#include <stdlib.h>
#include <unistd.h>

#include "zygote.h"
#include "userns.h"

int main(int argc, char **argv)
{
    if (argc != 2 && argc != 3)
        return 2;
    if (argc == 3) {
        int fd = atoi(argv[2]);
        if (pyrt_userns_enter(fd) < 0)
            return 3;
        close(fd);
    }
    return pyrt_zygote_serve(atoi(argv[1]));
}
