/* internal.h: helpers shared by the files of the policy module (not API). */
#ifndef TLSSHIM_POLICY_INTERNAL_H
#define TLSSHIM_POLICY_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>

#include "policy/policy.h"

#ifdef __cplusplus
extern "C" {
#endif

/* What a PEM file named by the policy must contain. */
enum policy_pem_kind {
  POLICY_PEM_NONE = 0, /* any readable file (a DER OCSP response) */
  POLICY_PEM_CERTIFICATE,
  POLICY_PEM_PRIVATE_KEY,
  POLICY_PEM_CRL,
};

/* The OS trust bundle that `ca: system` names. */
#define POLICY_SYSTEM_CA_BUNDLE "/etc/ssl/certs/ca-certificates.crt"

/* policy_path_join returns a new string: |rel| if it is absolute, else
 * |dir| + "/" + |rel|. NULL when out of memory. */
char *policy_path_join(const char *dir, const char *rel);

/* policy_absolute_path returns a new absolute form of |path| (joined to the
 * working folder, not resolved through symlinks, so that a ConfigMap's
 * `..data` link keeps pointing at the current files). NULL on failure. */
char *policy_absolute_path(const char *path);

/* policy_dir_of returns a new string holding the folder part of the
 * absolute path |path|. NULL when out of memory. */
char *policy_dir_of(const char *path);

/* policy_check_file reads |path| and checks that it holds a PEM block of
 * |kind|. Returns 0, or -errno when it cannot be read (|*out_errno| is set
 * then too), or -EINVAL when the block is missing. |*out_mode| receives the
 * file mode bits (0 if unknown). */
int policy_check_file(const char *path, enum policy_pem_kind kind,
                      unsigned *out_mode);

/* policy_pem_label returns the PEM label |kind| needs ("CERTIFICATE"). */
const char *policy_pem_label(enum policy_pem_kind kind);

/* policy_pem_has_block reports whether |text| holds a BEGIN/END pair of a
 * label |kind| accepts. */
bool policy_pem_has_block(const char *text, size_t text_len,
                          enum policy_pem_kind kind);

/* policy_parse_cidr parses "ADDR" or "ADDR/PREFIX" into |out| (IPv4 as
 * IPv4-mapped with prefix + 96, host bits cleared). Returns 0, -EINVAL for a
 * bad address, or -ERANGE for a bad prefix length. */
int policy_parse_cidr(const char *text, struct policy_cidr *out);

/* policy_parse_port parses "N" or "LOW-HIGH" (1..65535). Returns 0, -EINVAL
 * for bad syntax or a port out of range, -ERANGE when low > high. */
int policy_parse_port(const char *text, struct policy_port_range *out);

/* policy_strings_cleanup frees the items of |s| and zeroes it. */
void policy_strings_cleanup(struct policy_strings *s);

/* policy_strings_copy makes |dst| a deep copy of |src|. 0 or -ENOMEM. */
int policy_strings_copy(struct policy_strings *dst,
                        const struct policy_strings *src);

/* policy_strings_push appends a copy of |item| at |pos|. 0 or -ENOMEM. */
int policy_strings_push(struct policy_strings *s, const char *item,
                        struct policy_pos pos);

/* policy_tls_cleanup frees what |t| owns (not its identity or trust). */
void policy_tls_cleanup(struct policy_tls *t);

/* policy_tls_copy makes |dst| a deep copy of |src|. 0 or -ENOMEM. */
int policy_tls_copy(struct policy_tls *dst, const struct policy_tls *src);

/* policy_edit_distance returns the Levenshtein distance of |a| and |b|,
 * capped at |limit| + 1. */
int policy_edit_distance(const char *a, const char *b, int limit);

#ifdef __cplusplus
}
#endif

#endif /* TLSSHIM_POLICY_INTERNAL_H */
