/* hostile_emfile_server.c: a plain poll() echo server that survives EMFILE
 * at accept the way careful servers do: it reports the error, stops polling
 * the listener, and resumes when one of its connections closes.
 *
 * usage: hostile_emfile_server --ready-file F
 * Listens on 127.0.0.1 (ephemeral port, written to F). Prints
 * "accept: EMFILE" on stdout each time accept fails so, and
 * "accepted N" after each successful accept. Exits after 600 s. */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define MAX_CONNS 1024

static void die(const char *what) {
  fprintf(stderr, "hostile_emfile_server: %s: %s\n", what, strerror(errno));
  exit(1);
}

int main(int argc, char **argv) {
  if (argc != 3 || strcmp(argv[1], "--ready-file") != 0) {
    fprintf(stderr, "usage: hostile_emfile_server --ready-file F\n");
    return 2;
  }
  alarm(600);
  signal(SIGPIPE, SIG_IGN);
  int lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
  if (lfd < 0) {
    die("socket");
  }
  struct sockaddr_in a;
  memset(&a, 0, sizeof(a));
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t al = sizeof(a);
  if (bind(lfd, (struct sockaddr *)&a, sizeof(a)) != 0 || listen(lfd, 64) != 0 ||
      getsockname(lfd, (struct sockaddr *)&a, &al) != 0) {
    die("listen");
  }
  char tmp[4096];
  snprintf(tmp, sizeof(tmp), "%s.tmp", argv[2]);
  FILE *f = fopen(tmp, "w");
  if (f == NULL || fprintf(f, "%d\n", ntohs(a.sin_port)) < 0 || fclose(f) != 0 ||
      rename(tmp, argv[2]) != 0) {
    die("ready file");
  }
  struct pollfd pfds[MAX_CONNS + 1];
  int conns[MAX_CONNS];
  int nconns = 0;
  bool paused = false;
  long accepted = 0;
  for (;;) {
    pfds[0].fd = paused ? -1 : lfd;
    pfds[0].events = POLLIN;
    for (int i = 0; i < nconns; i++) {
      pfds[i + 1].fd = conns[i];
      pfds[i + 1].events = POLLIN;
    }
    int n = poll(pfds, (nfds_t)nconns + 1, -1);
    if (n < 0) {
      if (errno == EINTR) {
        continue;
      }
      die("poll");
    }
    for (int i = nconns - 1; i >= 0; i--) {
      if (pfds[i + 1].revents == 0) {
        continue;
      }
      char buf[4096];
      ssize_t r = read(conns[i], buf, sizeof(buf));
      if (r < 0 && (errno == EAGAIN || errno == EINTR)) {
        continue;
      }
      if (r > 0 && write(conns[i], buf, (size_t)r) == r) {
        continue;
      }
      /* EOF, an error, or a short write: done with this one. */
      close(conns[i]);
      conns[i] = conns[--nconns];
      paused = false;
      printf("closed, %d open\n", nconns);
      fflush(stdout);
    }
    if (pfds[0].revents & POLLIN) {
      for (;;) {
        int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK);
        if (fd < 0) {
          if (errno == EMFILE || errno == ENFILE) {
            printf("accept: %s\n", errno == EMFILE ? "EMFILE" : "ENFILE");
            fflush(stdout);
            paused = true;
          } else if (errno != EAGAIN && errno != EINTR && errno != ECONNABORTED) {
            die("accept");
          }
          break;
        }
        if (nconns == MAX_CONNS) {
          close(fd);
          continue;
        }
        conns[nconns++] = fd;
        printf("accepted %ld\n", ++accepted);
        fflush(stdout);
      }
    }
  }
}
