/* The control-plane protocol's vocabulary (see wire.h). */
#include "wire.h"

#include <string.h>

const char *const wire_status_names[WIRE_STATUS_COUNT + 1] = {[WIRE_SENT] = "sent",
                                                              [WIRE_DEFERRED] = "deferred",
                                                              [WIRE_FAILED] = "failed",
                                                              [WIRE_AUTH] = "auth",
                                                              [WIRE_TLS] = "tls",
                                                              [WIRE_UNKNOWN] = "unknown",
                                                              [WIRE_EXPIRED] = "expired",
                                                              [WIRE_CANCELLED] = "cancelled",
                                                              NULL};

int wire_status_parse(const char *s, size_t n)
{
    for (int i = 0; i < WIRE_STATUS_COUNT; i++)
        if (strlen(wire_status_names[i]) == n && !memcmp(s, wire_status_names[i], n))
            return i;
    return -1;
}
