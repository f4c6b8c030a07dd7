// SPDX-License-Identifier: MIT OR Apache-2.0
/* emulated: syscalls that QEMU 7.2 answers itself, with NO host syscall.
 *
 * Verified on QEMU 7.2.22 (Debian 1:7.2+dfsg-7+deb12u18) by running
 *   strace -f -o host.txt qemu-<arch> -strace ./emulated
 * and joining QEMU's own -strace lines (written to fd 2, so visible in
 * host.txt) with the host calls between them; with -strace, QEMU itself calls
 * getpid() once per guest syscall to print the PID, ignore those.
 * Host-call-free on every architecture (mips o32 numbers = 4000 + n):
 *   brk(0)                      4045   returns the current break
 *   brk(cur - 16), brk(cur)     4045   shrink and regrow inside the pages QEMU
 *                                      already mapped (growing past them gives
 *                                      a host mmap(MAP_FIXED): "translated")
 *   sigaltstack(NULL, &old)     4206   query
 *   sigaltstack(&ss, NULL)      4206   set, and disable again
 *   rt_sigprocmask(SIG_BLOCK, NULL, &old) 4195  query of the guest mask
 *   madvise(p, len, MADV_WILLNEED) 4218  hint, QEMU 7.2 returns 0 itself
 * and the architecture's own, from QEMU 7.2's linux-user source:
 *   mips     set_thread_area(tp) (4283): only sets CPU state;
 *            cacheflush(buf, len, BCACHE) (4147): QEMU returns 0.
 *   aarch64  prctl(PR_SVE_GET_VL) (167): do_prctl_sve_get_vl() in
 *            linux-user/aarch64/target_prctl.h reads the vector length from
 *            the CPU state.
 *   ppc, ppc64le  swapcontext(&ctx, NULL, size) (249):
 *            do_swapcontext() in linux-user/ppc/signal.c saves the registers
 *            into guest memory.
 *   x86_64   arch_prctl(ARCH_GET_FS, &fs) (158): do_arch_prctl() reads the
 *            FS base from the CPU state.
 *   arm      none that the guest can see: ARM's private calls (set_tls
 *            0xf0005, cacheflush 0xf0002, get_tls 0xf0006) are answered in
 *            linux-user/arm/cpu_loop.c before do_syscall(), so neither
 *            -strace nor a plugin ever sees them.
 *   riscv64  none that the guest can see: riscv_flush_icache (259) is
 *            answered with 0 in linux-user/riscv/cpu_loop.c before
 *            do_syscall(), so neither -strace nor a plugin sees it.
 * NOT host-call-free, for contrast (not called here): rt_sigaction, even a
 * query, does host rt_sigprocmask (QEMU's block_signals()); rt_sigprocmask
 * that changes the mask does host rt_sigprocmask; set_tid_address becomes a
 * host gettid; readlink("/proc/self/exe") becomes host getcwd + readlink.
 * Exits 0 if every call returned what the kernel would. */
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#if defined(__powerpc__)
#include <ucontext.h>
#endif
#if defined(__x86_64__)
#include <asm/prctl.h>
#endif
#include <unistd.h>

static int fails;
#define CHECK(cond, what)                                                      \
    do {                                                                       \
        if (!(cond)) {                                                         \
            printf("emulated: FAIL %s (errno %d)\n", what, errno);             \
            fails++;                                                           \
        }                                                                      \
    } while (0)

static char altstack[16384];

int main(void)
{
    /* brk: query, then shrink by 16 bytes and grow back: both stay inside
     * what QEMU has already mapped (QEMU 7.2 never unmaps on shrink). No
     * malloc between the two, so the 16 bytes are never in use. */
    long cur = syscall(__NR_brk, 0);
    CHECK(cur > 0, "brk(0)");
    CHECK(syscall(__NR_brk, cur - 16) == cur - 16, "brk shrink by 16");
    CHECK(syscall(__NR_brk, cur) == cur, "brk grow back");

#if defined(__mips__)
    void *tp;
    __asm__ volatile(".set push\n.set mips32r2\nrdhwr %0,$29\n.set pop"
                     : "=r"(tp));
    CHECK(syscall(__NR_set_thread_area, tp) == 0, "set_thread_area(same tp)");
#endif

    stack_t ss, old;
    CHECK(syscall(__NR_sigaltstack, NULL, &old) == 0 && (old.ss_flags & SS_DISABLE),
          "sigaltstack query");
    ss.ss_sp = altstack;
    ss.ss_size = sizeof altstack;
    ss.ss_flags = 0;
    CHECK(syscall(__NR_sigaltstack, &ss, NULL) == 0, "sigaltstack set");
    CHECK(syscall(__NR_sigaltstack, NULL, &old) == 0 && old.ss_sp == altstack,
          "sigaltstack query after set");
    ss.ss_flags = SS_DISABLE;
    CHECK(syscall(__NR_sigaltstack, &ss, NULL) == 0, "sigaltstack disable");

    unsigned long mask[4] = {0};
    /* kernel sigset size: 16 bytes on MIPS (127 signals), 8 on the others */
#if defined(__mips__)
    const long sigsetsize = 16;
#else
    const long sigsetsize = 8;
#endif
    CHECK(syscall(__NR_rt_sigprocmask, SIG_BLOCK, NULL, mask, sigsetsize) == 0,
          "rt_sigprocmask query");

#if defined(__mips__) && defined(__NR_cacheflush)
    CHECK(syscall(__NR_cacheflush, altstack, 64, 3 /* BCACHE */) == 0,
          "cacheflush");
#endif

#if defined(__aarch64__)
    /* QEMU's default CPU (max) has SVE: a vector length in bytes, else EINVAL */
    errno = 0;
    long vl = syscall(__NR_prctl, PR_SVE_GET_VL, 0L, 0L, 0L, 0L);
    CHECK(vl > 0 || errno == EINVAL, "prctl(PR_SVE_GET_VL)");
#endif

#if defined(__powerpc__)
    /* Room for the kernel's ucontext with every register set (glibc's
     * ucontext_t is smaller than QEMU's ppc64 target_ucontext: EINVAL). */
    static union {
        ucontext_t uc;
        char room[8192];
    } ctx __attribute__((aligned(16)));
    CHECK(syscall(__NR_swapcontext, &ctx, NULL, (long)sizeof ctx) == 0,
          "swapcontext(save only)");
#endif

#if defined(__x86_64__)
    unsigned long fs = 0;
    CHECK(syscall(__NR_arch_prctl, ARCH_GET_FS, &fs) == 0 && fs != 0,
          "arch_prctl(ARCH_GET_FS)");
#endif

    void *m = mmap(NULL, 8192, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
                   -1, 0);
    CHECK(m != MAP_FAILED, "mmap (setup)");
    if (m != MAP_FAILED) {
        CHECK(syscall(__NR_madvise, m, 8192, MADV_WILLNEED) == 0, "madvise");
        munmap(m, 8192);
    }
    return fails ? 1 : 0;
}
