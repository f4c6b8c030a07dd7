// SPDX-License-Identifier: MIT OR Apache-2.0
/* sandbox_probe: reports what the guest can reach, one "key: value" line
 * each, for the sandbox tests. argv[1] = a TCP port on 127.0.0.1 to connect
 * to; argv[2] = a file to create (reports whether it was there before);
 * argv[3..] = more files to create ("write PATH: ok" or the error). */
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/utsname.h>
#include <unistd.h>

int main(int argc, char **argv)
{
    int port = argc > 1 ? atoi(argv[1]) : 1;
    const char *mark = argc > 2 ? argv[2] : "/tmp/guestview-probe-mark";

    char line[256] = "";
    FILE *f = fopen("/etc/shadow", "r");
    if (f) {
        if (!fgets(line, sizeof line, f))
            strcpy(line, "(empty)\n");
        fclose(f);
        printf("shadow: %s", line);
    } else {
        printf("shadow: error %s\n", strerror(errno));
    }

    printf("mark-before: %s\n", access(mark, F_OK) == 0 ? "yes" : "no");
    int fd = open(mark, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    printf("mark-create: %s\n", fd >= 0 ? "ok" : strerror(errno));
    if (fd >= 0)
        close(fd);

    int procs = 0;
    DIR *d = opendir("/proc");
    if (d) {
        struct dirent *e;
        while ((e = readdir(d)))
            if (e->d_name[0] >= '1' && e->d_name[0] <= '9')
                procs++;
        closedir(d);
    }
    printf("proc-pids: %d\n", procs);

    int s = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (s < 0)
        printf("connect: socket %s\n", strerror(errno));
    else if (connect(s, (struct sockaddr *)&a, sizeof a) == 0)
        printf("connect: ok\n");
    else
        printf("connect: %s\n", strerror(errno));

    struct utsname u;
    uname(&u);
    printf("hostname: %s\n", u.nodename);
    printf("pid: %d\n", (int)getpid());
    printf("uid: %d\n", (int)getuid());

    f = fopen("/proc/self/status", "r");
    while (f && fgets(line, sizeof line, f))
        if (!strncmp(line, "CapEff:", 7)) {
            char *v = line + 7;
            while (*v == ' ' || *v == '\t')
                v++;
            printf("capeff: %s", v);
        }
    if (f)
        fclose(f);

    /* test -x: the program is executable (its mount is noexec, guestview
     * answers as an executable mount would); /etc/passwd is not. */
    printf("x-ok self: %s\n", access(argv[0], X_OK) == 0 ? "ok" : strerror(errno));
    printf("x-ok passwd: %s\n", access("/etc/passwd", X_OK) == 0 ? "ok" : strerror(errno));
    printf("r-ok passwd: %s\n", access("/etc/passwd", R_OK) == 0 ? "ok" : strerror(errno));

    for (int i = 3; i < argc; i++) {
        int w = open(argv[i], O_WRONLY | O_CREAT | O_TRUNC, 0644);
        if (w >= 0 && write(w, "guest\n", 6) == 6 && close(w) == 0)
            printf("write %s: ok\n", argv[i]);
        else
            printf("write %s: %s\n", argv[i], strerror(errno));
    }
    return 0;
}
