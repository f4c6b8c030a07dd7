// SPDX-License-Identifier: MIT OR Apache-2.0
/* signals: sigaction for SIGUSR1 (plain handler -> sigreturn on mips o32) and
 * SIGALRM (SA_SIGINFO -> rt_sigreturn), raise, kill(getpid()), sigprocmask
 * block/pending/unblock, alarm set+cancel, a short ITIMER_REAL delivered
 * in sigsuspend. Handlers write() one byte to /dev/null. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/time.h>
#include <unistd.h>

static volatile sig_atomic_t usr1_count, alrm_count, alrm_code_ok;
static int devnull = -1;
static int fails;
#define CHECK(cond, what)                                                      \
    do {                                                                       \
        if (!(cond)) {                                                         \
            printf("signals: FAIL %s (errno %d)\n", what, errno);              \
            fails++;                                                           \
        }                                                                      \
    } while (0)

static void on_usr1(int sig)
{
    (void)sig;
    write(devnull, "u", 1);
    usr1_count++;
}

static void on_alrm(int sig, siginfo_t *si, void *uc)
{
    (void)uc;
    write(devnull, "a", 1);
    if (sig == SIGALRM && si->si_signo == SIGALRM)
        alrm_code_ok = 1;
    alrm_count++;
}

int main(void)
{
    struct sigaction sa, old;
    sigset_t set, pending, orig;

    devnull = open("/dev/null", O_WRONLY);
    CHECK(devnull >= 0, "open /dev/null");

    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_usr1;
    sigemptyset(&sa.sa_mask);
    CHECK(sigaction(SIGUSR1, &sa, NULL) == 0, "sigaction SIGUSR1");
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = on_alrm;
    sa.sa_flags = SA_SIGINFO;
    sigemptyset(&sa.sa_mask);
    CHECK(sigaction(SIGALRM, &sa, NULL) == 0, "sigaction SIGALRM");
    CHECK(sigaction(SIGUSR1, NULL, &old) == 0 && old.sa_handler == on_usr1,
          "sigaction query");

    CHECK(raise(SIGUSR1) == 0 && usr1_count == 1, "raise SIGUSR1");
    CHECK(kill(getpid(), SIGUSR1) == 0 && usr1_count == 2, "kill self SIGUSR1");

    /* block, send, see it pending, unblock -> delivered */
    sigemptyset(&set);
    sigaddset(&set, SIGUSR1);
    CHECK(sigprocmask(SIG_BLOCK, &set, &orig) == 0, "sigprocmask block");
    CHECK(kill(getpid(), SIGUSR1) == 0, "kill while blocked");
    CHECK(usr1_count == 2, "blocked signal not delivered");
    CHECK(sigpending(&pending) == 0 && sigismember(&pending, SIGUSR1) == 1,
          "sigpending shows SIGUSR1");
    CHECK(sigprocmask(SIG_SETMASK, &orig, NULL) == 0, "sigprocmask unblock");
    CHECK(usr1_count == 3, "delivered on unblock");

    /* alarm: set, then cancel; the remaining time comes back */
    alarm(100);
    unsigned left = alarm(0);
    CHECK(left > 90 && left <= 100, "alarm cancel returns remaining time");

    /* a real SIGALRM after 20 ms, waited for with sigsuspend */
    sigemptyset(&set);
    sigaddset(&set, SIGALRM);
    sigprocmask(SIG_BLOCK, &set, &orig);
    struct itimerval it = {{0, 0}, {0, 20000}};
    CHECK(setitimer(ITIMER_REAL, &it, NULL) == 0, "setitimer");
    sigset_t wait = orig;
    sigdelset(&wait, SIGALRM);
    errno = 0;
    CHECK(sigsuspend(&wait) == -1 && errno == EINTR, "sigsuspend -> EINTR");
    sigprocmask(SIG_SETMASK, &orig, NULL);
    CHECK(alrm_count == 1 && alrm_code_ok, "SIGALRM delivered with siginfo");

    /* restore default dispositions */
    signal(SIGUSR1, SIG_DFL);
    signal(SIGALRM, SIG_DFL);
    close(devnull);
    return fails ? 1 : 0;
}
