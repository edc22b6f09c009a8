/* Clock and FMA probe of bench/cpu-peak.ts (x86-64), for when the machine reports no maximum clock (a
 * virtual machine's /proc/cpuinfo gives the nominal one, below the boost clock the cores run at).
 *
 *   cpu-peak-probe THREADS   (built with -O2 -pthread and -mavx512f, or -mavx2 -mfma)
 *
 * Runs THREADS threads at once, so the clock is the one with that many cores busy. Each thread times, in
 * its own CPU time (so time taken by other processes does not count):
 *   - a chain of dependent integer adds, one cycle each on every x86-64 core: adds per second = clock;
 *   - 12 independent chains of fp32 FMAs on the widest vectors compiled in (enough to cover the FMA
 *     latency): the FMA throughput the cores reach.
 * Prints {"mhz": [per thread], "fmaGflops": [per thread], "lanes": 16 or 8}. */
#include <immintrin.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static double cpu_seconds(void) {
  struct timespec t;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
  return t.tv_sec + t.tv_nsec * 1e-9;
}

#ifdef __AVX512F__
#define LANES 16
typedef __m512 vec;
#define SET1 _mm512_set1_ps
#define FMA _mm512_fmadd_ps
#define SUM _mm512_reduce_add_ps
#else
#define LANES 8
typedef __m256 vec;
#define SET1 _mm256_set1_ps
#define FMA _mm256_fmadd_ps
static float SUM(vec v) {
  float f[8], s = 0;
  _mm256_storeu_ps(f, v);
  for (int i = 0; i < 8; i++) s += f[i];
  return s;
}
#endif

struct result {
  double mhz, gflops;
  float sink;
};

static void *probe(void *arg) {
  struct result *r = arg;
  const long adds = 1000000000L;
  long x = 0;
  double t = cpu_seconds();
  for (long i = 0; i < adds; i += 8) {
    __asm__ volatile("add $1,%0\n\tadd $1,%0\n\tadd $1,%0\n\tadd $1,%0\n\tadd $1,%0\n\tadd $1,%0\n\tadd $1,%0\n\tadd $1,%0" : "+r"(x));
  }
  r->mhz = adds / (cpu_seconds() - t) / 1e6;

  const long steps = 50000000L;
  vec a0 = SET1(0.0f), a1 = SET1(0.1f), a2 = SET1(0.2f), a3 = SET1(0.3f), a4 = SET1(0.4f), a5 = SET1(0.5f);
  vec a6 = SET1(0.6f), a7 = SET1(0.7f), a8 = SET1(0.8f), a9 = SET1(0.9f), a10 = SET1(1.0f), a11 = SET1(1.1f);
  const vec b = SET1(0.999999f), c = SET1(1e-7f);
  t = cpu_seconds();
  for (long i = 0; i < steps; i++) {
    a0 = FMA(a0, b, c); a1 = FMA(a1, b, c); a2 = FMA(a2, b, c); a3 = FMA(a3, b, c);
    a4 = FMA(a4, b, c); a5 = FMA(a5, b, c); a6 = FMA(a6, b, c); a7 = FMA(a7, b, c);
    a8 = FMA(a8, b, c); a9 = FMA(a9, b, c); a10 = FMA(a10, b, c); a11 = FMA(a11, b, c);
    __asm__ volatile("" : "+x"(a0), "+x"(a1), "+x"(a2), "+x"(a3), "+x"(a4), "+x"(a5));
  }
  r->gflops = steps * 12.0 * LANES * 2 / (cpu_seconds() - t) / 1e9;
  r->sink = SUM(a0) + SUM(a1) + SUM(a2) + SUM(a3) + SUM(a4) + SUM(a5) + SUM(a6) + SUM(a7) + SUM(a8) + SUM(a9) +
            SUM(a10) + SUM(a11) + (float)x;
  return NULL;
}

int main(int argc, char **argv) {
  int n = argc > 1 ? atoi(argv[1]) : 1;
  if (n < 1 || n > 1024) return 2;
  pthread_t *threads = calloc(n, sizeof *threads);
  struct result *results = calloc(n, sizeof *results);
  for (int i = 0; i < n; i++) pthread_create(&threads[i], NULL, probe, &results[i]);
  for (int i = 0; i < n; i++) pthread_join(threads[i], NULL);
  printf("{\"lanes\": %d, \"mhz\": [", LANES);
  for (int i = 0; i < n; i++) printf("%s%.0f", i ? ", " : "", results[i].mhz);
  printf("], \"fmaGflops\": [");
  for (int i = 0; i < n; i++) printf("%s%.1f", i ? ", " : "", results[i].gflops);
  printf("], \"sink\": %g}\n", (double)results[0].sink);
  return 0;
}
