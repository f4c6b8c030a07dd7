// SPDX-License-Identifier: MIT OR Apache-2.0
/* compute_heavy: benchmark. A CPU-bound loop with almost no syscalls:
 * a sieve of Eratosthenes up to LIMIT repeated ROUNDS times plus an FNV-1a
 * style hash over the result; prints the prime count and a checksum.
 * argv[1] = ROUNDS (default 80: about 1.6 s under qemu-mips 7.2 on a
 * 2-core x86-64 host; 0 rounds: start-up cost only). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define LIMIT 2000000u

static unsigned char composite[LIMIT + 1];

int main(int argc, char **argv)
{
    long rounds = argc > 1 ? strtol(argv[1], NULL, 10) : 80;
    uint32_t hash = 2166136261u, count = 0;

    for (long r = 0; r < rounds; r++) {
        memset(composite, 0, sizeof composite);
        count = 0;
        for (uint32_t i = 2; i <= LIMIT; i++) {
            if (composite[i])
                continue;
            count++;
            hash = (hash ^ i) * 16777619u;
            for (uint32_t j = i * 2; j <= LIMIT; j += i)
                composite[j] = 1;
        }
        hash ^= (uint32_t)r;
    }
    /* 148933 primes below 2,000,000 */
    printf("compute_heavy: %u primes, checksum %08x\n", count, hash);
    return count == 148933u || rounds == 0 ? 0 : 1;
}
