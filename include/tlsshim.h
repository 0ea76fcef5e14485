/* tlsshim.h: the optional API for programs that want to know about their
 * connections ("aware" programs, in z/OS AT-TLS terms).
 *
 * A program looks these functions up with dlsym(RTLD_DEFAULT, "tlsshim_...")
 * so that it runs unchanged with or without the shim:
 *
 *   int (*info)(int, struct tlsshim_conn_info *, size_t) =
 *       dlsym(RTLD_DEFAULT, "tlsshim_conn_info");
 *   struct tlsshim_conn_info ci;
 *   if (info != NULL && info(fd, &ci, sizeof(ci)) == 0 && ci.is_tls) ...
 */
#ifndef TLSSHIM_H
#define TLSSHIM_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

/* What the shim knows of one connection. Strings are NUL-terminated and ""
 * when not applicable. */
struct tlsshim_conn_info {
  int is_tls;               /* 1: the connection is TLS through the shim */
  int handshake_done;       /* 1: established (the fields below are set) */
  int resumed;              /* 1: the session was resumed */
  int peer_verified;        /* 1: the peer presented a verified certificate */
  char direction[16];       /* "outbound" | "inbound" */
  char rule[128];           /* the policy rule's name */
  char version[16];         /* "TLSv1.3" */
  char cipher[64];          /* "TLS_AES_128_GCM_SHA256" */
  char group[32];           /* "X25519" */
  char alpn[32];
  char server_name[256];    /* SNI */
  char peer_identity[512];  /* URI SAN, else DNS SAN, else subject CN */
  char peer_subject[256];
};

/* tlsshim_conn_info fills |out| (of |out_size| bytes, sizeof(*out)) for
 * descriptor |fd|. Returns 0, with out->is_tls 0 for a descriptor the shim
 * does not handle as TLS, or -1 with errno EBADF (not open) or EINVAL. */
int tlsshim_conn_info(int fd, struct tlsshim_conn_info *out, size_t out_size);

/* tlsshim_version returns the shim's version string, e.g. "0.1.0". */
const char *tlsshim_version(void);

#ifdef __cplusplus
}
#endif

#endif /* TLSSHIM_H */
