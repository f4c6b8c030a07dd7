// SPDX-License-Identifier: MIT OR Apache-2.0
/* threads: NTHREADS pthreads released together by a barrier, each issuing
 * ITERS * 5 = 200 raw syscalls (getpid, gettid, write to /dev/null,
 * clock_gettime, nanosleep(0)) concurrently; main joins and checks. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#define NTHREADS 4
#define ITERS 40

static pthread_barrier_t barrier;
static int devnull;
static long pid;

struct res {
    long tid;
    int errors;
};

static void *worker(void *arg)
{
    struct res *r = arg;
    char byte = 'a';
    struct timespec ts, zero = {0, 0};

    r->tid = syscall(__NR_gettid);
    pthread_barrier_wait(&barrier);
    for (int i = 0; i < ITERS; i++) {
        if (syscall(__NR_getpid) != pid)
            r->errors++;
        if (syscall(__NR_gettid) != r->tid)
            r->errors++;
        if (syscall(__NR_write, devnull, &byte, 1) != 1)
            r->errors++;
        if (syscall(__NR_clock_gettime, CLOCK_MONOTONIC, &ts) != 0)
            r->errors++;
        if (syscall(__NR_nanosleep, &zero, NULL) != 0)
            r->errors++;
    }
    return NULL;
}

int main(void)
{
    pthread_t th[NTHREADS];
    struct res res[NTHREADS];
    int fails = 0;

    pid = getpid();
    devnull = open("/dev/null", O_WRONLY);
    if (devnull < 0) {
        printf("threads: FAIL open /dev/null (errno %d)\n", errno);
        return 1;
    }
    /* NTHREADS workers + main: main passes the barrier too, so all workers
     * exist before any starts its loop. */
    pthread_barrier_init(&barrier, NULL, NTHREADS + 1);
    memset(res, 0, sizeof res);
    for (int i = 0; i < NTHREADS; i++) {
        int e = pthread_create(&th[i], NULL, worker, &res[i]);
        if (e) {
            printf("threads: FAIL pthread_create %d\n", e);
            return 1;
        }
    }
    pthread_barrier_wait(&barrier);
    for (int i = 0; i < NTHREADS; i++)
        pthread_join(th[i], NULL);
    pthread_barrier_destroy(&barrier);

    for (int i = 0; i < NTHREADS; i++) {
        if (res[i].errors) {
            printf("threads: FAIL thread %d: %d bad results\n", i, res[i].errors);
            fails++;
        }
        if (res[i].tid == pid) {
            printf("threads: FAIL thread %d has tid == pid\n", i);
            fails++;
        }
        for (int j = 0; j < i; j++)
            if (res[i].tid == res[j].tid) {
                printf("threads: FAIL threads %d and %d share tid\n", i, j);
                fails++;
            }
    }
    close(devnull);
    return fails ? 1 : 0;
}
