/* match.c: which rule a connection falls under (first match wins), and the
 * names of enum values for logs and the CLI. */
#include <string.h>
#include <strings.h>

#include "policy/internal.h"
#include "policy/policy.h"

static bool cidr_contains(const struct policy_cidr *c, const uint8_t addr[16]) {
  int full = c->prefix / 8;
  if (memcmp(c->addr, addr, (size_t)full) != 0) {
    return false;
  }
  int rest = c->prefix % 8;
  if (rest == 0) {
    return true;
  }
  uint8_t mask = (uint8_t)(0xffu << (8 - rest));
  return (addr[full] & mask) == c->addr[full];
}

/* Length of |s| without one trailing dot. */
static size_t name_len(const char *s) {
  size_t n = strlen(s);
  if (n > 0 && s[n - 1] == '.') {
    n--;
  }
  return n;
}

bool policy_name_matches(const char *pattern, const char *name) {
  if (pattern == NULL || name == NULL) {
    return false;
  }
  size_t plen = name_len(pattern);
  size_t nlen = name_len(name);
  if (plen == 0 || nlen == 0) {
    return false;
  }
  if (plen >= 2 && pattern[0] == '*' && pattern[1] == '.') {
    /* "*.b.c" matches "a.b.c": the first label of |name| is non-empty and
     * holds no dot, the rest equals the pattern's rest. */
    const char *dot = memchr(name, '.', nlen);
    if (dot == NULL || dot == name) {
      return false;
    }
    size_t rest_len = nlen - (size_t)(dot - name);
    return rest_len == plen - 1 && strncasecmp(dot, pattern + 1, rest_len) == 0;
  }
  return plen == nlen && strncasecmp(pattern, name, nlen) == 0;
}

static bool rule_matches(const struct policy_rule *r,
                         const struct policy_endpoint *ep) {
  if (r->address_count > 0) {
    bool hit = false;
    for (size_t i = 0; i < r->address_count && !hit; i++) {
      hit = cidr_contains(&r->addresses[i], ep->addr);
    }
    if (!hit) {
      return false;
    }
  }
  if (r->port_count > 0) {
    bool hit = false;
    for (size_t i = 0; i < r->port_count && !hit; i++) {
      hit = ep->port >= r->ports[i].low && ep->port <= r->ports[i].high;
    }
    if (!hit) {
      return false;
    }
  }
  if (r->names.count > 0) {
    /* A rule that names hosts never matches a connection without a name. */
    if (ep->name == NULL) {
      return false;
    }
    bool hit = false;
    for (size_t i = 0; i < r->names.count && !hit; i++) {
      hit = policy_name_matches(r->names.items[i], ep->name);
    }
    if (!hit) {
      return false;
    }
  }
  return true;
}

const struct policy_rule *policy_match(const struct policy *p,
                                       enum policy_direction dir,
                                       const struct policy_endpoint *ep) {
  if (p == NULL || ep == NULL) {
    return NULL;
  }
  for (size_t i = 0; i < p->rule_count; i++) {
    const struct policy_rule *r = &p->rules[i];
    if (r->direction == dir && rule_matches(r, ep)) {
      return r;
    }
  }
  return NULL;
}

enum policy_action policy_action_of(const struct policy *p,
                                    const struct policy_rule *rule) {
  if (rule != NULL) {
    return rule->action;
  }
  return p != NULL ? p->default_action : POLICY_ACTION_DENY;
}

const char *policy_action_name(enum policy_action a) {
  switch (a) {
    case POLICY_ACTION_PLAINTEXT:
      return "plaintext";
    case POLICY_ACTION_DENY:
      return "deny";
    case POLICY_ACTION_TLS:
      return "tls";
    case POLICY_ACTION_PERMISSIVE:
      return "permissive";
  }
  return "unknown";
}

const char *policy_direction_name(enum policy_direction d) {
  switch (d) {
    case POLICY_OUTBOUND:
      return "outbound";
    case POLICY_INBOUND:
      return "inbound";
  }
  return "unknown";
}

const char *policy_version_name(uint16_t v) {
  switch (v) {
    case POLICY_TLS1_2:
      return "TLS1.2";
    case POLICY_TLS1_3:
      return "TLS1.3";
    default:
      return "unknown";
  }
}
