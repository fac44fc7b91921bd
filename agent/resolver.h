/* Host name resolution off the I/O threads: one resolver thread runs getaddrinfo
 * and keeps a cache with a TTL (failures cached briefly too). I/O threads only ever
 * call resolver_lookup, which never blocks: numeric addresses are answered at once,
 * cached names from the cache, others are queued and the caller's eventfd is written
 * when the answer is in. */
#ifndef KILN_RESOLVER_H
#define KILN_RESOLVER_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

typedef struct resolver resolver;

enum resolver_result {
    RESOLVER_FAILED = -1, /* name does not resolve; err says why */
    RESOLVER_PENDING = 0, /* queued; notify_fd will be written */
    RESOLVER_OK = 1,
};

resolver *resolver_create(int64_t ttl_ms, int64_t negative_ttl_ms);
void resolver_destroy(resolver *r);
/* *permanent is set on failure when the name does not exist (vs. a temporary error). */
int resolver_lookup(resolver *r, const char *host, int port, int notify_fd, int64_t now_ms,
                    struct sockaddr_storage *addr, socklen_t *addrlen, int *permanent, char *err,
                    size_t errlen);

#endif
