/* The pyrt-init executable (--init): see csrc/init.h. */
#include "init.h"

int main(int argc, char **argv)
{
    return pyrt_init_main(argc, argv);
}
