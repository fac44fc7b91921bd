/* The ring of an I/O thread (see ring.h): setup with the fast flags where the kernel
 * has them, the start-up probe that names what is missing, and the eventfd wake. */
#include "ring.h"

#include <stdio.h>
#include <unistd.h>

int net_ring_probe(char *err, size_t errlen)
{
    struct io_uring ring;
    int rc = io_uring_queue_init(2, &ring, 0);
    if (rc < 0) {
        snprintf(err, errlen,
                 "io_uring is not available (io_uring_setup: %s); a container's default "
                 "seccomp profile blocks it (use deploy/seccomp/kiln-agent.json), and so does "
                 "the kernel.io_uring_disabled sysctl",
                 strerror(-rc));
        return -1;
    }
    struct io_uring_probe *probe = io_uring_get_probe_ring(&ring);
    io_uring_queue_exit(&ring);
    if (!probe) {
        snprintf(err, errlen,
                 "io_uring is too old to list its operations (kernel 5.7 or later "
                 "needed)");
        return -1;
    }
    static const struct {
        int op;
        const char *name;
    } need[] = {{IORING_OP_CONNECT, "IORING_OP_CONNECT"},
                {IORING_OP_RECV, "IORING_OP_RECV"},
                {IORING_OP_SEND, "IORING_OP_SEND"},
                {IORING_OP_LINK_TIMEOUT, "IORING_OP_LINK_TIMEOUT"},
                {IORING_OP_ASYNC_CANCEL, "IORING_OP_ASYNC_CANCEL"},
                {IORING_OP_READ, "IORING_OP_READ"},
                {IORING_OP_CLOSE, "IORING_OP_CLOSE"}};
    for (size_t i = 0; i < sizeof need / sizeof need[0]; i++) {
        if (!io_uring_opcode_supported(probe, need[i].op)) {
            snprintf(err, errlen, "io_uring lacks %s (kernel 5.7 or later needed)", need[i].name);
            io_uring_free_probe(probe);
            return -1;
        }
    }
    io_uring_free_probe(probe);
    return 0;
}

/* Creates the ring on the thread that uses it (SINGLE_ISSUER / DEFER_TASKRUN tie a
 * ring to its submitter). Falls back to a plain ring on older kernels. */
int net_ring_setup(struct io_uring *ring, unsigned entries, bool *fast, char *err, size_t errlen)
{
    struct io_uring_params p;
    memset(&p, 0, sizeof p);
    p.flags = IORING_SETUP_CQSIZE | IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN;
    p.cq_entries = entries * 4;
    int rc = io_uring_queue_init_params(entries, ring, &p);
    *fast = rc == 0;
    if (rc == -EINVAL) {
        memset(&p, 0, sizeof p);
        p.flags = IORING_SETUP_CQSIZE;
        p.cq_entries = entries * 4;
        rc = io_uring_queue_init_params(entries, ring, &p);
    }
    if (rc < 0) {
        snprintf(err, errlen, "io_uring_queue_init: %s%s", strerror(-rc),
                 rc == -EPERM    ? " (io_uring disabled by sysctl kernel.io_uring_disabled?)"
                 : rc == -ENOSYS ? " (kernel without io_uring)"
                                 : "");
        return -1;
    }
    if (!(p.features & IORING_FEAT_NODROP) || !(p.features & IORING_FEAT_FAST_POLL)) {
        snprintf(err, errlen, "io_uring lacks %s (kernel 5.7 or later needed)",
                 !(p.features & IORING_FEAT_NODROP) ? "IORING_FEAT_NODROP"
                                                    : "IORING_FEAT_FAST_POLL");
        io_uring_queue_exit(ring);
        return -1;
    }
    return 0;
}

void net_wake(int efd)
{
    uint64_t one = 1;
    if (write(efd, &one, sizeof one) < 0)
        log_warn("eventfd write: %s", strerror(errno));
}
