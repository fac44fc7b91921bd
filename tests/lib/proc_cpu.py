"""CPU seconds of processes from /proc, for the benchmarks' CPU splits."""
import os

HZ = os.sysconf("SC_CLK_TCK")


def _stat(pid):
    with open("/proc/%d/stat" % pid) as f:
        return f.read().rsplit(")", 1)[1].split()


def cpu_of(pid):
    """utime + stime of one live process (0 once it is gone)."""
    try:
        fields = _stat(pid)
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / HZ


def children(ppid):
    """The live children of ppid."""
    out = []
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                if int(_stat(int(d))[1]) == ppid:
                    out.append(int(d))
            except OSError:
                pass
    return out


def tree_cpu(root):
    """CPU seconds of a process tree: every live member's own and its reaped children's
    (cutime, cstime), so short-lived workers the tree's parents waited for still count."""
    kids, used = {}, {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            fields = _stat(int(d))
        except OSError:
            continue
        used[int(d)] = sum(int(x) for x in fields[11:15]) / HZ
        kids.setdefault(int(fields[1]), []).append(int(d))
    total, pending = 0.0, [root]
    while pending:
        p = pending.pop()
        total += used.get(p, 0.0)
        pending.extend(kids.get(p, []))
    return total


def pidfile(path):
    with open(path) as f:
        return int(f.readline())
