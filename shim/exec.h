/* exec.h: carrying the list of TLS descriptors across exec. */
#ifndef TLSSHIM_SHIM_EXEC_H
#define TLSSHIM_SHIM_EXEC_H

#include <stddef.h>

#include "shim/internal.h"

#ifdef __cplusplus
extern "C" {
#endif

/* exec_env_entry returns "TLSSHIM_EXEC_TLS_FDS=3,5" for the TLS
 * descriptors that survive exec (not FD_CLOEXEC), or NULL if there are
 * none. The string is thread-local storage. */
char *exec_env_entry(void);

/* exec_envp_with copies |envp| without any old entry into |storage| (of
 * |storage_len| pointers), appends |entry|, and returns it, or NULL when
 * |storage| is too small. */
char **exec_envp_with(char *const envp[], char *entry, char **storage,
                      size_t storage_len);

#ifdef __cplusplus
}
#endif

#endif /* TLSSHIM_SHIM_EXEC_H */
