/* Round 26: is a thread that wakes after idleness slow because its caches went cold, or
 * because the core runs slower (a host core clocked down, or shared)? This VM exposes no
 * hardware counters, so the two are told apart by what is slow:
 *
 *   - 20 chunks of a register-only loop (a dependent multiply-add chain: a few bytes of
 *     code, no data), timed each. Caches cannot make its second chunk slow; a slow clock
 *     makes every chunk slow until it speeds up.
 *   - then one walk of a 256 KiB random pointer chain (4,096 cache lines): slow when the
 *     data has left the caches, at any clock.
 *
 * Each round sleeps first: 10 ms (as between HTTP publishes at 100 a second) or 0.2 ms
 * (5,000 a second), blocks of rounds alternating. Prints the medians per sleep: each of
 * chunks 1, 2, 5 and 20, and the chain's ns per step. Build and run from the repository's
 * root:
 *
 *   gcc -O2 -o /tmp/wake-speed bench/results/round26-xeon/wake-speed.c
 *   /tmp/wake-speed > bench/results/round26-xeon/wake-speed.txt
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#define CHUNKS 20
#define SPIN 1000
#define LINES 4096

static volatile uint64_t sink;

static uint64_t now_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (uint64_t)t.tv_sec * 1000000000u + (uint64_t)t.tv_nsec;
}

static void pause_us(long us) {
    struct timespec t = {us / 1000000, (us % 1000000) * 1000};
    nanosleep(&t, NULL);
}

static int cmp(const void *a, const void *b) {
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static uint64_t median(uint64_t *v, int n) {
    qsort(v, n, sizeof *v, cmp);
    return v[n / 2];
}

struct line { struct line *next; char pad[64 - sizeof(struct line *)]; };

int main(void) {
    struct line *chain = aligned_alloc(64, LINES * sizeof(struct line));
    int *order = malloc(LINES * sizeof(int));
    if (!chain || !order) return 1;
    for (int i = 0; i < LINES; i++) order[i] = i;
    srand(26);
    for (int i = LINES - 1; i > 0; i--) {
        int j = rand() % (i + 1), t = order[i];
        order[i] = order[j];
        order[j] = t;
    }
    for (int i = 0; i < LINES; i++) chain[order[i]].next = &chain[order[(i + 1) % LINES]];

    const long sleeps_us[2] = {10000, 200};
    const int rounds[2] = {300, 3000};
    printf("sleep before each round; median ns of register-only chunks 1 / 2 / 5 / 20 (%d dependent multiply-adds each); "
           "median ns per step of the 256 KiB pointer chain; rounds\n", SPIN);
    for (int block = 0; block < 4; block++) {
        int k = block % 2, n = rounds[k];
        uint64_t *c[CHUNKS], *walk = malloc(n * sizeof(uint64_t));
        for (int i = 0; i < CHUNKS; i++) c[i] = malloc(n * sizeof(uint64_t));
        uint64_t x = 1;
        for (int r = 0; r < n; r++) {
            pause_us(sleeps_us[k]);
            for (int i = 0; i < CHUNKS; i++) {
                uint64_t t0 = now_ns();
                for (int s = 0; s < SPIN; s++) x = x * 6364136223846793005ULL + 1442695040888963407ULL;
                sink = x;
                c[i][r] = now_ns() - t0;
            }
            uint64_t t0 = now_ns();
            struct line *p = &chain[0];
            for (int s = 0; s < LINES; s++) p = p->next;
            sink = (uint64_t)(uintptr_t)p;
            walk[r] = (now_ns() - t0) * 10 / LINES; /* tenths of a ns per step */
        }
        uint64_t m1 = median(c[0], n), m2 = median(c[1], n), m5 = median(c[4], n), m20 = median(c[19], n);
        uint64_t w = median(walk, n);
        printf("sleep %5ld us: chunks %llu / %llu / %llu / %llu ns; chain %llu.%llu ns per step; %d rounds\n",
               sleeps_us[k], (unsigned long long)m1, (unsigned long long)m2, (unsigned long long)m5,
               (unsigned long long)m20, (unsigned long long)(w / 10), (unsigned long long)(w % 10), n);
        fflush(stdout);
        for (int i = 0; i < CHUNKS; i++) free(c[i]);
        free(walk);
    }
    return 0;
}
