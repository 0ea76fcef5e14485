/* cmd_explain.c: `tlsshim explain`: which rule a connection falls under and
 * the TLS settings it gets, as the shim would decide. */
#include "cli/cli.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#define MAX_ADDRS 32

/* One address of the connection and the rule it matched (NULL: default). */
struct hit {
  uint8_t addr[16];
  const struct policy_rule *rule;
};

/* Parses a decimal port 1..65535. */
static bool parse_port(const char *s, uint16_t *out) {
  if (*s == '\0' || strlen(s) > 5) {
    return false;
  }
  unsigned v = 0;
  for (; *s != '\0'; s++) {
    if (*s < '0' || *s > '9') {
      return false;
    }
    v = v * 10 + (unsigned)(*s - '0');
  }
  if (v == 0 || v > 65535) {
    return false;
  }
  *out = (uint16_t)v;
  return true;
}

/* Splits "HOST:PORT" or "[V6]:PORT" into |host| and |port|. Without a colon
 * |host| is "" when |host_optional|. Returns 0 or -1 with |why| set. */
static int split_endpoint(const char *text, bool host_optional, char *host,
                          size_t host_len, uint16_t *port, const char **why) {
  const char *port_text;
  size_t hlen;
  if (text[0] == '[') {
    const char *close = strchr(text, ']');
    if (close == NULL || close[1] != ':') {
      *why = "expected [ADDRESS]:PORT";
      return -1;
    }
    hlen = (size_t)(close - text - 1);
    memcpy(host, text + 1, hlen < host_len ? hlen : 0);
    port_text = close + 2;
  } else {
    const char *colon = strrchr(text, ':');
    if (colon == NULL) {
      if (!host_optional) {
        *why = "expected HOST:PORT";
        return -1;
      }
      hlen = 0;
      port_text = text;
    } else {
      if (memchr(text, ':', (size_t)(colon - text)) != NULL) {
        *why = "write an IPv6 address in brackets, as [::1]:443";
        return -1;
      }
      hlen = (size_t)(colon - text);
      memcpy(host, text, hlen < host_len ? hlen : 0);
      port_text = colon + 1;
    }
  }
  if (hlen >= host_len || (hlen == 0 && port_text != text)) {
    *why = hlen == 0 ? "empty host" : "host too long";
    return -1;
  }
  host[hlen] = '\0';
  if (!parse_port(port_text, port)) {
    *why = "the port must be a number from 1 to 65535";
    return -1;
  }
  return 0;
}

/* First rule for |dir| that matches |ep| among the rules that do not restrict
 * addresses: for a connection whose address is not known. Each rule is
 * offered to policy_match alone so that the matching logic stays in one
 * place. */
static const struct policy_rule *
match_any_address(const struct policy *p, enum policy_direction dir,
                  const struct policy_endpoint *ep) {
  for (size_t i = 0; i < p->rule_count; i++) {
    const struct policy_rule *r = &p->rules[i];
    if (r->direction != dir || r->address_count > 0) {
      continue;
    }
    struct policy one = *p;
    one.rules = (struct policy_rule *)r;
    one.rule_count = 1;
    if (policy_match(&one, dir, ep) != NULL) {
      return r;
    }
  }
  return NULL;
}

/* Resolves |host| like a program would (getaddrinfo, any family, TCP) into
 * |out| as IPv6 or IPv4-mapped addresses, without duplicates. Returns the
 * count, or -1 with |why| set. */
static int resolve(const char *host, uint8_t out[][16], size_t max,
                   const char **why) {
  struct addrinfo hints;
  memset(&hints, 0, sizeof(hints));
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  struct addrinfo *res = NULL;
  int rc = getaddrinfo(host, NULL, &hints, &res);
  if (rc != 0) {
    *why = rc == EAI_SYSTEM ? strerror(errno) : gai_strerror(rc);
    return -1;
  }
  size_t n = 0;
  for (struct addrinfo *ai = res; ai != NULL && n < max; ai = ai->ai_next) {
    uint8_t a[16];
    if (ai->ai_family == AF_INET) {
      const struct sockaddr_in *sin = (const struct sockaddr_in *)ai->ai_addr;
      memset(a, 0, 10);
      a[10] = 0xff;
      a[11] = 0xff;
      memcpy(a + 12, &sin->sin_addr, 4);
    } else if (ai->ai_family == AF_INET6) {
      const struct sockaddr_in6 *sin6 =
          (const struct sockaddr_in6 *)ai->ai_addr;
      memcpy(a, &sin6->sin6_addr, 16);
    } else {
      continue;
    }
    bool dup = false;
    for (size_t i = 0; i < n && !dup; i++) {
      dup = memcmp(out[i], a, 16) == 0;
    }
    if (!dup) {
      memcpy(out[n++], a, 16);
    }
  }
  freeaddrinfo(res);
  if (n == 0) {
    *why = "no IPv4 or IPv6 address";
    return -1;
  }
  return (int)n;
}

static void print_strings(const char *key, const struct policy_strings *s,
                          const char *if_empty) {
  printf("  %s: ", key);
  if (s->count == 0) {
    printf("%s\n", if_empty);
    return;
  }
  for (size_t i = 0; i < s->count; i++) {
    printf("%s%s", i > 0 ? ", " : "", s->items[i]);
  }
  printf("\n");
}

static const char *client_auth_name(enum policy_client_auth a) {
  switch (a) {
  case POLICY_CLIENT_AUTH_OPTIONAL:
    return "optional";
  case POLICY_CLIENT_AUTH_REQUIRED:
    return "required";
  case POLICY_CLIENT_AUTH_NONE:
  default:
    return "none";
  }
}

/* Prints the effective TLS settings of |r|. |name| is the host name the
 * program resolved (outbound), |addr| the peer address in text form. */
static void print_tls(const struct policy_rule *r, const char *name,
                      const char *addr) {
  const struct policy_tls *t = &r->tls;
  bool out = r->direction == POLICY_OUTBOUND;
  printf("tls:\n");
  printf("  versions: %s to %s\n", policy_version_name(t->min_version),
         policy_version_name(t->max_version));
  print_strings("ciphers (TLS1.2)", &t->ciphers, "(none)");
  printf("  ciphers (TLS1.3): fixed by BoringSSL\n");
  print_strings("groups", &t->groups, "(none)");
  if (t->identity != NULL) {
    printf("  identity: %s (cert %s, key %s%s%s)\n", t->identity->name,
           t->identity->cert, t->identity->key,
           t->identity->ocsp_staple ? ", ocsp_staple " : "",
           t->identity->ocsp_staple ? t->identity->ocsp_staple : "");
  } else {
    printf("  identity: none%s\n",
           out ? " (no client certificate is presented)" : "");
  }
  if (t->trust != NULL) {
    printf("  trust: %s (ca %s%s%s)\n", t->trust->name,
           t->trust->ca_system ? "system" : t->trust->ca,
           t->trust->crl ? ", crl " : "", t->trust->crl ? t->trust->crl : "");
  } else {
    printf("  trust: none\n");
  }
  if (out) {
    printf("  verify_peer: %s%s\n", t->verify_peer ? "true" : "false",
           t->verify_peer ? ""
                          : " (encryption only: the server is not "
                            "authenticated; warned at every connection)");
    printf("  client_auth: not used outbound\n");
    printf("  server_name: %s\n", t->server_name ? t->server_name : "(none)");
    if (t->server_name != NULL) {
      printf("  verified name: %s (sent as SNI)\n", t->server_name);
    } else if (name != NULL) {
      printf("  verified name: %s (the name the program resolved; sent as "
             "SNI)\n",
             name);
    } else {
      printf("  verified name: %s (checked against IP SANs; no SNI)\n", addr);
    }
  } else {
    printf("  verify_peer: not used inbound (see client_auth)\n");
    printf("  client_auth: %s\n", client_auth_name(t->client_auth));
    printf("  server_name: not used inbound\n");
  }
  print_strings("peer_names", &t->peer_names,
                out ? "(any: every certificate that chains to trust and "
                      "matches the verified name)"
                    : "(any: every certificate that chains to trust)");
  print_strings("alpn", &t->alpn, "(none)");
  printf("  handshake_timeout_ms: %d\n", t->handshake_timeout_ms);
  printf("  session_resumption: %s\n",
         t->session_resumption ? "true" : "false");
  if (t->trust != NULL && t->trust->crl != NULL) {
    printf("  crl_check: %s\n",
           t->crl_check == POLICY_CRL_CHAIN ? "chain" : "leaf");
  } else {
    printf("  crl_check: off (the trust has no crl)\n");
  }
}

/* Prints the decision for |rule| (NULL: the default action). */
static void print_decision(const struct policy *p, enum policy_direction dir,
                           const struct policy_rule *rule, const char *name,
                           const char *addr) {
  enum policy_action a = policy_action_of(p, rule);
  printf("action: %s\n", policy_action_name(a));
  bool out = dir == POLICY_OUTBOUND;
  switch (a) {
  case POLICY_ACTION_PLAINTEXT:
    printf("  the connection is left alone: no TLS\n");
    break;
  case POLICY_ACTION_DENY:
    printf(out ? "  connect() fails with EACCES and nothing is sent\n"
               : "  the connection is closed before accept() returns it\n");
    break;
  case POLICY_ACTION_PERMISSIVE:
    printf("  a TLS ClientHello is served with the settings below; anything "
           "else passes as plaintext\n");
    print_tls(rule, name, addr);
    break;
  case POLICY_ACTION_TLS:
    print_tls(rule, name, addr);
    break;
  }
}

static void print_match(const struct policy_rule *rule) {
  if (rule != NULL) {
    printf("match: rule '%s' (rule %zu, line %d)", rule->name, rule->index + 1,
           rule->pos.line);
  } else {
    printf("match: no rule; default_action applies");
  }
  printf("\n");
}

/* Prints the start of the "via" line, naming what the match was made on. */
static void print_via(const char *name, bool with_address) {
  printf("  via");
  if (name != NULL) {
    printf(" name %s%s", name, with_address ? "," : "");
  }
  if (with_address) {
    printf(" address");
  }
}

int cli_explain(int argc, char **argv) {
  const char *policy_path = NULL;
  const char *args[2];
  int nargs = 0;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    if (strcmp(a, "-p") == 0 || strcmp(a, "--policy") == 0) {
      if (i + 1 >= argc) {
        return cli_usage_error("explain: %s needs a value", a);
      }
      policy_path = argv[++i];
    } else if (strncmp(a, "--policy=", 9) == 0) {
      policy_path = a + 9;
    } else if (a[0] == '-' && a[1] != '\0') {
      return cli_usage_error("explain: unknown option '%s'", a);
    } else if (nargs < 2) {
      args[nargs++] = a;
    } else {
      return cli_usage_error("explain: unexpected argument '%s'", a);
    }
  }
  if (nargs < 2) {
    return cli_usage_error(nargs == 0 ? "explain: missing direction "
                                        "(outbound or inbound)"
                                      : "explain: missing endpoint");
  }
  enum policy_direction dir;
  if (strcmp(args[0], "outbound") == 0) {
    dir = POLICY_OUTBOUND;
  } else if (strcmp(args[0], "inbound") == 0) {
    dir = POLICY_INBOUND;
  } else {
    return cli_usage_error("explain: unknown direction '%s' (expected "
                           "outbound or inbound)",
                           args[0]);
  }
  bool out = dir == POLICY_OUTBOUND;
  char host[256];
  uint16_t port = 0;
  const char *why = NULL;
  if (split_endpoint(args[1], !out, host, sizeof(host), &port, &why) < 0) {
    return cli_usage_error("explain: bad %s endpoint '%s': %s", args[0],
                           args[1], why);
  }
  uint8_t addrs[MAX_ADDRS][16];
  int naddrs = 0;
  const char *name = NULL;
  if (host[0] != '\0') {
    if (policy_parse_address(host, addrs[0])) {
      naddrs = 1;
    } else if (!out) {
      return cli_usage_error("explain: bad inbound endpoint '%s': the local "
                             "address must be an IP address",
                             args[1]);
    } else {
      name = host;
    }
  }

  if (policy_path == NULL) {
    policy_path = cli_default_policy();
  }
  struct tls_config *cfg = NULL;
  if (cli_load_config(policy_path, true, &cfg) < 0) {
    return CLI_EXIT_FAIL;
  }
  const struct policy *p = tls_config_policy(cfg);

  printf("policy: %s\n", p->path);
  printf("connection: %s %s\n", policy_direction_name(dir), args[1]);
  if (name != NULL) {
    naddrs = resolve(name, addrs, MAX_ADDRS, &why);
    if (naddrs < 0) {
      printf("resolved: %s: cannot resolve (%s); matching by name only, "
             "rules that list addresses are skipped\n",
             name, why);
      naddrs = 0;
    } else {
      printf("resolved: %s ->", name);
      for (int i = 0; i < naddrs; i++) {
        char buf[64];
        printf("%s %s", i > 0 ? "," : "",
               policy_format_address(addrs[i], buf, sizeof(buf)));
      }
      printf("\n");
    }
  } else if (naddrs == 0) {
    printf("local address: any (rules that list addresses are skipped)\n");
  }

  struct policy_endpoint ep;
  memset(&ep, 0, sizeof(ep));
  ep.port = port;
  ep.name = name;
  if (naddrs == 0) {
    const struct policy_rule *rule = match_any_address(p, dir, &ep);
    print_match(rule);
    if (name != NULL) {
      print_via(name, false);
      printf("\n");
    }
    print_decision(p, dir, rule, name, "(unknown address)");
    tls_config_unref(cfg);
    return CLI_EXIT_OK;
  }

  /* Each address may match a different rule: print one block per rule,
   * naming the addresses that led to it. */
  struct hit hits[MAX_ADDRS];
  for (int i = 0; i < naddrs; i++) {
    memcpy(ep.addr, addrs[i], 16);
    memcpy(hits[i].addr, addrs[i], 16);
    hits[i].rule = policy_match(p, dir, &ep);
  }
  bool done[MAX_ADDRS] = {false};
  bool first = true;
  for (int i = 0; i < naddrs; i++) {
    if (done[i]) {
      continue;
    }
    if (!first) {
      printf("\n");
    }
    first = false;
    print_match(hits[i].rule);
    print_via(name, true);
    for (int j = i; j < naddrs; j++) {
      if (!done[j] && hits[j].rule == hits[i].rule) {
        char buf[64];
        printf("%s %s", j > i ? "," : "",
               policy_format_address(hits[j].addr, buf, sizeof(buf)));
        done[j] = true;
      }
    }
    printf("\n");
    char buf[64];
    print_decision(p, dir, hits[i].rule, name,
                   policy_format_address(hits[i].addr, buf, sizeof(buf)));
  }
  tls_config_unref(cfg);
  return CLI_EXIT_OK;
}
