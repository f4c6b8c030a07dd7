// SPDX-License-Identifier: MIT OR Apache-2.0
/* unsupported: syscalls that qemu-mips 7.2 linux-user answers with ENOSYS
 * itself, without any host syscall (verified with
 * `strace -f qemu-mips -strace ./unsupported`). Three flavours on mips o32:
 *   add_key (4280)         in QEMU's strace table, no implementation:
 *                          -strace prints "add_key(...) = -1 errno=89".
 *   io_uring_setup (4425)  unknown to QEMU's syscall switch and strace table:
 *                          -strace prints "Unknown syscall 4425" and NO result.
 *   landlock_create_ruleset (4444), 4000+999 and 1 (below 4000):
 *                          beyond mips_syscall_args[] in cpu_loop.c, so QEMU
 *                          returns ENOSYS before do_syscall(): -strace prints
 *                          nothing at all (and no plugin syscall callback).
 * Silent on success (every call gives ENOSYS), exit 1 otherwise. */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <sys/syscall.h>
#include <unistd.h>

/* The named calls are only known to be ENOSYS under qemu-mips 7.2; other
 * architectures (and native runs) check only the invalid number. All of them
 * are harmless if a kernel does implement them (NULL/0 arguments). */
#if defined(__mips__) && _MIPS_SIM == _ABIO32
#define QEMU_MIPS_O32 1
#define NR_BOGUS (__NR_Linux + 999)
#else
#define QEMU_MIPS_O32 0
#define NR_BOGUS 999 /* not a syscall on any supported architecture */
#endif

static int fails;

static void expect_enosys(const char *name, long nr)
{
    errno = 0;
    long r = syscall(nr, 0L, 0L, 0L, 0L, 0L, 0L);
    if (r != -1 || errno != ENOSYS) {
        printf("unsupported: %s (%ld) returned %ld errno %d, want ENOSYS (%d)\n",
               name, nr, r, errno, ENOSYS);
        fails++;
    }
}

int main(void)
{
#if QEMU_MIPS_O32
    expect_enosys("add_key", __NR_add_key);
    expect_enosys("io_uring_setup", __NR_io_uring_setup);
    expect_enosys("landlock_create_ruleset", __NR_landlock_create_ruleset);
    expect_enosys("below-range", 1); /* o32 numbers start at 4000 */
#endif
    expect_enosys("not-a-syscall", NR_BOGUS);
    return fails ? 1 : 0;
}
