/* The build's version string, one definition for both binaries. */
#include "version.h"

const char *kiln_version(void)
{
    return KILN_VERSION_STRING;
}
