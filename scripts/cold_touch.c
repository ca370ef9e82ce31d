/* What touching memory again costs after it sat idle: writes MIB MiB of
 * anonymous memory, then four times sleeps IDLE seconds and reads one byte
 * of every 4 KiB page, printing the CPU time a page. With HUGE=1 the
 * memory is advised MADV_HUGEPAGE first. On the 2-core KVM guest of
 * docs/performance.md ("Memory the host lets go cold") an idle of 10 s
 * costs 8-23 us a 4 KiB page in some hours, against 0.01-0.03 us with no
 * idle, and 0.3 us a 4 KiB page on huge pages.
 *
 *   cc -O2 -o /tmp/cold_touch scripts/cold_touch.c && /tmp/cold_touch 64 10 0
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

static double cpu_seconds(void) {
  struct timespec t;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
  return t.tv_sec + t.tv_nsec * 1e-9;
}

int main(int argc, char **argv) {
  if (argc < 4) {
    fprintf(stderr, "usage: %s MIB IDLE_SECONDS HUGE(0|1)\n", argv[0]);
    return 2;
  }
  size_t len = (size_t)atol(argv[1]) << 20;
  int idle = atoi(argv[2]), huge = atoi(argv[3]);
  char *mem = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (mem == MAP_FAILED) {
    perror("mmap");
    return 1;
  }
  madvise(mem, len, huge ? MADV_HUGEPAGE : MADV_NOHUGEPAGE);
  memset(mem, 1, len);
  size_t pages = len / 4096;
  for (int round = 0; round < 4; round++) {
    struct timespec pause = {idle, 0};
    nanosleep(&pause, NULL);
    double start = cpu_seconds();
    volatile long sum = 0;
    for (size_t off = 0; off < len; off += 4096) sum += mem[off];
    printf("idle %d s, %s pages: %.2f us CPU a 4 KiB page\n", idle, huge ? "huge" : "4 KiB",
           (cpu_seconds() - start) * 1e6 / pages);
  }
  return 0;
}
