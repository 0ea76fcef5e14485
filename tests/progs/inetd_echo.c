/* inetd_echo.c: an inetd-style echo on fd 0/1; with --listen it is its own
 * tiny inetd: accept, fork, dup2 the socket over 0 and 1, echo. */
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "progs.h"

static void on_alarm(int sig) {
  static const char msg[] = "inetd_echo: timeout: exiting (alarm)\n";
  ssize_t r = write(2, msg, sizeof(msg) - 1);
  (void)r;
  (void)sig;
  _exit(3);
}

/* Echoes fd 0 to fd 1 until EOF; then half-closes fd 1 if it is a socket.
 * Returns the exit status. */
static int echo_stdio(void) {
  char buf[16384];
  for (;;) {
    ssize_t r = read(0, buf, sizeof(buf));
    if (r < 0) {
      if (errno == EINTR) {
        continue;
      }
      fprintf(stderr, "inetd_echo: read: %s (%s)\n", errname(errno),
              strerror(errno));
      return 1;
    }
    if (r == 0) {
      break;
    }
    ssize_t off = 0;
    while (off < r) {
      ssize_t w = write(1, buf + off, (size_t)(r - off));
      if (w < 0) {
        if (errno == EINTR) {
          continue;
        }
        fprintf(stderr, "inetd_echo: write: %s (%s)\n", errname(errno),
                strerror(errno));
        return 1;
      }
      off += w;
    }
  }
  if (shutdown(1, SHUT_WR) != 0 && errno != ENOTSOCK) {
    fprintf(stderr, "inetd_echo: shutdown: %s (%s)\n", errname(errno),
            strerror(errno));
    return 1;
  }
  return 0;
}

static int serve(const char *addr, const char *port, const char *ready_file,
                 long max_conns) {
  struct addrinfo hints, *res = NULL;
  memset(&hints, 0, sizeof(hints));
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE | AI_NUMERICHOST | AI_NUMERICSERV;
  int rc = getaddrinfo(addr, port, &hints, &res);
  if (rc != 0) {
    fprintf(stderr, "inetd_echo: getaddrinfo %s: %s\n", addr, gai_strerror(rc));
    return 1;
  }
  int lfd = socket(res->ai_family, SOCK_STREAM, 0);
  int one = 1;
  if (lfd < 0 || setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) != 0 ||
      bind(lfd, res->ai_addr, res->ai_addrlen) != 0 || listen(lfd, 64) != 0) {
    fprintf(stderr, "inetd_echo: listen %s:%s: %s\n", addr, port, strerror(errno));
    return 1;
  }
  freeaddrinfo(res);
  struct sockaddr_storage ss;
  socklen_t sl = sizeof(ss);
  if (getsockname(lfd, (struct sockaddr *)&ss, &sl) != 0) {
    fprintf(stderr, "inetd_echo: getsockname: %s\n", strerror(errno));
    return 1;
  }
  int bound = ss.ss_family == AF_INET6
                  ? ntohs(((struct sockaddr_in6 *)&ss)->sin6_port)
                  : ntohs(((struct sockaddr_in *)&ss)->sin_port);
  if (ready_file != NULL) {
    char tmp[4096];
    snprintf(tmp, sizeof(tmp), "%s.tmp", ready_file);
    FILE *f = fopen(tmp, "w");
    if (f == NULL || fprintf(f, "%d\n", bound) < 0 || fclose(f) != 0 ||
        rename(tmp, ready_file) != 0) {
      fprintf(stderr, "inetd_echo: ready file %s: %s\n", ready_file,
              strerror(errno));
      return 1;
    }
  }
  for (long n = 0; max_conns == 0 || n < max_conns; n++) {
    int fd = accept(lfd, NULL, NULL);
    if (fd < 0) {
      if (errno == EINTR || errno == ECONNABORTED) {
        n--;
        continue;
      }
      fprintf(stderr, "inetd_echo: accept: %s\n", strerror(errno));
      return 1;
    }
    pid_t pid = fork();
    if (pid < 0) {
      fprintf(stderr, "inetd_echo: fork: %s\n", strerror(errno));
      return 1;
    }
    if (pid == 0) {
      close(lfd);
      if (dup2(fd, 0) < 0 || dup2(fd, 1) < 0) {
        fprintf(stderr, "inetd_echo: dup2: %s\n", strerror(errno));
        _exit(1);
      }
      if (close(fd) != 0) {
        fprintf(stderr, "inetd_echo: close: %s\n", strerror(errno));
        _exit(1);
      }
      int st = echo_stdio();
      if (close(0) != 0 || close(1) != 0) {
        fprintf(stderr, "inetd_echo: close: %s\n", strerror(errno));
        st = 1;
      }
      _exit(st);
    }
    close(fd);
    while (waitpid(-1, NULL, WNOHANG) > 0) {
    }
  }
  while (wait(NULL) > 0) {
  }
  return 0;
}

int main(int argc, char **argv) {
  const char *port = NULL, *addr = "127.0.0.1", *ready = NULL;
  long max_conns = 0, timeout = 300;
  for (int i = 1; i < argc; i++) {
    if (i + 1 >= argc) {
      goto usage;
    }
    const char *v = argv[++i];
    if (strcmp(argv[i - 1], "--listen") == 0) {
      port = v;
    } else if (strcmp(argv[i - 1], "--addr") == 0) {
      addr = v;
    } else if (strcmp(argv[i - 1], "--ready-file") == 0) {
      ready = v;
    } else if (strcmp(argv[i - 1], "--max-conns") == 0) {
      max_conns = strtol(v, NULL, 10);
    } else if (strcmp(argv[i - 1], "--timeout") == 0) {
      timeout = strtol(v, NULL, 10);
    } else {
      goto usage;
    }
  }
  if (signal(SIGALRM, on_alarm) == SIG_ERR || signal(SIGPIPE, SIG_IGN) == SIG_ERR) {
    fprintf(stderr, "inetd_echo: signal: %s\n", strerror(errno));
    return 1;
  }
  if (timeout > 0) {
    alarm((unsigned)timeout);
  }
  if (port == NULL) {
    return echo_stdio();
  }
  return serve(addr, port, ready, max_conns);
usage:
  fprintf(stderr, "usage: inetd_echo [--listen P [--addr A] [--ready-file F] "
                  "[--max-conns N]] [--timeout S]\n");
  return 2;
}
