/* The pyrt-zygote executable: parks containers for a pyrt.Pool (csrc/pool.h).
 * Usage: pyrt-zygote FD (the control socket). */
#include <stdlib.h>

#include "pool.h"

int main(int argc, char **argv)
{
    if (argc != 2)
        return 2;
    return pyrt_zygote_serve(atoi(argv[1]));
}
