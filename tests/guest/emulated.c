// SPDX-License-Identifier: MIT OR Apache-2.0
/* emulated: syscalls that qemu-mips 7.2 answers itself, with NO host syscall.
 *
 * Verified on qemu-mips 7.2.22 (Debian 1:7.2+dfsg-7+deb12u18) by running
 *   strace -f -o host.txt qemu-mips -strace ./emulated
 * and joining QEMU's own -strace lines (written to fd 2, so visible in
 * host.txt) with the host calls between them; with -strace, QEMU itself calls
 * getpid() once per guest syscall to print the PID, ignore those.
 * Host-call-free on mips o32 (number = 4000 + n):
 *   brk(0)                      4045   returns the current break
 *   brk(cur - 16), brk(cur)     4045   shrink and regrow inside the pages QEMU
 *                                      already mapped (growing past them gives
 *                                      a host mmap(MAP_FIXED): "translated")
 *   set_thread_area(tp)         4283   only sets CPU state
 *   sigaltstack(NULL, &old)     4206   query
 *   sigaltstack(&ss, NULL)      4206   set, and disable again
 *   rt_sigprocmask(SIG_BLOCK, NULL, &old) 4195  query of the guest mask
 *   cacheflush(buf, len, BCACHE) 4147  MIPS-only, QEMU returns 0
 *   madvise(p, len, MADV_WILLNEED) 4218  hint, QEMU 7.2 returns 0 itself
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
#include <sys/syscall.h>
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

    void *m = mmap(NULL, 8192, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
                   -1, 0);
    CHECK(m != MAP_FAILED, "mmap (setup)");
    if (m != MAP_FAILED) {
        CHECK(syscall(__NR_madvise, m, 8192, MADV_WILLNEED) == 0, "madvise");
        munmap(m, 8192);
    }
    return fails ? 1 : 0;
}
