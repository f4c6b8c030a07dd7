// SPDX-License-Identifier: MIT OR Apache-2.0
/* unsupported: syscalls that QEMU 7.2 linux-user answers with ENOSYS itself,
 * without any host syscall. Found in QEMU 7.2's source (Debian
 * 1:7.2+dfsg-7+deb12u18): a number that do_syscall()'s switch in
 * linux-user/syscall.c has no case for (or sends to `unimplemented`) falls
 * to its default, "Unsupported syscall", -TARGET_ENOSYS; checked with
 * `strace -f qemu-<arch> -strace ./unsupported`.
 *
 * Every architecture:
 *   add_key                 in QEMU's strace table, no implementation:
 *                           -strace prints "add_key(...) = -1 errno=N".
 *   io_uring_setup          unknown to QEMU 7.2 (its tables end before it):
 *                           -strace prints "Unknown syscall N" and no result.
 * Per architecture (each one the architecture's own, unknown to do_syscall):
 *   mips   landlock_create_ruleset (4444), 4000 + 999 and 1 (below 4000):
 *          beyond mips_syscall_args[] in linux-user/mips/cpu_loop.c, so QEMU
 *          returns ENOSYS before do_syscall(): -strace prints nothing and the
 *          plugin's syscall callbacks do not fire (guestview cannot see
 *          them; the same holds for every o32 number >= 4443).
 *   arm    pciconfig_iobase (271), ARM-only; and the ARM private call
 *          0xf0007 (below 0xf0800): linux-user/arm/cpu_loop.c answers
 *          0xf0000..0xf07ff itself with ENOSYS before do_syscall(), so like
 *          the mips ones above it is invisible to -strace and plugins.
 *   aarch64  lookup_dcookie (18) of the generic table.
 *   ppc    sys_debug_setcontext (256), PowerPC-only.
 *   ppc64le  subpage_prot (310), PowerPC-64-only.
 *   riscv64  lookup_dcookie (18) of the generic table. (Not
 *          riscv_hwprobe, 258, RISC-V-only: unknown to QEMU 7.2, but QEMU
 *          10.2 implements it. Not riscv_flush_icache, 259:
 *          linux-user/riscv/cpu_loop.c answers it with 0 before
 *          do_syscall(), invisibly.)
 *   x86_64   iopl (172) with level 0, x86-only.
 * And everywhere a number that is no syscall at all (999; 4999 on MIPS).
 *
 * Under QEMU every named call must give ENOSYS. Natively (`unsupported
 * native`, an x86-64 build on the host) only the invalid number is checked:
 * a real kernel implements the named calls. All arguments are 0/NULL, so a
 * kernel that does implement a call does nothing harmful.
 * Silent on success, exit 1 otherwise. */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#if defined(__mips__) && _MIPS_SIM == _ABIO32
#define NR_BOGUS (__NR_Linux + 999)
#else
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

int main(int argc, char **argv)
{
    int native = argc > 1 && strcmp(argv[1], "native") == 0;
    if (!native) {
        expect_enosys("add_key", __NR_add_key);
        expect_enosys("io_uring_setup", __NR_io_uring_setup);
#if defined(__mips__) && _MIPS_SIM == _ABIO32
        expect_enosys("landlock_create_ruleset", __NR_landlock_create_ruleset);
        expect_enosys("below-range", 1); /* o32 numbers start at 4000 */
#elif defined(__arm__)
        expect_enosys("pciconfig_iobase", __NR_pciconfig_iobase);
        expect_enosys("arm-private-0xf0007", 0xf0007);
#elif defined(__aarch64__)
        expect_enosys("lookup_dcookie", __NR_lookup_dcookie);
#elif defined(__powerpc64__)
        expect_enosys("subpage_prot", __NR_subpage_prot);
#elif defined(__powerpc__)
        expect_enosys("sys_debug_setcontext", __NR_sys_debug_setcontext);
#elif defined(__riscv)
        expect_enosys("lookup_dcookie", __NR_lookup_dcookie);
#elif defined(__x86_64__)
        expect_enosys("iopl", __NR_iopl);
#endif
    }
    expect_enosys("not-a-syscall", NR_BOGUS);
    return fails ? 1 : 0;
}
