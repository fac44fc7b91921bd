"""Runs a program under a container seccomp profile, the way runc applies it, without a
container engine: the profile's JSON (Docker/containerd format: defaultAction,
defaultErrnoRet, archMap, syscalls with names/action/args/errnoRet) is compiled with
libseccomp (python3-seccomp) for this machine's architecture, loaded with no_new_privs,
and the program exec'd under it.

  seccomp_exec.py PROFILE --check
      checks the profile: default deny, io_uring allowed, nothing a container must not
      do allowed, every name known to libseccomp here (a typo would be skipped silently
      by runc, leaving the syscall blocked)
  seccomp_exec.py PROFILE [--without NAME,NAME...] -- PROGRAM [ARGS...]
      execs PROGRAM under the profile, less the named syscalls"""
import errno
import json
import os
import sys

import seccomp

# Never in an allow list: what the runtime default keeps from an unprivileged container.
FORBIDDEN = {
    "ptrace", "mount", "umount2", "unshare", "setns", "bpf", "perf_event_open", "keyctl",
    "add_key", "request_key", "userfaultfd", "kexec_load", "kexec_file_load", "init_module",
    "finit_module", "delete_module", "pivot_root", "chroot", "setuid", "setgid", "setreuid",
    "setregid", "setresuid", "setresgid", "setgroups", "personality", "process_vm_readv",
    "process_vm_writev", "open_by_handle_at", "name_to_handle_at", "reboot", "swapon",
    "swapoff", "acct", "settimeofday", "clock_settime", "adjtimex", "quotactl", "syslog",
    "iopl", "ioperm", "lookup_dcookie", "move_pages", "mbind", "set_mempolicy", "fanotify_init",
    "pidfd_getfd", "fsopen", "fsmount", "move_mount", "open_tree", "mount_setattr",
}
IO_URING = {"io_uring_setup", "io_uring_enter", "io_uring_register"}
OPS = {
    "SCMP_CMP_NE": seccomp.NE, "SCMP_CMP_LT": seccomp.LT, "SCMP_CMP_LE": seccomp.LE,
    "SCMP_CMP_EQ": seccomp.EQ, "SCMP_CMP_GE": seccomp.GE, "SCMP_CMP_GT": seccomp.GT,
    "SCMP_CMP_MASKED_EQ": seccomp.MASKED_EQ,
}
ARCHES = {
    "SCMP_ARCH_X86_64": seccomp.Arch.X86_64, "SCMP_ARCH_X86": seccomp.Arch.X86,
    "SCMP_ARCH_X32": seccomp.Arch.X32, "SCMP_ARCH_AARCH64": seccomp.Arch.AARCH64,
    "SCMP_ARCH_ARM": seccomp.Arch.ARM,
}


def die(msg):
    print("seccomp_exec: " + msg, file=sys.stderr)
    sys.exit(2)


def action(name, errno_ret):
    if name == "SCMP_ACT_ALLOW":
        return seccomp.ALLOW
    if name == "SCMP_ACT_ERRNO":
        return seccomp.ERRNO(errno_ret)
    if name in ("SCMP_ACT_KILL", "SCMP_ACT_KILL_THREAD"):
        return seccomp.KILL
    if name == "SCMP_ACT_KILL_PROCESS":
        return seccomp.KILL_PROCESS
    if name == "SCMP_ACT_LOG":
        return seccomp.LOG
    die("unsupported action %s" % name)


def native_arch_entry(profile):
    native = seccomp.system_arch() & 0xFFFFFFFF
    for entry in profile.get("archMap", []):
        arch = ARCHES.get(entry["architecture"])
        if arch is not None and arch & 0xFFFFFFFF == native:
            return entry
    die("the profile's archMap does not cover this machine's architecture")


def check(profile):
    problems = []
    if profile.get("defaultAction") != "SCMP_ACT_ERRNO":
        problems.append("defaultAction is %r, not SCMP_ACT_ERRNO" % profile.get("defaultAction"))
    native_arch_entry(profile)
    allowed, seen = set(), []
    for rule in profile["syscalls"]:
        for key in ("includes", "excludes"):
            if rule.get(key):
                problems.append("%s: %s conditions are not used by this profile" % (rule["names"], key))
        seen += rule["names"]
        if rule["action"] == "SCMP_ACT_ALLOW":
            allowed.update(rule["names"])
    dups = sorted({n for n in seen if seen.count(n) > 1})
    if dups:
        problems.append("listed twice: " + ", ".join(dups))
    unknown = sorted(n for n in seen if seccomp.resolve_syscall(seccomp.Arch.NATIVE, n) == -1)
    if unknown:
        problems.append("unknown to libseccomp (typo?): " + ", ".join(unknown))
    if not IO_URING <= allowed:
        problems.append("io_uring not allowed: " + ", ".join(sorted(IO_URING - allowed)))
    bad = sorted(allowed & FORBIDDEN)
    if bad:
        problems.append("allows what a container must not do: " + ", ".join(bad))
    for p in problems:
        print("FAIL: " + p, file=sys.stderr)
    if problems:
        sys.exit(1)
    print("ok - profile: default %s (errno %d), %d syscalls allowed, io_uring among them"
          % (profile["defaultAction"], profile.get("defaultErrnoRet", errno.EPERM), len(allowed)))


def load(profile, without):
    default_errno = profile.get("defaultErrnoRet", errno.EPERM)
    f = seccomp.SyscallFilter(action(profile["defaultAction"], default_errno))
    for sub in native_arch_entry(profile).get("subArchitectures") or []:
        f.add_arch(ARCHES[sub])
    for rule in profile["syscalls"]:
        act = action(rule["action"], rule.get("errnoRet", default_errno))
        args = [seccomp.Arg(a["index"], OPS[a["op"]], a["value"], a.get("valueTwo", 0))
                for a in rule.get("args", [])]
        for name in rule["names"]:
            if name in without:
                continue
            # Like runc: a name this architecture lacks is skipped.
            if seccomp.resolve_syscall(seccomp.Arch.NATIVE, name) < 0:
                continue
            f.add_rule(act, name, *args)
    f.load()


def main():
    if len(sys.argv) < 3:
        die(__doc__)
    profile = json.load(open(sys.argv[1]))
    if sys.argv[2] == "--check":
        check(profile)
        return
    rest, without = sys.argv[2:], set()
    if rest[0] == "--without":
        without = set(rest[1].split(","))
        rest = rest[2:]
    if not rest or rest[0] != "--" or len(rest) < 2:
        die(__doc__)
    load(profile, without)
    os.execv(rest[1], rest[1:])


main()
