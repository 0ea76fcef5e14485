/* constructor.c: the library's start-up, before the program's main. Kept
 * out of the engine so that unit tests linking the engine do not load a
 * policy. */
#include "shim/hooks/hooks.h"

__attribute__((constructor)) static void shim_constructor(void) {
  shim_init();
}
