// SPDX-License-Identifier: MIT OR Apache-2.0
/* memory: brk growth via sbrk, anonymous mmap, mprotect, munmap, file mmap. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

static int fails;
#define CHECK(cond, what)                                                      \
    do {                                                                       \
        if (!(cond)) {                                                         \
            printf("memory: FAIL %s (errno %d)\n", what, errno);               \
            fails++;                                                           \
        }                                                                      \
    } while (0)

int main(void)
{
    long pg = sysconf(_SC_PAGESIZE);

    /* brk: query, grow by 256 KiB, touch, shrink back. */
    char *b0 = sbrk(0);
    char *p = sbrk(256 * 1024);
    CHECK(p != (void *)-1 && p == b0, "sbrk grow");
    if (p != (void *)-1) {
        memset(p, 0x5a, 256 * 1024);
        CHECK(p[256 * 1024 - 1] == 0x5a, "touch brk area");
        CHECK(sbrk(-256 * 1024) != (void *)-1, "sbrk shrink");
        CHECK(sbrk(0) == b0, "brk back to start");
    }

    /* anonymous mmap, 4 pages */
    size_t len = 4 * (size_t)pg;
    unsigned char *m = mmap(NULL, len, PROT_READ | PROT_WRITE,
                            MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    CHECK(m != MAP_FAILED, "mmap anon");
    if (m != MAP_FAILED) {
        for (size_t i = 0; i < len; i++)
            m[i] = (unsigned char)i;
        CHECK(mprotect(m, (size_t)pg, PROT_READ) == 0, "mprotect RO");
        CHECK(m[1] == 1, "read after mprotect");
        CHECK(mprotect(m, (size_t)pg, PROT_READ | PROT_WRITE) == 0, "mprotect RW");
        m[0] = 0xee;
        CHECK(munmap(m + 2 * pg, 2 * (size_t)pg) == 0, "munmap tail");
        CHECK(munmap(m, 2 * (size_t)pg) == 0, "munmap head");
    }

    /* mmap of a file: our own ELF. QEMU intercepts "/proc/self/exe" and opens
     * the guest program itself (no /proc needed); natively /proc must be
     * mounted, else fall back to /bin/sh. */
    int fd = open("/proc/self/exe", O_RDONLY);
    if (fd < 0)
        fd = open("/bin/sh", O_RDONLY);
    CHECK(fd >= 0, "open file to map");
    if (fd >= 0) {
        unsigned char *f = mmap(NULL, (size_t)pg, PROT_READ, MAP_PRIVATE, fd, 0);
        CHECK(f != MAP_FAILED, "mmap file");
        if (f != MAP_FAILED) {
            CHECK(memcmp(f, "\177ELF", 4) == 0, "file mapping shows ELF magic");
            CHECK(munmap(f, (size_t)pg) == 0, "munmap file");
        }
        close(fd);
    }

    /* an invalid munmap: EINVAL */
    errno = 0;
    CHECK(munmap((void *)1, (size_t)pg) == -1 && errno == EINVAL,
          "munmap unaligned -> EINVAL");
    return fails ? 1 : 0;
}
