/* progs.h: the small helpers the test programs share. Header only, so each
 * program stays one source file with its own main. */
#ifndef TLSSHIM_TESTS_PROGS_H
#define TLSSHIM_TESTS_PROGS_H

#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* The errno's name ("ECONNRESET"): the failure tests look for it. */
static inline const char *errname(int e) {
  const char *n = strerrorname_np(e);
  return n != NULL ? n : "EUNKNOWN";
}

static inline int64_t now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* vexit_with ends a program's die()/fail() once it has printed its own
 * prefix: the message, a newline, exit status 1. */
static inline void vexit_with(const char *fmt, va_list ap)
    __attribute__((noreturn));
static inline void vexit_with(const char *fmt, va_list ap) {
  vfprintf(stderr, fmt, ap);
  fputc('\n', stderr);
  exit(1);
}

/* parse_count reads a non-negative decimal; false if |s| is not one. */
static inline bool parse_count(const char *s, long *out) {
  char *end;
  errno = 0;
  long v = strtol(s, &end, 10);
  if (errno != 0 || end == s || *end != '\0' || v < 0) {
    return false;
  }
  *out = v;
  return true;
}

#endif /* TLSSHIM_TESTS_PROGS_H */
