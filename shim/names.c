/* names.c: which host name the program resolved to which address, so that
 * an outbound connection can be matched by name, send SNI and be verified
 * against the name the program meant. */
#include "shim/internal.h"

#include <stdio.h>
#include <string.h>

#define NAMES_SLOTS 256

struct name_slot {
  uint8_t addr[16];
  char name[256];
  bool used;
};

static struct name_slot slots[NAMES_SLOTS];
static unsigned next_slot;
static pthread_mutex_t names_lock = PTHREAD_MUTEX_INITIALIZER;

void names_remember(const uint8_t addr[16], const char *name) {
  if (name == NULL || name[0] == '\0' || strlen(name) >= 256) {
    return;
  }
  pthread_mutex_lock(&names_lock);
  /* Refresh an existing entry for the same address and name. */
  for (unsigned i = 0; i < NAMES_SLOTS; i++) {
    if (slots[i].used && memcmp(slots[i].addr, addr, 16) == 0) {
      snprintf(slots[i].name, sizeof(slots[i].name), "%s", name);
      pthread_mutex_unlock(&names_lock);
      return;
    }
  }
  struct name_slot *slot = &slots[next_slot++ % NAMES_SLOTS];
  memcpy(slot->addr, addr, 16);
  snprintf(slot->name, sizeof(slot->name), "%s", name);
  slot->used = true;
  pthread_mutex_unlock(&names_lock);
}

bool names_lookup(const uint8_t addr[16], char *out, size_t out_len) {
  bool found = false;
  pthread_mutex_lock(&names_lock);
  for (unsigned i = 0; i < NAMES_SLOTS; i++) {
    if (slots[i].used && memcmp(slots[i].addr, addr, 16) == 0) {
      snprintf(out, out_len, "%s", slots[i].name);
      found = true;
      break;
    }
  }
  pthread_mutex_unlock(&names_lock);
  return found;
}
