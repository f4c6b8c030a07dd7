/*
 * signal-guest.c - guest program for patches/tests/run (built static for
 * MIPS and for x86-64): faults, handled or not, and a signal from kill().
 *
 *   signal-guest segv      stores to address 0 with no handler: dies of SIGSEGV
 *   signal-guest handled   the same store with a SIGSEGV handler that
 *                          returns past it (siglongjmp): exits 0
 *   signal-guest ill       an illegal instruction with a SIGILL handler
 *                          (on x86-64 ud2, which QEMU raises through
 *                          raise_interrupt2()): exits 0
 *   signal-guest kill      raise(SIGUSR1) with a handler: exits 0
 *
 * Before it acts it prints "fault=ADDR handler=ADDR": the address of the
 * faulting instruction (the global label fault_here or ill_here) and of
 * the handler, for the test to compare with the plugin's from_pc and to_pc.
 *
 * Copyright (C) 2026 guestview maintainers
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#include <setjmp.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>

extern char fault_here[], ill_here[];
static sigjmp_buf back;

static void handler(int sig)
{
    siglongjmp(back, sig);
}

static void __attribute__((noinline)) fault(void)
{
#if defined(__mips__)
    /* noreorder: the assembler must not move the store into the delay
     * slot of the return (QEMU would then report the slot's address). */
    __asm__ volatile(".set push\n.set noreorder\n.globl fault_here\nfault_here:\n"
                     "\tsw $zero, 0($zero)\n\tnop\n.set pop" ::: "memory");
#elif defined(__x86_64__)
    __asm__ volatile(".globl fault_here\nfault_here:\n\tmovl $0, 0" ::: "memory");
#else
#error "signal-guest: add the faulting store for this architecture"
#endif
}

static void __attribute__((noinline)) illegal(void)
{
#if defined(__mips__)
    /* Opcode 0x3f (SDC3): coprocessor 3 is unusable, QEMU raises SIGILL. */
    __asm__ volatile(".set push\n.set noreorder\n.globl ill_here\nill_here:\n"
                     "\t.word 0xffffffff\n\tnop\n.set pop" ::: "memory");
#elif defined(__x86_64__)
    __asm__ volatile(".globl ill_here\nill_here:\n\tud2" ::: "memory");
#endif
}

int main(int argc, char **argv)
{
    const char *mode = argc > 1 ? argv[1] : "";
    int ill = strcmp(mode, "ill") == 0;
    int sig = strcmp(mode, "kill") == 0 ? SIGUSR1 : ill ? SIGILL : SIGSEGV;

    printf("fault=%p handler=%p\n", (void *)(ill ? ill_here : fault_here),
           (void *)handler);
    fflush(stdout);
    if (strcmp(mode, "segv") == 0) {
        fault();
        return 1;
    }
    signal(sig, handler);
    if (sigsetjmp(back, 1) == 0) {
        if (sig == SIGUSR1) {
            raise(SIGUSR1);
        } else if (ill) {
            illegal();
        } else {
            fault();
        }
        return 1;
    }
    printf("back from the handler\n");
    return 0;
}
