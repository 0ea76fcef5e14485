/* resolve.c: getaddrinfo and gethostbyname*, watched to remember which host
 * name the program resolved to which address (for match.names, SNI and the
 * verified name of an outbound connection). */
#include <arpa/inet.h>
#include <netdb.h>
#include <string.h>

#include "shim/hooks/hooks.h"

static bool is_literal(const char *name) {
  unsigned char tmp[16];
  return inet_pton(AF_INET, name, tmp) == 1 ||
         inet_pton(AF_INET6, name, tmp) == 1;
}

static void remember_sockaddr(const struct sockaddr *sa, socklen_t len,
                              const char *name) {
  uint8_t addr[16];
  uint16_t port;
  if (shim_sockaddr_to_endpoint(sa, len, addr, &port)) {
    names_remember(addr, name);
  }
}

static void remember_hostent(const struct hostent *h, const char *name) {
  if (h == NULL || name == NULL || is_literal(name)) {
    return;
  }
  for (char **p = h->h_addr_list; p != NULL && *p != NULL; p++) {
    uint8_t addr[16] = {0};
    if (h->h_addrtype == AF_INET && h->h_length == 4) {
      addr[10] = 0xff;
      addr[11] = 0xff;
      memcpy(addr + 12, *p, 4);
    } else if (h->h_addrtype == AF_INET6 && h->h_length == 16) {
      memcpy(addr, *p, 16);
    } else {
      continue;
    }
    names_remember(addr, name);
  }
}

HOOK_EXPORT int getaddrinfo(const char *node, const char *service,
                            const struct addrinfo *hints,
                            struct addrinfo **res) {
  int r = real_getaddrinfo(node, service, hints, res);
  if (r == 0 && node != NULL && res != NULL && !is_literal(node)) {
    for (struct addrinfo *ai = *res; ai != NULL; ai = ai->ai_next) {
      remember_sockaddr(ai->ai_addr, ai->ai_addrlen, node);
    }
  }
  return r;
}

HOOK_EXPORT struct hostent *gethostbyname(const char *name) {
  struct hostent *h = real_gethostbyname(name);
  remember_hostent(h, name);
  return h;
}

HOOK_EXPORT struct hostent *gethostbyname2(const char *name, int af) {
  struct hostent *h = real_gethostbyname2(name, af);
  remember_hostent(h, name);
  return h;
}

HOOK_EXPORT int gethostbyname_r(const char *name, struct hostent *ret,
                                char *buf, size_t buflen,
                                struct hostent **result, int *h_errnop) {
  int r = real_gethostbyname_r(name, ret, buf, buflen, result, h_errnop);
  if (r == 0 && result != NULL) {
    remember_hostent(*result, name);
  }
  return r;
}

HOOK_EXPORT int gethostbyname2_r(const char *name, int af, struct hostent *ret,
                                 char *buf, size_t buflen,
                                 struct hostent **result, int *h_errnop) {
  int r = real_gethostbyname2_r(name, af, ret, buf, buflen, result, h_errnop);
  if (r == 0 && result != NULL) {
    remember_hostent(*result, name);
  }
  return r;
}
