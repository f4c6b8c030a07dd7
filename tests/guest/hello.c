// SPDX-License-Identifier: MIT OR Apache-2.0
/* hello: the demo. Prints "hello from MIPS" (the architecture it was built
 * for), reads /etc/hostname (or argv[1]), stats it, fails to open a file that
 * does not exist, asks for its pid, and exits 0. Under qemu-mips 7.2:
 * write, read, close, statx (glibc's stat) and getpid pass through; openat
 * is translated (QEMU first probes the path under its interp prefix with a
 * host access("/etc/qemu-binfmt/mips/...")); brk(0) and set_thread_area at
 * start-up are emulated; set_tid_address becomes a host gettid;
 * set_robust_list and rseq at start-up are unsupported (ENOSYS, no host
 * call). */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#if defined(__mips__) && defined(__MIPSEL__)
#define ARCH "MIPS (little-endian)"
#elif defined(__mips__)
#define ARCH "MIPS"
#elif defined(__aarch64__)
#define ARCH "AArch64"
#elif defined(__arm__)
#define ARCH "ARM"
#elif defined(__powerpc64__)
#define ARCH "PowerPC64"
#elif defined(__powerpc__)
#define ARCH "PowerPC"
#elif defined(__riscv)
#define ARCH "RISC-V"
#elif defined(__x86_64__)
#define ARCH "x86-64"
#else
#define ARCH "an unknown architecture"
#endif

int main(int argc, char **argv)
{
    const char *file = argc > 1 ? argv[1] : "/etc/hostname";
    char buf[128];
    struct stat st;

    printf("hello from " ARCH "\n");
    fflush(stdout);

    int fd = open(file, O_RDONLY);
    if (fd >= 0) {
        ssize_t n = read(fd, buf, sizeof buf - 1);
        buf[n > 0 ? n : 0] = 0;
        buf[strcspn(buf, "\n")] = 0;
        printf("%s: \"%s\"\n", file, buf);
        close(fd);
    } else {
        printf("%s: cannot open (errno %d)\n", file, errno);
    }
    if (stat(file, &st) == 0)
        printf("%s: %lld bytes\n", file, (long long)st.st_size);

    errno = 0;
    if (open("/nonexistent/guestview-demo", O_RDONLY) != -1 || errno != ENOENT) {
        printf("hello: expected ENOENT, got errno %d\n", errno);
        return 1;
    }
    printf("pid %d, bye\n", (int)getpid());
    return 0;
}
