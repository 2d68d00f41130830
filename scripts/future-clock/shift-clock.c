/*
 * An LD_PRELOAD library that moves the wall clock of a process (and of every dynamically linked
 * child that inherits the environment) by SIGNALBOX_CLOCK_SHIFT_S seconds. Used by
 * scripts/test-future.sh to run the test suite "years from now" and catch tests that only pass
 * on the day they were written.
 *
 * Why not libfaketime: Debian's redis-server is linked against jemalloc, whose initialisation
 * reads the clock before libfaketime is initialised; libfaketime detects the recursion and the
 * server dies at start-up. This library allocates nothing, calls no libc function that could
 * allocate, and reads the real clock with the raw system call, so it cannot recurse.
 *
 * Only the wall clock moves (CLOCK_REALTIME and its variants, gettimeofday, time). Monotonic
 * clocks are left alone: they have no date, and timers built on them keep working.
 */
#define _GNU_SOURCE
#include <stddef.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

static long long shift_seconds(void) {
  static int parsed = 0;
  static long long shift = 0;
  if (!parsed) {
    extern char **environ;
    const char *name = "SIGNALBOX_CLOCK_SHIFT_S=";
    for (char **entry = environ; entry && *entry; entry++) {
      const char *e = *entry, *n = name;
      while (*n && *e == *n) { e++; n++; }
      if (*n) continue;
      long long sign = 1, value = 0;
      if (*e == '-') { sign = -1; e++; } else if (*e == '+') { e++; }
      while (*e >= '0' && *e <= '9') value = value * 10 + (*e++ - '0');
      shift = sign * value;
      break;
    }
    parsed = 1;
  }
  return shift;
}

static int is_wall_clock(clockid_t id) {
  return id == CLOCK_REALTIME || id == CLOCK_REALTIME_COARSE || id == CLOCK_TAI
#ifdef CLOCK_REALTIME_ALARM
         || id == CLOCK_REALTIME_ALARM
#endif
      ;
}

int clock_gettime(clockid_t id, struct timespec *ts) {
  long rc = syscall(SYS_clock_gettime, id, ts);
  if (rc == 0 && is_wall_clock(id)) ts->tv_sec += shift_seconds();
  return (int)rc;
}

int gettimeofday(struct timeval *restrict tv, void *restrict tz) {
  struct timespec now;
  if (tz != NULL) {
    struct timezone *zone = tz;
    zone->tz_minuteswest = 0;
    zone->tz_dsttime = 0;
  }
  if (clock_gettime(CLOCK_REALTIME, &now) != 0) return -1;
  tv->tv_sec = now.tv_sec;
  tv->tv_usec = now.tv_nsec / 1000;
  return 0;
}

time_t time(time_t *out) {
  struct timespec now;
  if (clock_gettime(CLOCK_REALTIME, &now) != 0) return (time_t)-1;
  if (out != NULL) *out = now.tv_sec;
  return now.tv_sec;
}
