/* log.c: the event log (text or JSON lines) written with one real write(). */
#include "shim/log.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "shim/libc.h"

static int log_level = POLICY_LOG_WARN;
static int log_format_kind = POLICY_LOG_TEXT;
static int log_fd = STDERR_FILENO;

static const char *const level_names[] = {"error", "warn", "info", "debug"};

void log_configure(enum policy_log_level level, enum policy_log_format format,
                   const char *path) {
  int saved = errno;
  int fd = STDERR_FILENO;
  if (path != NULL && path[0] != '\0' && strcmp(path, "stderr") != 0) {
    fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
    if (fd < 0) {
      fd = STDERR_FILENO;
    }
  }
  int old = __atomic_exchange_n(&log_fd, fd, __ATOMIC_ACQ_REL);
  if (old != STDERR_FILENO && old != fd) {
    real_close(old);
  }
  __atomic_store_n(&log_level, (int)level, __ATOMIC_RELEASE);
  __atomic_store_n(&log_format_kind, (int)format, __ATOMIC_RELEASE);
  errno = saved;
}

bool log_enabled(enum policy_log_level level) {
  return (int)level <= __atomic_load_n(&log_level, __ATOMIC_ACQUIRE);
}

/* Appends to buf at *pos, never past len-2 (room for '\n' and NUL). */
static void put(char *buf, int len, int *pos, const char *s) {
  while (*s != '\0' && *pos < len - 2) {
    buf[(*pos)++] = *s++;
  }
  buf[*pos] = '\0';
}

/* utf8_char returns the length of the well-formed UTF-8 character at |s|
 * (1 for ASCII), or 0 if the bytes there are not one (a stray continuation
 * byte, a truncated or overlong sequence, a surrogate, past U+10FFFF), and
 * its code point in |*cp|. */
static int utf8_char(const unsigned char *s, uint32_t *cp) {
  if (s[0] < 0x80) {
    *cp = s[0];
    return 1;
  }
  int n;
  uint32_t min;
  if (s[0] >= 0xc2 && s[0] <= 0xdf) {
    n = 2;
    min = 0x80;
    *cp = s[0] & 0x1f;
  } else if (s[0] >= 0xe0 && s[0] <= 0xef) {
    n = 3;
    min = 0x800;
    *cp = s[0] & 0x0f;
  } else if (s[0] >= 0xf0 && s[0] <= 0xf4) {
    n = 4;
    min = 0x10000;
    *cp = s[0] & 0x07;
  } else {
    return 0;
  }
  for (int i = 1; i < n; i++) {
    if ((s[i] & 0xc0) != 0x80) { /* also stops at the terminating NUL */
      return 0;
    }
    *cp = *cp << 6 | (s[i] & 0x3f);
  }
  if (*cp < min || *cp > 0x10ffff || (*cp >= 0xd800 && *cp <= 0xdfff)) {
    return 0;
  }
  return n;
}

/* needs_escape reports whether a character (|n| bytes, code point |cp|;
 * n == 0 for a byte that is not UTF-8) must be escaped: controls (C0, DEL
 * and C1), bytes that are not UTF-8, and U+2028/U+2029, which some readers
 * take for line breaks. */
static bool needs_escape(int n, uint32_t cp) {
  return n == 0 || cp < 0x20 || (cp >= 0x7f && cp <= 0x9f) || cp == 0x2028 ||
         cp == 0x2029;
}

/* Appends |s| as the inside of a JSON string: '"' and '\' escaped, and
 * every character needs_escape names as \u00XX (a byte XX that is not UTF-8
 * stands for itself as U+00XX), so the line is valid UTF-8 JSON whatever a
 * peer put in its SNI or certificate. */
static void put_json_escaped(char *buf, int len, int *pos, const char *s) {
  const unsigned char *c = (const unsigned char *)s;
  while (*c != '\0' && *pos < len - 8) {
    uint32_t cp;
    int n = utf8_char(c, &cp);
    if (*c == '"' || *c == '\\') {
      buf[(*pos)++] = '\\';
      buf[(*pos)++] = (char)*c;
      c++;
    } else if (needs_escape(n, cp)) {
      *pos += snprintf(buf + *pos, (size_t)(len - *pos), "\\u%04x",
                       n == 0 ? (unsigned)*c : (unsigned)cp);
      c += n == 0 ? 1 : n;
    } else {
      memcpy(buf + *pos, c, (size_t)n);
      *pos += n;
      c += n;
    }
  }
  buf[*pos] = '\0';
}

/* text_needs_quotes reports whether |value| must be quoted (and escaped as
 * in JSON) in a text line: it holds a space, '"', '=', '\', a control or a
 * byte that is not UTF-8, anything that could end the field or the line,
 * so that a peer's certificate cannot forge a log line. */
static bool text_needs_quotes(const char *value) {
  const unsigned char *c = (const unsigned char *)value;
  while (*c != '\0') {
    uint32_t cp;
    int n = utf8_char(c, &cp);
    if (needs_escape(n, cp) || *c == ' ' || *c == '"' || *c == '=' ||
        *c == '\\') {
      return true;
    }
    c += n == 0 ? 1 : n;
  }
  return false;
}

static void put_field(char *buf, int len, int *pos, enum policy_log_format fmt,
                      const char *key, const char *value) {
  if (value == NULL || value[0] == '\0') {
    return;
  }
  if (fmt == POLICY_LOG_JSON) {
    put(buf, len, pos, ",\"");
    put(buf, len, pos, key);
    put(buf, len, pos, "\":\"");
    put_json_escaped(buf, len, pos, value);
    put(buf, len, pos, "\"");
  } else {
    put(buf, len, pos, " ");
    put(buf, len, pos, key);
    put(buf, len, pos, "=");
    /* Values with spaces (reasons, subjects) are quoted in text form. */
    if (text_needs_quotes(value)) {
      put(buf, len, pos, "\"");
      put_json_escaped(buf, len, pos, value);
      put(buf, len, pos, "\"");
    } else {
      put(buf, len, pos, value);
    }
  }
}

int log_format_event(const struct log_event *ev, enum policy_log_format fmt,
                     char *buf, int buf_len) {
  struct timeval tv;
  gettimeofday(&tv, NULL);
  struct tm tm;
  gmtime_r(&tv.tv_sec, &tm);
  char ts[40];
  snprintf(ts, sizeof(ts), "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ",
           tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour,
           tm.tm_min, tm.tm_sec, (int)(tv.tv_usec / 1000));
  const char *level = level_names[ev->level <= POLICY_LOG_DEBUG ? ev->level : 0];
  char pid[16];
  snprintf(pid, sizeof(pid), "%d", (int)getpid());
  int pos = 0;
  buf[0] = '\0';
  if (fmt == POLICY_LOG_JSON) {
    put(buf, buf_len, &pos, "{\"ts\":\"");
    put(buf, buf_len, &pos, ts);
    put(buf, buf_len, &pos, "\",\"level\":\"");
    put(buf, buf_len, &pos, level);
    put(buf, buf_len, &pos, "\",\"pid\":");
    put(buf, buf_len, &pos, pid);
  } else {
    put(buf, buf_len, &pos, ts);
    put(buf, buf_len, &pos, " tlsshim[");
    put(buf, buf_len, &pos, pid);
    put(buf, buf_len, &pos, "] ");
    put(buf, buf_len, &pos, level);
  }
  put_field(buf, buf_len, &pos, fmt, "event", ev->event);
  put_field(buf, buf_len, &pos, fmt, "direction", ev->direction);
  put_field(buf, buf_len, &pos, fmt, "rule", ev->rule);
  put_field(buf, buf_len, &pos, fmt, "local", ev->local);
  put_field(buf, buf_len, &pos, fmt, "peer", ev->peer);
  put_field(buf, buf_len, &pos, fmt, "name", ev->name);
  put_field(buf, buf_len, &pos, fmt, "version", ev->version);
  put_field(buf, buf_len, &pos, fmt, "cipher", ev->cipher);
  put_field(buf, buf_len, &pos, fmt, "group", ev->group);
  if (ev->resumed >= 0) {
    if (fmt == POLICY_LOG_JSON) {
      put(buf, buf_len, &pos, ev->resumed ? ",\"resumed\":true" : ",\"resumed\":false");
    } else {
      put(buf, buf_len, &pos, ev->resumed ? " resumed=yes" : " resumed=no");
    }
  }
  put_field(buf, buf_len, &pos, fmt, "peer_identity", ev->peer_identity);
  put_field(buf, buf_len, &pos, fmt, "reason", ev->reason);
  if (fmt == POLICY_LOG_JSON) {
    put(buf, buf_len, &pos, "}");
  }
  buf[pos++] = '\n';
  buf[pos] = '\0';
  return pos;
}

void log_emit(const struct log_event *ev) {
  if (!log_enabled(ev->level)) {
    return;
  }
  int saved = errno;
  char line[4096];
  int n = log_format_event(
      ev, (enum policy_log_format)__atomic_load_n(&log_format_kind, __ATOMIC_ACQUIRE),
      line, sizeof(line));
  int fd = __atomic_load_n(&log_fd, __ATOMIC_ACQUIRE);
  /* One write per line: lines of concurrent threads never interleave. */
  ssize_t w = real_write(fd, line, (size_t)n);
  (void)w;
  errno = saved;
}

void log_msg(enum policy_log_level level, const char *event, const char *fmt,
             ...) {
  if (!log_enabled(level)) {
    return;
  }
  int saved = errno;
  char reason[2048];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(reason, sizeof(reason), fmt, ap);
  va_end(ap);
  struct log_event ev = {.level = level, .event = event, .resumed = -1,
                         .reason = reason};
  log_emit(&ev);
  errno = saved;
}
