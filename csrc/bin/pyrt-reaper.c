/* The pyrt-reaper executable (foreground runs): see csrc/reaper.h. */
#include "reaper.h"

int main(int argc, char **argv)
{
    return pyrt_reaper_main(argc, argv);
}
