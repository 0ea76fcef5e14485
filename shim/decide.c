/* decide.c: applies the policy to a connect() or an accepted socket. */
#include "shim/internal.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include "shim/libc.h"
#include "shim/log.h"
#include "shim/status.h"

bool shim_sockaddr_to_endpoint(const struct sockaddr *sa, socklen_t len,
                               uint8_t addr[16], uint16_t *port) {
  if (sa == NULL) {
    return false;
  }
  if (sa->sa_family == AF_INET && len >= (socklen_t)sizeof(struct sockaddr_in)) {
    const struct sockaddr_in *in = (const struct sockaddr_in *)sa;
    memset(addr, 0, 10);
    addr[10] = 0xff;
    addr[11] = 0xff;
    memcpy(addr + 12, &in->sin_addr, 4);
    *port = ntohs(in->sin_port);
    return true;
  }
  /* The kernel takes an IPv6 address without sin6_scope_id (RFC 2133's
   * 24 bytes) as well as the full 28. */
  if (sa->sa_family == AF_INET6 &&
      len >= (socklen_t)offsetof(struct sockaddr_in6, sin6_scope_id)) {
    const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;
    memcpy(addr, &in6->sin6_addr, 16);
    *port = ntohs(in6->sin6_port);
    return true;
  }
  return false;
}

/* "a.b.c.d:port" or "[v6]:port" from an address already in text form. */
static void join_host_port(const char *text, uint16_t port, char *out,
                           size_t out_len) {
  if (strchr(text, ':') != NULL) {
    snprintf(out, out_len, "[%s]:%u", text, port);
  } else {
    snprintf(out, out_len, "%s:%u", text, port);
  }
}

void shim_format_endpoint(const uint8_t addr[16], uint16_t port, char *out,
                          size_t out_len) {
  char text[64];
  policy_format_address(addr, text, sizeof(text));
  join_host_port(text, port, out, out_len);
}

/* Only TCP sockets are ever TLS; MPTCP (which mptcpize and system MPTCP
 * policies give programs that asked for TCP) is TCP to the program. */
static bool is_tcp_socket(int fd) {
  int type = 0, proto = 0;
  socklen_t len = sizeof(type);
  if (real_getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len) != 0 ||
      type != SOCK_STREAM) {
    return false;
  }
  len = sizeof(proto);
  if (real_getsockopt(fd, SOL_SOCKET, SO_PROTOCOL, &proto, &len) != 0) {
    return false;
  }
  return proto == IPPROTO_TCP || proto == IPPROTO_MPTCP;
}

/* The address a connect() reaches, as the kernel treats it: 0.0.0.0 and ::
 * (also ::ffff:0.0.0.0) connect to the local host, 127.0.0.1 and ::1. An
 * IPv4-mapped address is already the IPv4 address in the policy's form. */
static void connect_target(uint8_t addr[16]) {
  static const uint8_t any6[16] = {0};
  static const uint8_t any4[16] = {[10] = 0xff, [11] = 0xff};
  if (memcmp(addr, any6, 16) == 0) {
    addr[15] = 1;
  } else if (memcmp(addr, any4, 16) == 0) {
    addr[12] = 127;
    addr[15] = 1;
  }
}

static void log_decision(enum policy_log_level level, const char *event,
                         const char *direction, const char *rule,
                         const char *local, const char *peer,
                         const char *name, const char *reason) {
  struct log_event ev = {.level = level, .event = event,
                         .direction = direction, .rule = rule,
                         .local = local, .peer = peer, .name = name,
                         .resumed = -1, .reason = reason};
  log_emit(&ev);
}

static const char *rule_label(const struct policy_rule *rule) {
  return rule != NULL ? rule->name : "default_action";
}

/* Applies |action| of |rule| (NULL: the default action) to the connection
 * on |fd|: deny and plaintext are logged and end here (-EACCES, or 0 with
 * no session); tls and permissive make a session that takes over the
 * reference to |cfg|. |cfg| is released in every other case. */
static int apply_action(struct tls_config *cfg, const struct policy_rule *rule,
                        enum policy_action action, int fd, bool is_server,
                        const char *local, const char *peer, const char *name,
                        struct session **out) {
  const char *direction = is_server ? "inbound" : "outbound";
  *out = NULL;
  if (action == POLICY_ACTION_DENY || action == POLICY_ACTION_PLAINTEXT) {
    bool deny = action == POLICY_ACTION_DENY;
    log_decision(deny ? POLICY_LOG_WARN : POLICY_LOG_DEBUG,
                 deny ? "denied" : "plaintext", direction, rule_label(rule),
                 local, peer, name, deny ? "policy action deny" : NULL);
    status_decision(deny ? STATUS_DENIED : STATUS_PLAINTEXT, rule_label(rule),
                    is_server);
    tls_config_unref(cfg);
    return deny ? -EACCES : 0;
  }
  struct session *s = session_new();
  if (s == NULL) {
    tls_config_unref(cfg);
    return -ENOMEM;
  }
  s->config = cfg; /* the reference passes to the session */
  s->rule = rule;
  s->fd = fd;
  s->is_server = is_server;
  s->timeout_ms = rule->tls.handshake_timeout_ms;
  snprintf(s->rule_name, sizeof(s->rule_name), "%s", rule->name);
  snprintf(s->local, sizeof(s->local), "%s", local != NULL ? local : "");
  snprintf(s->peer, sizeof(s->peer), "%s", peer);
  *out = s;
  return 0;
}

/* The first rule, in file order, that matches the dialled address with
 * any name resolved to it (this thread's latest first): a later lookup of
 * another name to the same address adds a candidate and never takes a
 * rule away. |name| gets the candidate that matched (or this thread's
 * latest), "" with none. */
static const struct policy_rule *match_outbound(const struct policy *p,
                                                const uint8_t addr[16],
                                                uint16_t port, char *name) {
  char cand[NAMES_MAX_CANDIDATES][256];
  size_t n = names_candidates(addr, cand, NAMES_MAX_CANDIDATES);
  struct policy_endpoint ep = {.port = port, .name = NULL};
  memcpy(ep.addr, addr, 16);
  if (n == 0) {
    return policy_match(p, POLICY_OUTBOUND, &ep);
  }
  const struct policy_rule *best = NULL;
  size_t best_i = 0;
  for (size_t i = 0; i < n; i++) {
    ep.name = cand[i];
    const struct policy_rule *r = policy_match(p, POLICY_OUTBOUND, &ep);
    if (r != NULL && (best == NULL || r->index < best->index)) {
      best = r;
      best_i = i;
    }
  }
  snprintf(name, 256, "%s", cand[best_i]);
  return best;
}

int shim_decide_outbound(int fd, const struct sockaddr *addr, socklen_t len,
                         struct session **out_session) {
  *out_session = NULL;
  uint8_t peer_addr[16];
  uint16_t port;
  if (shim_in_shim() || !shim_sockaddr_to_endpoint(addr, len, peer_addr, &port) ||
      !is_tcp_socket(fd)) {
    return 0;
  }
  connect_target(peer_addr);
  struct tls_config *cfg = shim_config_acquire();
  if (cfg == NULL) {
    return 0;
  }
  const struct policy *p = tls_config_policy(cfg);
  char name[256] = "";
  const struct policy_rule *rule = match_outbound(p, peer_addr, port, name);
  char ip[64], peer[64];
  policy_format_address(peer_addr, ip, sizeof(ip));
  join_host_port(ip, port, peer, sizeof(peer));
  struct session *s;
  int r = apply_action(cfg, rule, policy_action_of(p, rule), fd, false, NULL,
                       peer, name, &s);
  if (s == NULL) {
    return r;
  }
  /* The verified name: server_name, else what the program resolved, else
   * the IP address (no SNI). */
  const char *verify = rule->tls.server_name;
  if (verify == NULL && name[0] != '\0') {
    verify = name;
  }
  /* name= in the log is the name that was verified: none when peer_names
   * stands in for the name check (the identity it matched is logged). */
  snprintf(s->name, sizeof(s->name), "%s",
           verify != NULL && tls_checks_name(rule) ? verify : "");
  if (!rule->tls.verify_peer) {
    log_decision(POLICY_LOG_WARN, "insecure", "outbound", rule->name, NULL,
                 peer, s->name,
                 "verify_peer is false: the server is not authenticated");
  }
  r = session_start_tls(s, verify, ip, peer);
  if (r != 0) {
    session_unref(s);
    return r;
  }
  *out_session = s;
  return 0;
}

int shim_decide_inbound(int fd, struct session **out_session) {
  *out_session = NULL;
  struct sockaddr_storage local_sa, peer_sa;
  socklen_t llen = sizeof(local_sa), plen = sizeof(peer_sa);
  uint8_t local_addr[16], peer_addr[16];
  uint16_t local_port, peer_port = 0;
  if (shim_in_shim() ||
      getsockname(fd, (struct sockaddr *)&local_sa, &llen) != 0 ||
      !shim_sockaddr_to_endpoint((struct sockaddr *)&local_sa, llen,
                                 local_addr, &local_port) ||
      !is_tcp_socket(fd)) {
    return 0;
  }
  struct tls_config *cfg = shim_config_acquire();
  if (cfg == NULL) {
    return 0;
  }
  const struct policy *p = tls_config_policy(cfg);
  struct policy_endpoint ep = {.port = local_port, .name = NULL};
  memcpy(ep.addr, local_addr, 16);
  const struct policy_rule *rule = policy_match(p, POLICY_INBOUND, &ep);
  enum policy_action action = policy_action_of(p, rule);
  char local[64], peer[64] = "";
  shim_format_endpoint(local_addr, local_port, local, sizeof(local));
  /* The peer's address is only for logs and sessions: an unselected
   * connection costs no extra system call unless debug logging wants it. */
  if ((action != POLICY_ACTION_PLAINTEXT || log_enabled(POLICY_LOG_DEBUG)) &&
      getpeername(fd, (struct sockaddr *)&peer_sa, &plen) == 0 &&
      shim_sockaddr_to_endpoint((struct sockaddr *)&peer_sa, plen, peer_addr,
                                &peer_port)) {
    shim_format_endpoint(peer_addr, peer_port, peer, sizeof(peer));
  }
  struct session *s;
  int r = apply_action(cfg, rule, action, fd, true, local, peer, NULL, &s);
  if (s == NULL) {
    return r;
  }
  if (action == POLICY_ACTION_PERMISSIVE) {
    s->kind = SESSION_DETECT;
  } else {
    r = session_start_tls(s, NULL, NULL, NULL);
    if (r != 0) {
      session_unref(s);
      return r;
    }
  }
  *out_session = s;
  return 0;
}
