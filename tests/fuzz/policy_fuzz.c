/* policy_fuzz.c: libFuzzer target for the policy loader (text in memory). */
#include <stddef.h>
#include <stdint.h>

#include "policy/policy.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  struct policy *p = NULL;
  struct policy_diag err;
  struct policy_diags warnings = {0};
  /* A fixed folder that does not exist: named files are never found, so
   * runs do not depend on the machine's files (except `ca: system`). */
  if (policy_load_buffer(&p, "/nonexistent-tlsshim-fuzz/policy.yaml",
                         (const char *)data, size, &err, &warnings) == 0) {
    /* Exercise the matcher on what was loaded. */
    struct policy_endpoint ep = {{0}, 443, "a.example.com"};
    (void)policy_parse_address("10.1.2.3", ep.addr);
    (void)policy_match(p, POLICY_OUTBOUND, &ep);
    (void)policy_match(p, POLICY_INBOUND, &ep);
  }
  char buf[1200];
  (void)policy_diag_format(&err, buf, sizeof(buf));
  policy_free(p);
  policy_diags_cleanup(&warnings);
  return 0;
}
