/* The pyrt-monitor executable (detached containers): see csrc/monitor.h. */
#include "monitor.h"

int main(int argc, char **argv)
{
    return pyrt_monitor_main(argc, argv);
}
