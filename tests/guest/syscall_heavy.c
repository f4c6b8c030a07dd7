// SPDX-License-Identifier: MIT OR Apache-2.0
/* syscall_heavy: benchmark. argv[1] = N (default 200000) iterations of
 * getppid() + a 1-byte write() to /dev/null, i.e. 2N guest syscalls
 * (400,000 by default), issued with raw syscall() so libc caches nothing.
 * argv[2] = P (default 1): P processes (P-1 forked children) each run the
 * loop at once; the parent waits for them and fails if any failed. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

int main(int argc, char **argv)
{
    long n = argc > 1 ? strtol(argv[1], NULL, 10) : 200000;
    long procs = argc > 2 ? strtol(argv[2], NULL, 10) : 1;
    int fd = open("/dev/null", O_WRONLY);
    if (fd < 0 || n < 0 || procs < 1 || procs > 256) {
        printf("syscall_heavy: cannot open /dev/null or bad N or P\n");
        return 1;
    }
    int child = 0;
    for (long p = 1; p < procs; p++) {
        pid_t c = fork();
        if (c < 0) {
            printf("syscall_heavy: fork failed\n");
            return 1;
        }
        if (c == 0) {
            child = 1;
            break;
        }
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
    if (child || procs == 1)
        return 0;
    int status, failed = 0;
    while (wait(&status) > 0)
        if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
            failed++;
    if (failed) {
        printf("syscall_heavy: %d children failed\n", failed);
        return 1;
    }
    return 0;
}
