/* free.c: releasing a policy, and deep copies of its lists and tls settings. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "policy/internal.h"
#include "policy/policy.h"

void policy_strings_cleanup(struct policy_strings *s) {
  for (size_t i = 0; i < s->count; i++) {
    free(s->items[i]);
  }
  free(s->items);
  free(s->pos);
  memset(s, 0, sizeof(*s));
}

int policy_strings_push(struct policy_strings *s, const char *item,
                        struct policy_pos pos) {
  char **items = realloc(s->items, (s->count + 1) * sizeof(*items));
  if (items == NULL) {
    return -ENOMEM;
  }
  s->items = items;
  struct policy_pos *ps = realloc(s->pos, (s->count + 1) * sizeof(*ps));
  if (ps == NULL) {
    return -ENOMEM;
  }
  s->pos = ps;
  char *copy = strdup(item);
  if (copy == NULL) {
    return -ENOMEM;
  }
  s->items[s->count] = copy;
  s->pos[s->count] = pos;
  s->count++;
  return 0;
}

int policy_strings_copy(struct policy_strings *dst,
                        const struct policy_strings *src) {
  memset(dst, 0, sizeof(*dst));
  for (size_t i = 0; i < src->count; i++) {
    if (policy_strings_push(dst, src->items[i], src->pos[i]) != 0) {
      policy_strings_cleanup(dst);
      return -ENOMEM;
    }
  }
  return 0;
}

void policy_tls_cleanup(struct policy_tls *t) {
  policy_strings_cleanup(&t->ciphers);
  policy_strings_cleanup(&t->groups);
  policy_strings_cleanup(&t->peer_names);
  policy_strings_cleanup(&t->alpn);
  free(t->server_name);
  memset(t, 0, sizeof(*t));
}

int policy_tls_copy(struct policy_tls *dst, const struct policy_tls *src) {
  *dst = *src;
  memset(&dst->ciphers, 0, sizeof(dst->ciphers));
  memset(&dst->groups, 0, sizeof(dst->groups));
  memset(&dst->peer_names, 0, sizeof(dst->peer_names));
  memset(&dst->alpn, 0, sizeof(dst->alpn));
  dst->server_name = NULL;
  if (src->server_name != NULL) {
    dst->server_name = strdup(src->server_name);
    if (dst->server_name == NULL) {
      goto out_nomem;
    }
  }
  if (policy_strings_copy(&dst->ciphers, &src->ciphers) != 0 ||
      policy_strings_copy(&dst->groups, &src->groups) != 0 ||
      policy_strings_copy(&dst->peer_names, &src->peer_names) != 0 ||
      policy_strings_copy(&dst->alpn, &src->alpn) != 0) {
    goto out_nomem;
  }
  return 0;
out_nomem:
  policy_tls_cleanup(dst);
  return -ENOMEM;
}

void policy_free(struct policy *p) {
  if (p == NULL) {
    return;
  }
  for (size_t i = 0; i < p->identity_count; i++) {
    free(p->identities[i].name);
    free(p->identities[i].cert);
    free(p->identities[i].key);
    free(p->identities[i].ocsp_staple);
  }
  free(p->identities);
  for (size_t i = 0; i < p->trust_count; i++) {
    free(p->trusts[i].name);
    free(p->trusts[i].ca);
    free(p->trusts[i].crl);
  }
  free(p->trusts);
  policy_tls_cleanup(&p->defaults);
  for (size_t i = 0; i < p->rule_count; i++) {
    struct policy_rule *r = &p->rules[i];
    free(r->name);
    free(r->addresses);
    policy_strings_cleanup(&r->names);
    free(r->ports);
    policy_tls_cleanup(&r->tls);
  }
  free(p->rules);
  free(p->log.file);
  free(p->status.dir);
  free(p->path);
  free(p->dir);
  free(p);
}
