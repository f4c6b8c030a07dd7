/* SPDX-License-Identifier: MIT OR Apache-2.0 */
/* The attack suite of issue 5: what an untrusted guest tries, one attack
 * per run, argv[1] names it. Each prints what it got, one line per
 * result, so a test can tell what the guest saw:
 *   shadow            open("/etc/shadow") and read it
 *   shell             execve("/bin/sh", ...)
 *   setuid            setuid(0)
 *   forkbomb N        fork N children (each sleeps a second), as fast as it can
 *   connflood PORT N  N connects to 127.0.0.1:PORT
 *   connect IP PORT   one connect
 *   race ALLOWED N    a second thread flips the path buffer between ALLOWED
 *                     and /etc/shadow while this one opens it N times;
 *                     reports every read whose content is not ALLOWED's
 *   ring              (64-bit guests) find the plugin's ring among QEMU's
 *                     mappings (/proc/thread-self/maps is not emulated) and
 *                     write garbage over it through /proc/thread-self/mem
 * Bounded on purpose: the fork bomb and the flood stop by themselves. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

static int shadow(void)
{
    int fd = open("/etc/shadow", O_RDONLY);
    if (fd < 0) {
        printf("shadow: %s\n", strerror(errno));
        return 0;
    }
    char buf[64];
    ssize_t n = read(fd, buf, sizeof buf);
    printf("shadow: READ %zd bytes\n", n);
    return 0;
}

static int shell(void)
{
    char *argv[] = {"sh", "-c", "echo SHELL RAN", NULL};
    execve("/bin/sh", argv, NULL);
    printf("shell: %s\n", strerror(errno));
    return 0;
}

static int do_setuid(void)
{
    int r = setuid(0);
    printf("setuid: %s\n", r == 0 ? "ok" : strerror(errno));
    return 0;
}

static int forkbomb(int n)
{
    int ok = 0, failed = 0;
    for (int i = 0; i < n; i++) {
        pid_t p = fork();
        if (p == 0) {
            sleep(1);
            _exit(0);
        }
        if (p < 0)
            failed++;
        else
            ok++;
    }
    int killed = 0;
    int st;
    while (wait(&st) > 0)
        if (WIFSIGNALED(st))
            killed++;
    printf("forkbomb: %d forked, %d failed, %d killed\n", ok, failed, killed);
    return 0;
}

static int connflood(int port, int n)
{
    int ok = 0, failed = 0;
    for (int i = 0; i < n; i++) {
        int s = socket(AF_INET, SOCK_STREAM, 0);
        struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port)};
        a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        if (connect(s, (struct sockaddr *)&a, sizeof a) == 0)
            ok++;
        else
            failed++;
        close(s);
    }
    printf("connflood: %d connected, %d failed\n", ok, failed);
    return 0;
}

static char race_path[256];
static const char *race_allowed;
static volatile int race_stop;

static void *flipper(void *arg)
{
    (void)arg;
    size_t la = strlen(race_allowed) + 1;
    while (!race_stop) {
        memcpy(race_path, "/etc/shadow", 12);
        memcpy(race_path, race_allowed, la);
    }
    return NULL;
}

static int race(const char *allowed, int n)
{
    char want[128] = {0}, got[128];
    int fd = open(allowed, O_RDONLY);
    if (fd < 0) {
        printf("race: cannot open %s: %s\n", allowed, strerror(errno));
        return 1;
    }
    ssize_t wn = read(fd, want, sizeof want);
    close(fd);
    race_allowed = allowed;
    strcpy(race_path, allowed);
    pthread_t t;
    pthread_create(&t, NULL, flipper, NULL);
    int opened = 0, refused = 0, other = 0;
    for (int i = 0; i < n; i++) {
        /* The raw call: the kernel reads the buffer the other thread flips. */
#ifdef SYS_open
        fd = syscall(SYS_open, race_path, O_RDONLY);
#else /* aarch64, riscv64: the generic table has openat only */
        fd = syscall(SYS_openat, AT_FDCWD, race_path, O_RDONLY);
#endif
        if (fd < 0) {
            refused++;
            continue;
        }
        opened++;
        memset(got, 0, sizeof got);
        ssize_t gn = read(fd, got, sizeof got);
        close(fd);
        if (gn != wn || memcmp(got, want, gn) != 0) {
            other++;
            printf("race: OTHER CONTENT %zd bytes\n", gn);
        }
    }
    race_stop = 1;
    pthread_join(t, NULL);
    printf("race: %d opened, %d refused, %d other content\n", opened, refused, other);
    return 0;
}

static int ring(void)
{
    FILE *m = fopen("/proc/thread-self/maps", "r");
    if (!m) {
        printf("ring: maps %s\n", strerror(errno));
        return 1;
    }
    char line[512];
    unsigned long lo = 0, hi = 0;
    while (fgets(line, sizeof line, m))
        if (strstr(line, "guestview-") && strstr(line, ".ring")) {
            sscanf(line, "%lx-%lx", &lo, &hi);
            break;
        }
    fclose(m);
    if (!lo) {
        printf("ring: not found\n");
        return 1;
    }
    int mem = open("/proc/thread-self/mem", O_RDWR);
    if (mem < 0) {
        printf("ring: mem %s\n", strerror(errno));
        return 1;
    }
    /* Garbage over the ring's control blocks and first records (the
     * region header's first 256 bytes stay, so the consumer keeps
     * reading): positions, counters, sizes, kinds, then more calls. */
    char junk[4096];
    unsigned s = 12345;
    long written = 0;
    unsigned long end = hi - lo > (256 << 10) ? lo + (256 << 10) : hi;
    for (int round = 0; round < 5; round++) {
        for (unsigned long at = lo + 256; at < end; at += sizeof junk) {
            for (size_t i = 0; i < sizeof junk; i++) {
                s = s * 1103515245 + 12345;
                junk[i] = s >> 16;
            }
            unsigned long len = end - at < sizeof junk ? end - at : sizeof junk;
            if (pwrite(mem, junk, len, (off_t)at) > 0)
                written += len;
        }
        for (int i = 0; i < 200; i++)
            getppid();
    }
    printf("ring: %lx-%lx scribbled, %ld bytes\n", lo, hi, written);
    return 0;
}

int main(int argc, char **argv)
{
    setvbuf(stdout, NULL, _IONBF, 0);
    const char *what = argc > 1 ? argv[1] : "";
    if (!strcmp(what, "shadow"))
        return shadow();
    if (!strcmp(what, "shell"))
        return shell();
    if (!strcmp(what, "setuid"))
        return do_setuid();
    if (!strcmp(what, "forkbomb"))
        return forkbomb(argc > 2 ? atoi(argv[2]) : 100);
    if (!strcmp(what, "connflood") && argc > 2)
        return connflood(atoi(argv[2]), argc > 3 ? atoi(argv[3]) : 50);
    if (!strcmp(what, "connect") && argc > 3) {
        int s = socket(AF_INET, SOCK_STREAM, 0);
        struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(atoi(argv[3]))};
        inet_pton(AF_INET, argv[2], &a.sin_addr);
        int r = connect(s, (struct sockaddr *)&a, sizeof a);
        printf("connect: %s\n", r == 0 ? "ok" : strerror(errno));
        return 0;
    }
    if (!strcmp(what, "race") && argc > 2)
        return race(argv[2], argc > 3 ? atoi(argv[3]) : 20000);
    if (!strcmp(what, "ring"))
        return ring();
    fprintf(stderr, "usage: attacks shadow|shell|setuid|forkbomb N|connflood PORT N|race ALLOWED N|ring\n");
    return 2;
}
