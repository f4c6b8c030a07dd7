/*
 * guest.c - guest program for patches/tests/run (built static for MIPS).
 *
 *   guest filtered        expects the filter plugin: getpid() == 4242 three
 *                         times, getppid() fails with EPERM
 *   guest plain PPID      expects no plugin: getpid() is a real, stable pid
 *                         (not 4242), getppid() == PPID (or any real ppid
 *                         if PPID is "any", e.g. under strace)
 *
 * Both modes also make ordinary syscalls (getuid, write) that must pass
 * through to the host unchanged.  Prints one result line and exits 0 on
 * success, 1 on failure.
 *
 * Copyright (C) 2026 guestview maintainers
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

int main(int argc, char **argv)
{
    long pid[3];
    long ppid, uid;
    int ppid_errno;
    int ok;

    if (argc < 2 || (strcmp(argv[1], "filtered") && strcmp(argv[1], "plain"))
        || (!strcmp(argv[1], "plain") && argc < 3)) {
        fprintf(stderr, "usage: %s filtered | plain PPID|any\n", argv[0]);
        return 2;
    }

    /* Raw syscalls: no libc caching in the way. */
    for (int i = 0; i < 3; i++) {
        pid[i] = syscall(SYS_getpid);
    }
    errno = 0;
    ppid = syscall(SYS_getppid);
    ppid_errno = errno;
    uid = syscall(SYS_getuid);

    printf("guest: getpid=%ld,%ld,%ld getppid=%ld errno=%d getuid=%ld\n",
           pid[0], pid[1], pid[2], ppid, ppid_errno, uid);

    if (!strcmp(argv[1], "filtered")) {
        ok = pid[0] == 4242 && pid[1] == 4242 && pid[2] == 4242 &&
             ppid == -1 && ppid_errno == EPERM && uid >= 0;
    } else {
        ok = pid[0] > 0 && pid[0] != 4242 &&
             pid[1] == pid[0] && pid[2] == pid[0] &&
             (!strcmp(argv[2], "any") ? ppid > 0 : ppid == atol(argv[2])) &&
             uid >= 0;
    }
    printf("guest: %s (%s)\n", ok ? "PASS" : "FAIL", argv[1]);
    return ok ? 0 : 1;
}
