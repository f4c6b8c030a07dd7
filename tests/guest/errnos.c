// SPDX-License-Identifier: MIT OR Apache-2.0
/* errnos: provoke 27 distinct errnos from syscalls and check the guest sees
 * each one (with the errno numbering of the architecture it was compiled
 * for: on MIPS ENOTSOCK is 95, ELOOP 90, ENOTEMPTY 93, ECONNREFUSED 146 ...).
 * Works in a fresh directory under argv[1] (default /tmp). Runs as root too
 * (EPERM from link() on a directory, EACCES from access(X_OK) on 0644).
 * `errnos DIR -v` prints "NAME number" for every check. Prints a line per
 * mismatch and exits 1 on any. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <termios.h>
#include <unistd.h>

static int fails, verbose;

static void expect(const char *what, long ret, int want, const char *wname)
{
    int got = errno;
    if (ret != -1 || got != want) {
        printf("errnos: %s: ret %ld errno %d (%s), want %s (%d)\n", what, ret, got,
               strerror(got), wname, want);
        fails++;
    } else if (verbose) {
        printf("%s %d\n", wname, want);
    }
}
/* errno is cleared first so a stale value can never pass */
#define EXPECT(call, e) (errno = 0, expect(#call, (long)(call), e, #e))
#define P(name) (snprintf(path, sizeof path, "%s/%s", dir, name), path)

int main(int argc, char **argv)
{
    char dir[512], path[1024], buf[64], longname[400];
    struct stat st;
    int pfd[2];
    snprintf(dir, sizeof dir, "%s/gv-errnos-XXXXXX", argc > 1 ? argv[1] : "/tmp");
    verbose = argc > 2 && strcmp(argv[2], "-v") == 0;
    if (!mkdtemp(dir)) {
        printf("errnos: mkdtemp %s failed (errno %d)\n", dir, errno);
        return 1;
    }
    signal(SIGPIPE, SIG_IGN);

    int f = open(P("file"), O_RDWR | O_CREAT, 0644);
    write(f, "\0\0\0\0garbage", 11);
    mkdir(P("sub"), 0755);
    close(open(P("sub/inner"), O_WRONLY | O_CREAT, 0644));
    symlink("loop", P("loop"));

    EXPECT(open(P("missing"), O_RDONLY), ENOENT);
    EXPECT(read(9999, buf, 1), EBADF);
    EXPECT(open(P("file"), O_RDWR | O_CREAT | O_EXCL, 0644), EEXIST);
    EXPECT(open(P("file/x"), O_RDONLY), ENOTDIR);
    EXPECT(open(P("sub"), O_WRONLY), EISDIR);
    EXPECT(lseek(f, 0, 12345), EINVAL);
    EXPECT(stat((const char *)8, &st), EFAULT);
    memset(longname, 'n', sizeof longname - 1);
    longname[sizeof longname - 1] = 0;
    EXPECT(open(P(longname), O_RDONLY), ENAMETOOLONG);
    EXPECT(open(P("loop"), O_RDONLY), ELOOP);
    EXPECT(rmdir(P("sub")), ENOTEMPTY);
    pipe(pfd);
    EXPECT(lseek(pfd[0], 0, SEEK_SET), ESPIPE);
    EXPECT(waitpid(-1, NULL, WNOHANG), ECHILD);
    EXPECT(kill(999999999, 0), ESRCH);
    char sub[1024];
    snprintf(sub, sizeof sub, "%s/sub", dir);
    EXPECT(link(sub, P("sublink")), EPERM);
    EXPECT(access(P("file"), X_OK), EACCES);
    fcntl(pfd[0], F_SETFL, O_NONBLOCK);
    EXPECT(read(pfd[0], buf, 1), EAGAIN);
    struct sockaddr_un sun;
    socklen_t sl = sizeof sun;
    EXPECT(getsockname(f, (struct sockaddr *)&sun, &sl), ENOTSOCK);
    EXPECT(socket(12345, SOCK_STREAM, 0), EAFNOSUPPORT);
    close(pfd[0]);
    EXPECT(write(pfd[1], "x", 1), EPIPE);
    close(pfd[1]);
    EXPECT((long)getcwd(buf, 1) == 0 ? -1 : 0, ERANGE);
    struct termios tio;
    EXPECT(tcgetattr(f, &tio), ENOTTY);

    int s = socket(AF_UNIX, SOCK_STREAM, 0);
    int one = 1;
    EXPECT(setsockopt(s, SOL_SOCKET, 0x7fff, &one, sizeof one), ENOPROTOOPT);
    EXPECT(getpeername(s, (struct sockaddr *)&sun, &sl), ENOTCONN);
    memset(&sun, 0, sizeof sun);
    sun.sun_family = AF_UNIX;
    if (chdir(dir) == 0) /* relative name: sun_path holds only 108 bytes */
        strcpy(sun.sun_path, "file");
    EXPECT(connect(s, (struct sockaddr *)&sun, sizeof sun), ECONNREFUSED);
    close(s);

    close(f); /* open for writing, execve would give ETXTBSY */
    f = open(P("file"), O_RDONLY);
    chmod(P("file"), 0755);
    char *args[] = {path, NULL}, *env[] = {NULL};
    EXPECT(execve(P("file"), args, env), ENOEXEC);

    if (sizeof(void *) == 4) /* 3.75 GiB cannot fit a 32-bit address space */
        EXPECT(mmap(NULL, 0xF0000000u, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0)
                       == MAP_FAILED ? -1 : 0,
               ENOMEM);

    /* EMFILE: lower the soft limit only, fill the table, then restore. */
    struct rlimit rl, low;
    getrlimit(RLIMIT_NOFILE, &rl);
    low = rl;
    low.rlim_cur = 32;
    setrlimit(RLIMIT_NOFILE, &low);
    int last = 0, fds[40], n = 0;
    errno = 0;
    while (n < 40 && (last = dup(f)) >= 0)
        fds[n++] = last;
    expect("dup(f) until the table is full", last, EMFILE, "EMFILE");
    while (n > 0)
        close(fds[--n]);
    setrlimit(RLIMIT_NOFILE, &rl);

    close(f);
    unlink(P("file"));
    unlink(P("loop"));
    unlink(P("sub/inner"));
    rmdir(P("sub"));
    rmdir(dir);
    return fails ? 1 : 0;
}
