/* kiln's version (from CMake's project version). */
#ifndef KILN_VERSION_H
#define KILN_VERSION_H

#ifndef KILN_VERSION_STRING
#define KILN_VERSION_STRING "0.1.0"
#endif

const char *kiln_version(void);

#endif
