// SPDX-License-Identifier: MIT OR Apache-2.0
/* faults: guest exceptions, for the `fault` records of QEMU 10.2.
 *
 *   faults            a store to address 0 (SIGSEGV), an illegal instruction
 *                     (SIGILL) and a breakpoint (SIGTRAP), each caught by a
 *                     handler that siglongjmps past it; then an ordinary
 *                     write; exits 0 (also natively)
 *   faults segv|ill|trap   the same exception with no handler: dies of it
 *   faults bus        (mips) a misaligned load: dies of SIGBUS, which is 10
 *                     on MIPS and 7 on the host
 *
 * It first prints "handler=ADDR", then "KIND pc=ADDR" for each exception,
 * ADDR the guest PC the exception reports: the faulting instruction (for
 * x86-64's int3, the instruction after it, as the kernel reports it). The
 * addresses come from labels in inline assembly, written for mips and
 * x86-64; elsewhere the program uses portable C and prints pc=0 (the test
 * then checks the signal only).
 */
#include <setjmp.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

static sigjmp_buf back;

static void handler(int sig)
{
    siglongjmp(back, sig);
}

#if defined(__mips__)
/* noreorder: the assembler must not move an instruction into the delay
 * slot of the function's return (QEMU would report the slot's address). */
#define AT(label, insn)                                                        \
    __asm__ volatile(".set push\n.set noreorder\n.globl " label "\n" label     \
                     ":\n\t" insn "\n\tnop\n.set pop" ::: "memory")
#define HAVE_LABELS 1
static void __attribute__((noinline)) segv(void) { AT("segv_pc", "sw $zero, 0($zero)"); }
static void __attribute__((noinline)) ill(void) { AT("ill_pc", ".word 0xffffffff"); }
static void __attribute__((noinline)) trap(void) { AT("trap_pc", "break"); }
static int buf[2];
static void __attribute__((noinline)) bus(void)
{
    __asm__ volatile(".set push\n.set noreorder\n.globl bus_pc\nbus_pc:\n"
                     "\tlw $t0, 1(%0)\n\tnop\n.set pop" ::"r"(buf) : "t0", "memory");
}
#elif defined(__x86_64__)
#define HAVE_LABELS 1
static void __attribute__((noinline)) segv(void)
{
    __asm__ volatile(".globl segv_pc\nsegv_pc:\n\tmovl $0, 0" ::: "memory");
}
static void __attribute__((noinline)) ill(void)
{
    __asm__ volatile(".globl ill_pc\nill_pc:\n\tud2" ::: "memory");
}
static void __attribute__((noinline)) trap(void)
{
    __asm__ volatile("int3\n.globl trap_pc\ntrap_pc:\n\tnop" ::: "memory");
}
static void bus(void) { raise(SIGBUS); }
#else
#define HAVE_LABELS 0
static void segv(void) { *(volatile int *)0 = 1; }
static void ill(void) { __builtin_trap(); }
static void trap(void) { raise(SIGTRAP); }
static void bus(void) { raise(SIGBUS); }
#endif

#if defined(__mips__)
extern char bus_pc[];
#endif
#if HAVE_LABELS
extern char segv_pc[], ill_pc[], trap_pc[];
#define PC(label) ((void *)label)
#else
#define PC(label) ((void *)0)
#endif

int main(int argc, char **argv)
{
    struct {
        const char *name;
        int sig;
        void (*fn)(void);
        void *pc;
    } kinds[] = {
        {"segv", SIGSEGV, segv, PC(segv_pc)},
        {"ill", SIGILL, ill, PC(ill_pc)},
        {"trap", SIGTRAP, trap, PC(trap_pc)},
#if defined(__mips__)
        {"bus", SIGBUS, bus, PC(bus_pc)},
#else
        {"bus", SIGBUS, bus, 0},
#endif
    };
    int n = sizeof(kinds) / sizeof(kinds[0]);

    printf("handler=%p\n", (void *)handler);
    fflush(stdout);
    if (argc > 1) {
        for (int i = 0; i < n; i++) {
            if (strcmp(argv[1], kinds[i].name) == 0) {
                printf("%s pc=%p\n", kinds[i].name, kinds[i].pc);
                fflush(stdout);
                kinds[i].fn();
                return 1; /* not reached */
            }
        }
        printf("faults: unknown kind %s\n", argv[1]);
        return 1;
    }
    for (int i = 0; i < 3; i++) {
        struct sigaction sa;
        memset(&sa, 0, sizeof sa);
        sa.sa_handler = handler;
        sigaction(kinds[i].sig, &sa, 0);
        printf("%s pc=%p\n", kinds[i].name, kinds[i].pc);
        fflush(stdout);
        if (sigsetjmp(back, 1) == 0) {
            kinds[i].fn();
            printf("faults: FAIL %s did not fault\n", kinds[i].name);
            return 1;
        }
    }
    write(1, "faults: went on\n", 16);
    return 0;
}
