/*
 * What a thread wake-up costs in CPU on this machine, on one CPU and across
 * two: two threads pass a byte back and forth over two pipes, each round
 * trip two wake-ups and two sleeps, and the process's CPU time (user +
 * system, getrusage) is divided by the round trips. On a VM a wake-up on
 * another CPU is an interrupt the hypervisor delivers, which shows here as
 * the difference between the two placements.
 *
 * Measurement only (docs/performance-history.md, "Earlier stop: the kernel's
 * share and the agent's wake-ups measured, ...").
 *
 *     cc -O2 -pthread scripts/wake_cost.c -o /tmp/wake_cost
 *     /tmp/wake_cost 20000 0 0     # both threads on CPU 0
 *     /tmp/wake_cost 20000 0 1     # one on CPU 0, one on CPU 1
 *     /tmp/wake_cost 20000 -1 -1   # left to the scheduler
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

static int to_peer[2], from_peer[2];
static long rounds;
static int peer_cpu;

static void pin(int cpu) {
    if (cpu < 0)
        return;
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    if (pthread_setaffinity_np(pthread_self(), sizeof set, &set) != 0) {
        fprintf(stderr, "cannot pin to CPU %d\n", cpu);
        exit(1);
    }
}

static void *peer(void *unused) {
    (void)unused;
    pin(peer_cpu);
    char c;
    for (long i = 0; i < rounds; i++) {
        if (read(to_peer[0], &c, 1) != 1 || write(from_peer[1], &c, 1) != 1)
            break;
    }
    /* Should a pipe fail, the main thread reads end-of-file instead of
     * waiting for a byte that never comes. */
    close(from_peer[1]);
    return NULL;
}

static double seconds(struct timeval t) { return t.tv_sec + t.tv_usec / 1e6; }

int main(int argc, char **argv) {
    if (argc != 4) {
        fprintf(stderr, "usage: %s ROUND_TRIPS CPU PEER_CPU (-1: not pinned)\n", argv[0]);
        return 2;
    }
    rounds = atol(argv[1]);
    int cpu = atoi(argv[2]);
    peer_cpu = atoi(argv[3]);
    if (rounds <= 0 || pipe(to_peer) != 0 || pipe(from_peer) != 0) {
        fprintf(stderr, "bad round trips or no pipes\n");
        return 1;
    }
    pthread_t t;
    if (pthread_create(&t, NULL, peer, NULL) != 0)
        return 1;
    pin(cpu);
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    char c = 'x';
    for (long i = 0; i < rounds; i++) {
        if (write(to_peer[1], &c, 1) != 1 || read(from_peer[0], &c, 1) != 1) {
            fprintf(stderr, "pipe failed after %ld round trips\n", i);
            return 1;
        }
    }
    pthread_join(t, NULL);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    struct rusage r;
    getrusage(RUSAGE_SELF, &r);
    double cpu_s = seconds(r.ru_utime) + seconds(r.ru_stime);
    double wall_s = (t1.tv_sec - t0.tv_sec) + (t1.tv_nsec - t0.tv_nsec) / 1e9;
    printf("CPUs %d and %d: %.2f us of CPU a round trip, %.2f us of wall time\n", cpu, peer_cpu,
           cpu_s / rounds * 1e6, wall_s / rounds * 1e6);
    return 0;
}
