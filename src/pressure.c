/* pressure.c - the automatic limit (half of physical memory until the
 * cgroup/PSI work, issue 6, lands). */
#include "internal.h"

#include <unistd.h>

size_t rcl_auto_limit(void)
{
    long pages = sysconf(_SC_PHYS_PAGES), psize = sysconf(_SC_PAGESIZE);
    if (pages <= 0 || psize <= 0)
        return (size_t)1 << 30;
    return (size_t)pages * (size_t)psize / 2;
}

int  rcl__pressure_start(const struct rcl_config *cfg) { (void)cfg; return 0; }
void rcl__pressure_stop(void) { }
