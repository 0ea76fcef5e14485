/* hostile_close_while_read.c: thread A blocks in read() on a connected
 * socket while thread B closes it; A must come back (an error or a count),
 * the process must not crash or hang.
 *
 * usage: hostile_close_while_read HOST PORT {nudge|rcvtimeo}
 *   nudge:    A blocks without a timeout; after "closed" the test makes the
 *             peer send data, which wakes A as it would without the shim.
 *   rcvtimeo: A has SO_RCVTIMEO 2 s and must return by then.
 * Prints "closed" when B has closed the socket, then "reader: read=N" or
 * "reader: errno=NAME". Exits 0, or 1 if A is still blocked 15 s later. */
#include <errno.h>
#include <netdb.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "progs.h"

static int sock = -1;
static pid_t reader_tid;
static ssize_t reader_ret;
static int reader_errno;

static void *reader(void *arg) {
  (void)arg;
  __atomic_store_n(&reader_tid, (pid_t)syscall(SYS_gettid), __ATOMIC_SEQ_CST);
  char buf[256];
  ssize_t r = read(sock, buf, sizeof(buf));
  reader_errno = r < 0 ? errno : 0;
  reader_ret = r;
  return NULL;
}

/* True when thread |tid| sleeps in a system call that waits for I/O
 * (read, poll, ppoll, select, pselect6, epoll_wait, epoll_pwait, recvfrom). */
static int blocked_in_io(pid_t tid) {
  char path[64], buf[256];
  snprintf(path, sizeof(path), "/proc/self/task/%d/stat", (int)tid);
  FILE *f = fopen(path, "r");
  if (f == NULL) {
    return 0;
  }
  size_t n = fread(buf, 1, sizeof(buf) - 1, f);
  fclose(f);
  buf[n] = '\0';
  const char *p = strrchr(buf, ')');
  if (p == NULL || p[1] == '\0' || p[2] != 'S') {
    return 0;
  }
  snprintf(path, sizeof(path), "/proc/self/task/%d/syscall", (int)tid);
  f = fopen(path, "r");
  if (f == NULL) {
    return 0;
  }
  long nr = -1;
  int ok = fscanf(f, "%ld", &nr);
  fclose(f);
  if (ok != 1) {
    return 0;
  }
  return nr == SYS_read || nr == SYS_poll || nr == SYS_ppoll ||
         nr == SYS_select || nr == SYS_pselect6 || nr == SYS_epoll_wait ||
         nr == SYS_epoll_pwait || nr == SYS_recvfrom;
}

int main(int argc, char **argv) {
  if (argc != 4) {
    fprintf(stderr, "usage: hostile_close_while_read HOST PORT {nudge|rcvtimeo}\n");
    return 2;
  }
  alarm(60);
  struct addrinfo hints, *res = NULL;
  memset(&hints, 0, sizeof(hints));
  hints.ai_socktype = SOCK_STREAM;
  int rc = getaddrinfo(argv[1], argv[2], &hints, &res);
  if (rc != 0) {
    fprintf(stderr, "getaddrinfo: %s\n", gai_strerror(rc));
    return 2;
  }
  sock = socket(res->ai_family, SOCK_STREAM, 0);
  if (sock < 0 || connect(sock, res->ai_addr, res->ai_addrlen) != 0) {
    fprintf(stderr, "connect: %s\n", strerror(errno));
    return 2;
  }
  freeaddrinfo(res);
  if (strcmp(argv[3], "rcvtimeo") == 0) {
    struct timeval tv = {2, 0};
    if (setsockopt(sock, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)) != 0) {
      fprintf(stderr, "setsockopt: %s\n", strerror(errno));
      return 2;
    }
  }
  pthread_t t;
  if (pthread_create(&t, NULL, reader, NULL) != 0) {
    fprintf(stderr, "pthread_create failed\n");
    return 2;
  }
  /* Wait (bounded) until the reader sleeps in a blocking call. */
  int64_t deadline = now_ms() + 5000;
  pid_t tid = 0;
  while (now_ms() < deadline) {
    tid = __atomic_load_n(&reader_tid, __ATOMIC_SEQ_CST);
    if (tid != 0 && blocked_in_io(tid)) {
      break;
    }
    usleep(2000);
  }
  if (tid == 0 || !blocked_in_io(tid)) {
    fprintf(stderr, "reader thread never blocked in a read\n");
    return 2;
  }
  if (close(sock) != 0) {
    printf("close: %s\n", strerror(errno));
  }
  printf("closed\n");
  fflush(stdout);
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  ts.tv_sec += 15;
  rc = pthread_timedjoin_np(t, NULL, &ts);
  if (rc != 0) {
    printf("reader: hang\n");
    fflush(stdout);
    _exit(1);
  }
  if (reader_ret < 0) {
    const char *n = strerrorname_np(reader_errno);
    printf("reader: errno=%s\n", n != NULL ? n : "EUNKNOWN");
  } else {
    printf("reader: read=%zd\n", reader_ret);
  }
  return 0;
}
