// SPDX-License-Identifier: MIT OR Apache-2.0
/* syscall_heavy: benchmark. argv[1] = N (default 200000) iterations of
 * getppid() + a 1-byte write() to /dev/null, i.e. 2N guest syscalls
 * (400,000 by default), issued with raw syscall() so libc caches nothing. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <unistd.h>

int main(int argc, char **argv)
{
    long n = argc > 1 ? strtol(argv[1], NULL, 10) : 200000;
    int fd = open("/dev/null", O_WRONLY);
    if (fd < 0 || n < 0) {
        printf("syscall_heavy: cannot open /dev/null or bad N\n");
        return 1;
    }
    long ppid = syscall(__NR_getppid), bad = 0;
    for (long i = 0; i < n; i++) {
        if (syscall(__NR_getppid) != ppid)
            bad++;
        if (syscall(__NR_write, fd, "x", 1) != 1)
            bad++;
    }
    close(fd);
    if (bad) {
        printf("syscall_heavy: %ld bad results\n", bad);
        return 1;
    }
    return 0;
}
