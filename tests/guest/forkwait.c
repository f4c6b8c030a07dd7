// SPDX-License-Identifier: MIT OR Apache-2.0
/* forkwait: 3 children with distinct exit codes (11, 22, 33), each doing a
 * few distinctive syscalls, plus a 4th child killed by SIGTERM; the parent
 * waitpid()s each in order and checks the statuses. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static void child(int n, pid_t parent)
{
    char msg[32];
    int fd = open("/dev/null", O_WRONLY);
    int len = snprintf(msg, sizeof msg, "child %d\n", n);
    if (fd < 0 || write(fd, msg, (size_t)len) != len)
        _exit(100);
    close(fd);
    if (getppid() != parent)
        _exit(101);
    _exit(11 * n); /* 11, 22, 33 */
}

int main(void)
{
    pid_t me = getpid(), kids[4];
    int fails = 0, status;

    for (int i = 0; i < 3; i++) {
        kids[i] = fork();
        if (kids[i] < 0) {
            printf("forkwait: FAIL fork (errno %d)\n", errno);
            return 1;
        }
        if (kids[i] == 0)
            child(i + 1, me);
    }
    kids[3] = fork();
    if (kids[3] < 0) {
        printf("forkwait: FAIL fork (errno %d)\n", errno);
        return 1;
    }
    if (kids[3] == 0) {
        raise(SIGTERM);
        _exit(99); /* not reached */
    }

    for (int i = 0; i < 3; i++) {
        pid_t w = waitpid(kids[i], &status, 0);
        if (w != kids[i] || !WIFEXITED(status) || WEXITSTATUS(status) != 11 * (i + 1)) {
            printf("forkwait: FAIL child %d: waitpid=%d status=0x%x\n", i + 1,
                   (int)w, status);
            fails++;
        }
    }
    pid_t w = waitpid(kids[3], &status, 0);
    if (w != kids[3] || !WIFSIGNALED(status) || WTERMSIG(status) != SIGTERM) {
        printf("forkwait: FAIL signalled child: waitpid=%d status=0x%x\n", (int)w,
               status);
        fails++;
    }
    /* no children left: ECHILD */
    errno = 0;
    if (waitpid(-1, &status, WNOHANG) != -1 || errno != ECHILD) {
        printf("forkwait: FAIL expected ECHILD, errno %d\n", errno);
        fails++;
    }
    return fails ? 1 : 0;
}
