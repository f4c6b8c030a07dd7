// SPDX-License-Identifier: MIT OR Apache-2.0
/* fileio: basic file syscalls in a directory given as argv[1] (default /tmp).
 * open/creat, write, lseek (_llseek on mips o32), read, fstat, stat, rename,
 * unlink, open of a missing file (ENOENT), close, getdents/getdents64. */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

static int fails;
#define CHECK(cond, what)                                                      \
    do {                                                                       \
        if (!(cond)) {                                                         \
            printf("fileio: FAIL %s (errno %d)\n", what, errno);               \
            fails++;                                                           \
        }                                                                      \
    } while (0)

int main(int argc, char **argv)
{
    const char *dir = argc > 1 ? argv[1] : "/tmp";
    char a[4096], b[4096], c[4096], buf[64];
    static const char msg[] = "guestview fileio 0123456789\n";
    struct stat st;
    long pid = (long)getpid();

    snprintf(a, sizeof a, "%s/gv-fileio-%ld-a", dir, pid);
    snprintf(b, sizeof b, "%s/gv-fileio-%ld-b", dir, pid);
    snprintf(c, sizeof c, "%s/gv-fileio-%ld-missing", dir, pid);

    int fd = open(a, O_RDWR | O_CREAT | O_TRUNC, 0644);
    CHECK(fd >= 0, "open O_CREAT");
    CHECK(write(fd, msg, sizeof msg - 1) == (ssize_t)(sizeof msg - 1), "write");
    CHECK(lseek(fd, 10, SEEK_SET) == 10, "lseek SEEK_SET");
    CHECK(lseek(fd, 0, SEEK_CUR) == 10, "lseek SEEK_CUR");
    CHECK(read(fd, buf, 7) == 7 && memcmp(buf, "fileio ", 7) == 0, "read back");
    CHECK(lseek(fd, 0, SEEK_END) == (off_t)(sizeof msg - 1), "lseek SEEK_END");
    CHECK(fstat(fd, &st) == 0 && st.st_size == (off_t)(sizeof msg - 1) &&
              S_ISREG(st.st_mode),
          "fstat");
    CHECK(close(fd) == 0, "close");

    CHECK(stat(a, &st) == 0 && st.st_size == (off_t)(sizeof msg - 1), "stat");
    CHECK(rename(a, b) == 0, "rename");
    errno = 0;
    CHECK(stat(a, &st) == -1 && errno == ENOENT, "stat after rename");

    /* creat() truncates the renamed file. */
    fd = creat(b, 0600);
    CHECK(fd >= 0, "creat");
    CHECK(write(fd, "x", 1) == 1, "write after creat");
    CHECK(fstat(fd, &st) == 0 && st.st_size == 1, "fstat after creat");
    CHECK(close(fd) == 0, "close after creat");

    /* getdents64 through readdir64, and the legacy getdents syscall.
     * Not plain readdir(): under qemu-mips on a 64-bit host, ext4 hands out
     * 64-bit directory hash offsets (a native 32-bit kernel gives 32-bit
     * ones), so glibc's 32-bit readdir() fails with EOVERFLOW. */
    int seen = 0;
    DIR *d = opendir(dir);
    CHECK(d != NULL, "opendir");
    if (d) {
        struct dirent64 *e;
        while ((e = readdir64(d)) != NULL)
            if (strcmp(e->d_name, strrchr(b, '/') + 1) == 0)
                seen = 1;
        closedir(d);
    }
    CHECK(seen, "readdir finds renamed file");
#ifdef __NR_getdents
    /* aarch64 and riscv64 (the generic syscall table) have no getdents. */
    fd = open(dir, O_RDONLY | O_DIRECTORY);
    CHECK(fd >= 0, "open dir");
    long n = syscall(__NR_getdents, fd, a, sizeof a); /* reuse a[] as buffer */
    CHECK(n > 0, "getdents");
    close(fd);
#endif

    CHECK(unlink(b) == 0, "unlink");
    errno = 0;
    CHECK(open(c, O_RDONLY) == -1 && errno == ENOENT, "open missing -> ENOENT");
    errno = 0;
    CHECK(close(12345) == -1 && errno == EBADF, "close bad fd -> EBADF");

    return fails ? 1 : 0;
}
