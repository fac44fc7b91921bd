/* Host name resolution off the I/O threads: one resolver thread runs getaddrinfo
 * and keeps a cache with a TTL (failures cached briefly too). A name gives up to
 * RESOLVER_MAX_ADDRS addresses, families interleaved (RFC 8305 §4), so a caller can
 * move on to the next when one does not answer. I/O threads only ever
 * call resolver_lookup, which never blocks: numeric addresses are answered at once,
 * cached names from the cache, others are queued and the caller's eventfd is written
 * when the answer is in. */
#ifndef KILN_RESOLVER_H
#define KILN_RESOLVER_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

typedef struct resolver resolver;

#define RESOLVER_MAX_ADDRS 8

typedef struct resolver_addrs {
    int n;
    socklen_t len[RESOLVER_MAX_ADDRS];
    struct sockaddr_storage addr[RESOLVER_MAX_ADDRS];
} resolver_addrs;

enum resolver_result {
    RESOLVER_FAILED = -1, /* name does not resolve; err says why */
    RESOLVER_PENDING = 0, /* queued; notify_fd will be written */
    RESOLVER_OK = 1,
};

resolver *resolver_create(int64_t ttl_ms, int64_t negative_ttl_ms);
void resolver_destroy(resolver *r);
/* *permanent is set on failure when the name does not exist (vs. a temporary error). */
int resolver_lookup(resolver *r, const char *host, int port, int notify_fd, int64_t now_ms,
                    resolver_addrs *out, int *permanent, char *err, size_t errlen);
/* "192.0.2.1" or "2001:db8::1" (no port), for messages. */
void resolver_addr_text(const struct sockaddr_storage *a, char *out, size_t outlen);

#endif
