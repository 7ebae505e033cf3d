/* Preloaded into wrk by scripts/loadtest (never shipped): wrk times its requests, its timeouts
 * and its run with gettimeofday, the wall clock, which NTP or a resumed virtual machine can step.
 * A step of seconds mid-run made every request in flight count as a timeout (a latency of
 * seconds no request had) and stretched the run's reported duration. This gettimeofday answers
 * from CLOCK_MONOTONIC, which only moves forward at the clock's rate, offset once so that the
 * values still read as the current time. wrk only ever subtracts them. */
#define _GNU_SOURCE
#include <sys/time.h>
#include <time.h>

static long long offset_ns;

__attribute__((constructor)) static void start(void) {
    struct timespec wall, steady;
    clock_gettime(CLOCK_REALTIME, &wall);
    clock_gettime(CLOCK_MONOTONIC, &steady);
    offset_ns = (wall.tv_sec - steady.tv_sec) * 1000000000LL + (wall.tv_nsec - steady.tv_nsec);
}

int gettimeofday(struct timeval *restrict tv, void *restrict tz) {
    (void)tz;
    struct timespec steady;
    clock_gettime(CLOCK_MONOTONIC, &steady);
    long long ns = steady.tv_sec * 1000000000LL + steady.tv_nsec + offset_ns;
    tv->tv_sec = (time_t)(ns / 1000000000LL);
    tv->tv_usec = (suseconds_t)((ns % 1000000000LL) / 1000);
    return 0;
}
