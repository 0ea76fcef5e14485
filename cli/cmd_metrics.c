/* cmd_metrics.c: `tlsshim metrics [--listen ADDR:PORT] [--dir DIR]`: the
 * counters of every process under the shim in the Prometheus text
 * exposition format (version 0.0.4), printed once or served at /metrics by
 * a small blocking HTTP/1.x server, one request per connection. */
#include "cli/cli.h"

#include <errno.h>
#include <netdb.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include "shim/status/statusfile.h"

/* A label value, escaped as the exposition format says. */
static void label_value(FILE *out, const char *v) {
  fputc('"', out);
  for (const char *p = v; *p != '\0'; p++) {
    if (*p == '\\' || *p == '"') {
      fprintf(out, "\\%c", *p);
    } else if (*p == '\n') {
      fputs("\\n", out);
    } else {
      fputc(*p, out);
    }
  }
  fputc('"', out);
}

static void family(FILE *out, const char *name, const char *type,
                   const char *help) {
  fprintf(out, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* name{pid="..",program=".."[,more] */
static void sample_start(FILE *out, const char *name,
                         const struct statusfile *f) {
  fprintf(out, "%s{pid=\"%d\",program=", name, f->h.pid);
  label_value(out, f->h.program);
}

static void label(FILE *out, const char *key, const char *v) {
  fprintf(out, ",%s=", key);
  label_value(out, v);
}

static void sample_end(FILE *out, uint64_t v) {
  fprintf(out, "} %llu\n", (unsigned long long)v);
}

static const char *rule_name(const struct statusfile *f, unsigned r) {
  return r < f->rule_count ? f->rules[r].name : "";
}

static size_t rule_count(const struct statusfile *f) {
  return f->rule_count < STATUSFILE_RULES ? f->rule_count : STATUSFILE_RULES;
}

static size_t combo_count(const struct statusfile *f) {
  return f->combo_count < STATUSFILE_COMBOS ? f->combo_count
                                            : STATUSFILE_COMBOS;
}

/* Whether rule |r| saw anything in direction |d|: its failure classes are
 * then all shown, zeros included, so that rates can be taken. */
static bool rule_active(const struct statusfile *f, unsigned r, int d) {
  const struct statusfile_rule *ru = &f->rules[r];
  if (ru->denied[d] || ru->plaintext[d] ||
      (d == STATUSFILE_INBOUND &&
       (ru->permissive_tls || ru->permissive_plaintext))) {
    return true;
  }
  for (int c = 0; c < STATUSFILE_CLASS_COUNT; c++) {
    if (ru->failed[d][c]) {
      return true;
    }
  }
  for (size_t i = 0; i < combo_count(f); i++) {
    if (f->combos[i].rule == r && f->combos[i].direction == d) {
      return true;
    }
  }
  return false;
}

void cli_metrics_write(FILE *out, const struct statusfile_snapshot *s,
                       size_t n) {
  family(out, "tlsshim_processes", "gauge",
         "Processes under the shim that have a status file.");
  fprintf(out, "tlsshim_processes %zu\n", n);

  family(out, "tlsshim_process_start_time_seconds", "gauge",
         "When the process under the shim started, in seconds since the "
         "epoch.");
  for (size_t p = 0; p < n; p++) {
    const struct statusfile *f = &s[p].f;
    sample_start(out, "tlsshim_process_start_time_seconds", f);
    fprintf(out, "} %.3f\n", (double)f->h.started_ms / 1000.0);
  }

  family(out, "tlsshim_connections_open", "gauge", "TLS connections open now.");
  for (size_t p = 0; p < n; p++) {
    const struct statusfile *f = &s[p].f;
    for (size_t r = 0; r < rule_count(f); r++) {
      for (int d = 0; d < 2; d++) {
        uint64_t open = 0;
        for (size_t i = 0; i < STATUSFILE_CONNS; i++) {
          open += f->conns[i].used && f->conns[i].rule == r &&
                  f->conns[i].direction == d;
        }
        if (open == 0 && !rule_active(f, (unsigned)r, d)) {
          continue;
        }
        sample_start(out, "tlsshim_connections_open", f);
        label(out, "rule", f->rules[r].name);
        label(out, "direction", cli_status_direction((unsigned)d));
        sample_end(out, open);
      }
    }
  }

  family(out, "tlsshim_connections_established_total", "counter",
         "TLS connections established, by what they negotiated.");
  for (size_t p = 0; p < n; p++) {
    const struct statusfile *f = &s[p].f;
    for (size_t i = 0; i < combo_count(f); i++) {
      const struct statusfile_combo *c = &f->combos[i];
      sample_start(out, "tlsshim_connections_established_total", f);
      label(out, "rule", rule_name(f, c->rule));
      label(out, "direction", cli_status_direction(c->direction));
      label(out, "version", c->version);
      label(out, "cipher", c->cipher);
      label(out, "group", c->group);
      label(out, "resumed", c->resumed ? "true" : "false");
      sample_end(out, c->count);
    }
  }

  family(out, "tlsshim_connections_failed_total", "counter",
         "TLS connections that failed, by reason class.");
  for (size_t p = 0; p < n; p++) {
    const struct statusfile *f = &s[p].f;
    for (size_t r = 0; r < rule_count(f); r++) {
      for (int d = 0; d < 2; d++) {
        if (!rule_active(f, (unsigned)r, d)) {
          continue;
        }
        for (int c = 0; c < STATUSFILE_CLASS_COUNT; c++) {
          sample_start(out, "tlsshim_connections_failed_total", f);
          label(out, "rule", f->rules[r].name);
          label(out, "direction", cli_status_direction((unsigned)d));
          label(out, "reason", statusfile_class_name(c));
          sample_end(out, f->rules[r].failed[d][c]);
        }
      }
    }
  }

  static const struct {
    const char *name, *help;
    size_t offset;
  } per_direction[] = {
      {"tlsshim_connections_denied_total",
       "Connections refused by a deny action.",
       offsetof(struct statusfile_rule, denied)},
      {"tlsshim_plaintext_decisions_total",
       "Connections let through in plaintext by a plaintext action.",
       offsetof(struct statusfile_rule, plaintext)},
  };
  for (size_t k = 0; k < 2; k++) {
    family(out, per_direction[k].name, "counter", per_direction[k].help);
    for (size_t p = 0; p < n; p++) {
      const struct statusfile *f = &s[p].f;
      for (size_t r = 0; r < rule_count(f); r++) {
        const uint64_t *v = (const uint64_t *)((const char *)&f->rules[r] +
                                               per_direction[k].offset);
        for (int d = 0; d < 2; d++) {
          if (v[d] == 0 && !rule_active(f, (unsigned)r, d)) {
            continue;
          }
          sample_start(out, per_direction[k].name, f);
          label(out, "rule", f->rules[r].name);
          label(out, "direction", cli_status_direction((unsigned)d));
          sample_end(out, v[d]);
        }
      }
    }
  }

  family(out, "tlsshim_permissive_decisions_total", "counter",
         "Decisions of permissive rules: a ClientHello served as TLS, or "
         "plaintext.");
  for (size_t p = 0; p < n; p++) {
    const struct statusfile *f = &s[p].f;
    for (size_t r = 0; r < rule_count(f); r++) {
      const struct statusfile_rule *ru = &f->rules[r];
      if (ru->permissive_tls == 0 && ru->permissive_plaintext == 0) {
        continue;
      }
      sample_start(out, "tlsshim_permissive_decisions_total", f);
      label(out, "rule", ru->name);
      label(out, "outcome", "tls");
      sample_end(out, ru->permissive_tls);
      sample_start(out, "tlsshim_permissive_decisions_total", f);
      label(out, "rule", ru->name);
      label(out, "outcome", "plaintext");
      sample_end(out, ru->permissive_plaintext);
    }
  }

  family(out, "tlsshim_reloads_total", "counter",
         "Policy reloads, accepted or rejected (the last good policy stays).");
  for (size_t p = 0; p < n; p++) {
    const struct statusfile *f = &s[p].f;
    sample_start(out, "tlsshim_reloads_total", f);
    label(out, "result", "accepted");
    sample_end(out, f->h.reloads_accepted);
    sample_start(out, "tlsshim_reloads_total", f);
    label(out, "result", "rejected");
    sample_end(out, f->h.reloads_rejected);
  }

  static const char *const bytes_names[2] = {"tlsshim_received_bytes_total",
                                             "tlsshim_sent_bytes_total"};
  static const char *const bytes_help[2] = {
      "Plaintext bytes the program read from TLS connections.",
      "Plaintext bytes the program wrote to TLS connections."};
  for (int k = 0; k < 2; k++) {
    family(out, bytes_names[k], "counter", bytes_help[k]);
    for (size_t p = 0; p < n; p++) {
      const struct statusfile *f = &s[p].f;
      for (size_t r = 0; r < rule_count(f); r++) {
        uint64_t in, sent;
        cli_status_rule_bytes(f, (uint32_t)r, &in, &sent);
        if (!rule_active(f, (unsigned)r, 0) &&
            !rule_active(f, (unsigned)r, 1)) {
          continue;
        }
        sample_start(out, bytes_names[k], f);
        label(out, "rule", f->rules[r].name);
        sample_end(out, k == 0 ? in : sent);
      }
    }
  }
}

/* ---- the HTTP server ---- */

static int listen_on(const char *spec) {
  char host[256];
  const char *colon = strrchr(spec, ':');
  if (colon == NULL || colon[1] == '\0') {
    cli_error("metrics: --listen wants ADDR:PORT, got '%s'", spec);
    return -1;
  }
  size_t hlen = (size_t)(colon - spec);
  if (hlen >= 2 && spec[0] == '[' && spec[hlen - 1] == ']') {
    spec++;
    hlen -= 2;
  }
  if (hlen >= sizeof(host)) {
    cli_error("metrics: address too long in '%s'", spec);
    return -1;
  }
  memcpy(host, spec, hlen);
  host[hlen] = '\0';
  struct addrinfo hints = {.ai_socktype = SOCK_STREAM,
                           .ai_flags = AI_PASSIVE | AI_NUMERICSERV};
  struct addrinfo *ai;
  int r = getaddrinfo(hlen ? host : NULL, colon + 1, &hints, &ai);
  if (r != 0) {
    cli_error("metrics: cannot use '%s': %s", spec, gai_strerror(r));
    return -1;
  }
  int fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
  int one = 1;
  if (fd < 0 ||
      setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) != 0 ||
      bind(fd, ai->ai_addr, ai->ai_addrlen) != 0 || listen(fd, 64) != 0) {
    cli_error("metrics: cannot listen on %s: %s", spec, strerror(errno));
    if (fd >= 0) {
      close(fd);
    }
    freeaddrinfo(ai);
    return -1;
  }
  freeaddrinfo(ai);
  struct sockaddr_storage ss;
  socklen_t len = sizeof(ss);
  char shown[NI_MAXHOST], port[NI_MAXSERV];
  if (getsockname(fd, (struct sockaddr *)&ss, &len) == 0 &&
      getnameinfo((struct sockaddr *)&ss, len, shown, sizeof(shown), port,
                  sizeof(port), NI_NUMERICHOST | NI_NUMERICSERV) == 0) {
    bool v6 = strchr(shown, ':') != NULL;
    fprintf(stderr, "tlsshim: serving metrics at http://%s%s%s:%s/metrics\n",
            v6 ? "[" : "", shown, v6 ? "]" : "", port);
  }
  return fd;
}

static void send_all(int fd, const char *p, size_t len) {
  while (len > 0) {
    ssize_t n = send(fd, p, len, MSG_NOSIGNAL);
    if (n <= 0) {
      if (n < 0 && errno == EINTR) {
        continue;
      }
      return;
    }
    p += n;
    len -= (size_t)n;
  }
}

static void respond(int fd, const char *status, const char *type,
                    const char *body, size_t body_len, bool head) {
  char hdr[256];
  int n = snprintf(hdr, sizeof(hdr),
                   "HTTP/1.1 %s\r\nContent-Type: %s\r\nContent-Length: "
                   "%zu\r\nConnection: close\r\n\r\n",
                   status, type, body_len);
  send_all(fd, hdr, (size_t)n);
  if (!head) {
    send_all(fd, body, body_len);
  }
}

/* One request: read the head (bounded in size and time), answer, close. */
static void serve_one(int fd, const char *dir) {
  struct timeval tv = {.tv_sec = 5};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  char req[8192];
  size_t got = 0;
  while (got < sizeof(req) - 1) {
    ssize_t n = recv(fd, req + got, sizeof(req) - 1 - got, 0);
    if (n <= 0) {
      return;
    }
    got += (size_t)n;
    req[got] = '\0';
    if (strstr(req, "\r\n\r\n") != NULL || strstr(req, "\n\n") != NULL) {
      break;
    }
  }
  req[got] = '\0';
  char method[16], target[1024];
  if (sscanf(req, "%15s %1023s", method, target) != 2) {
    const char *msg = "bad request\n";
    respond(fd, "400 Bad Request", "text/plain", msg, strlen(msg), false);
    return;
  }
  bool head = strcmp(method, "HEAD") == 0;
  if (!head && strcmp(method, "GET") != 0) {
    const char *msg = "only GET and HEAD\n";
    respond(fd, "405 Method Not Allowed", "text/plain", msg, strlen(msg),
            false);
    return;
  }
  char *q = strchr(target, '?');
  if (q != NULL) {
    *q = '\0';
  }
  if (strcmp(target, "/metrics") != 0) {
    const char *msg = "not found: the metrics are at /metrics\n";
    respond(fd, "404 Not Found", "text/plain", msg, strlen(msg), head);
    return;
  }
  struct statusfile_snapshot *s = NULL;
  size_t count = 0;
  char *body = NULL;
  size_t body_len = 0;
  FILE *mem = open_memstream(&body, &body_len);
  if (mem == NULL || cli_status_read(dir, NULL, 0, &s, &count) != 0) {
    if (mem != NULL) {
      fclose(mem);
    }
    free(body);
    const char *msg = "cannot read the status directory\n";
    respond(fd, "500 Internal Server Error", "text/plain", msg, strlen(msg),
            head);
    return;
  }
  cli_metrics_write(mem, s, count);
  fclose(mem);
  free(s);
  respond(fd, "200 OK", "text/plain; version=0.0.4; charset=utf-8", body,
          body_len, head);
  free(body);
}

int cli_metrics(int argc, char **argv) {
  const char *listen_spec = NULL, *dir_opt = NULL;
  for (int i = 1; i < argc; i++) {
    if (strcmp(argv[i], "--listen") == 0 && i + 1 < argc) {
      listen_spec = argv[++i];
    } else if (strcmp(argv[i], "--dir") == 0 && i + 1 < argc) {
      dir_opt = argv[++i];
    } else {
      return cli_usage_error("metrics: unexpected argument '%s'", argv[i]);
    }
  }
  char dir[512];
  cli_status_dir(dir_opt, dir, sizeof(dir));
  if (listen_spec == NULL) {
    struct statusfile_snapshot *s;
    size_t n;
    if (cli_status_read(dir, NULL, 0, &s, &n) != 0) {
      return CLI_EXIT_FAIL;
    }
    cli_metrics_write(stdout, s, n);
    free(s);
    return CLI_EXIT_OK;
  }
  int lfd = listen_on(listen_spec);
  if (lfd < 0) {
    return CLI_EXIT_FAIL;
  }
  signal(SIGPIPE, SIG_IGN);
  for (;;) {
    int fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
    if (fd < 0) {
      if (errno == EINTR || errno == ECONNABORTED || errno == EMFILE ||
          errno == ENFILE) {
        continue;
      }
      cli_error("metrics: accept: %s", strerror(errno));
      close(lfd);
      return CLI_EXIT_FAIL;
    }
    serve_one(fd, dir);
    close(fd);
  }
}
