/* cmd_version.c: `tlsshim version`: our version and BoringSSL's revision. */
#include "cli/cli.h"

int cli_version(int argc, char **argv) {
  if (argc > 1) {
    return cli_usage_error("version: unexpected argument '%s'", argv[1]);
  }
  printf("tlsshim %s (%s)\n", TLSSHIM_VERSION, tls_library_version());
  return CLI_EXIT_OK;
}
