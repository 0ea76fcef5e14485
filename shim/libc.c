/* libc.c: the only file that looks up the real libc functions (dlsym). */
#include "shim/libc.h"

#include <dlfcn.h>
#include <stdlib.h>

/* A call with no next definition cannot be served: abort rather than
 * recurse or guess (as proxychains-ng does). */
#define LIBC_DEFINE(name, ret, params)                                         \
  libc_##name##_fn libc_real_##name;                                           \
  libc_##name##_fn libc_resolve_##name(void) {                                 \
    libc_##name##_fn fn = (libc_##name##_fn)dlsym(RTLD_NEXT, #name);           \
    if (fn == NULL) {                                                          \
      abort();                                                                 \
    }                                                                          \
    __atomic_store_n(&libc_real_##name, fn, __ATOMIC_RELEASE);                 \
    return fn;                                                                 \
  }
LIBC_CALLS(LIBC_DEFINE)
#undef LIBC_DEFINE

void libc_resolve_all(void) {
#define LIBC_RESOLVE(name, ret, params)                                        \
  if (libc_real_##name == NULL) {                                              \
    libc_resolve_##name();                                                     \
  }
  LIBC_CALLS(LIBC_RESOLVE)
#undef LIBC_RESOLVE
}
