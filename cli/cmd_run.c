/* cmd_run.c: `tlsshim run`: validate the policy, preload the shim and exec
 * the program, refusing programs whose sockets the shim cannot intercept
 * (static binaries, Go binaries, set-user-ID programs). */
#include "cli/cli.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* ELF constants, from the System V ABI (no <elf.h> needed). */
#define ELF_CLASS32 1
#define ELF_CLASS64 2
#define ELF_DATA_LSB 1
#define ELF_DATA_MSB 2
#define ELF_PT_DYNAMIC 2
#define ELF_PT_INTERP 3

/* Why a program cannot be intercepted; NONE when it can (as far as we see). */
enum verdict {
  VERDICT_NONE = 0,
  VERDICT_STATIC,
  VERDICT_GO,
  VERDICT_SETID,
};

/* A file opened for inspection. */
struct image {
  int fd;
  off_t size;
  bool big_endian;
  bool is64;
};

static int read_at(const struct image *im, uint64_t off, void *buf,
                   size_t len) {
  if (off > (uint64_t)im->size || len > (uint64_t)im->size - off) {
    return -EINVAL;
  }
  size_t done = 0;
  while (done < len) {
    ssize_t n =
        pread(im->fd, (char *)buf + done, len - done, (off_t)(off + done));
    if (n < 0 && errno == EINTR) {
      continue;
    }
    if (n <= 0) {
      return n < 0 ? -errno : -EIO;
    }
    done += (size_t)n;
  }
  return 0;
}

static uint64_t get(const struct image *im, const uint8_t *p, size_t len) {
  uint64_t v = 0;
  for (size_t i = 0; i < len; i++) {
    size_t k = im->big_endian ? i : len - 1 - i;
    v = (v << 8) | p[k];
  }
  return v;
}

/* The header fields we use, in both classes. */
struct ehdr {
  uint64_t phoff, shoff;
  uint64_t phentsize, phnum, shentsize, shnum, shstrndx;
};

static int read_ehdr(struct image *im, struct ehdr *h) {
  uint8_t b[64];
  int rc = read_at(im, 0, b, 16);
  if (rc < 0) {
    return rc;
  }
  if (memcmp(b, "\177ELF", 4) != 0) {
    return -ENOEXEC;
  }
  if ((b[4] != ELF_CLASS32 && b[4] != ELF_CLASS64) ||
      (b[5] != ELF_DATA_LSB && b[5] != ELF_DATA_MSB)) {
    return -ENOEXEC;
  }
  im->is64 = b[4] == ELF_CLASS64;
  im->big_endian = b[5] == ELF_DATA_MSB;
  rc = read_at(im, 0, b, im->is64 ? 64 : 52);
  if (rc < 0) {
    return rc;
  }
  if (im->is64) {
    h->phoff = get(im, b + 32, 8);
    h->shoff = get(im, b + 40, 8);
    h->phentsize = get(im, b + 54, 2);
    h->phnum = get(im, b + 56, 2);
    h->shentsize = get(im, b + 58, 2);
    h->shnum = get(im, b + 60, 2);
    h->shstrndx = get(im, b + 62, 2);
  } else {
    h->phoff = get(im, b + 28, 4);
    h->shoff = get(im, b + 32, 4);
    h->phentsize = get(im, b + 42, 2);
    h->phnum = get(im, b + 44, 2);
    h->shentsize = get(im, b + 46, 2);
    h->shnum = get(im, b + 48, 2);
    h->shstrndx = get(im, b + 50, 2);
  }
  return 0;
}

/* Sets |*interp| and |*dynamic| from the program headers. */
static int scan_segments(const struct image *im, const struct ehdr *h,
                         bool *interp, bool *dynamic) {
  *interp = *dynamic = false;
  if (h->phentsize < (im->is64 ? 56u : 32u)) {
    return h->phnum == 0 ? 0 : -ENOEXEC;
  }
  for (uint64_t i = 0; i < h->phnum; i++) {
    uint8_t b[4];
    int rc = read_at(im, h->phoff + i * h->phentsize, b, 4);
    if (rc < 0) {
      return rc;
    }
    uint64_t type = get(im, b, 4);
    *interp |= type == ELF_PT_INTERP;
    *dynamic |= type == ELF_PT_DYNAMIC;
  }
  return 0;
}

/* Reports whether a section is named .go.buildinfo or .note.go.buildid.
 * A file without section headers is reported as not having them. */
static bool has_go_section(const struct image *im, const struct ehdr *h) {
  size_t shsize = im->is64 ? 64 : 40;
  if (h->shoff == 0 || h->shnum == 0 || h->shentsize < shsize ||
      h->shstrndx >= h->shnum) {
    return false;
  }
  /* The section-name string table: sh_offset and sh_size. */
  uint8_t b[64];
  if (read_at(im, h->shoff + h->shstrndx * h->shentsize, b, shsize) < 0) {
    return false;
  }
  uint64_t str_off = im->is64 ? get(im, b + 24, 8) : get(im, b + 16, 4);
  uint64_t str_size = im->is64 ? get(im, b + 32, 8) : get(im, b + 20, 4);
  if (str_size == 0 || str_size > (1u << 24)) {
    return false;
  }
  char *names = malloc(str_size + 1);
  if (names == NULL || read_at(im, str_off, names, str_size) < 0) {
    free(names);
    return false;
  }
  names[str_size] = '\0';
  bool found = false;
  for (uint64_t i = 0; i < h->shnum && !found; i++) {
    if (read_at(im, h->shoff + i * h->shentsize, b, 4) < 0) {
      break;
    }
    uint64_t name = get(im, b, 4);
    if (name < str_size) {
      const char *n = names + name;
      found =
          strcmp(n, ".go.buildinfo") == 0 || strcmp(n, ".note.go.buildid") == 0;
    }
  }
  free(names);
  return found;
}

/* Reports whether the file holds Go's build-info magic "\xff Go buildinf:"
 * at a 16-byte boundary, where the Go linker puts it; used for binaries
 * whose section headers were stripped. The magic is not spelt out in one
 * piece so that this program does not carry it itself. */
static bool has_go_magic(const struct image *im) {
  static const char tail[] = " Go buildinf:";
  static uint8_t buf[1 << 16];
  for (off_t off = 0; off < im->size; off += (off_t)sizeof(buf)) {
    size_t len = sizeof(buf);
    if ((uint64_t)(im->size - off) < len) {
      len = (size_t)(im->size - off);
    }
    if (read_at(im, (uint64_t)off, buf, len) < 0) {
      return false;
    }
    for (size_t i = 0; i + 14 <= len; i += 16) {
      if (buf[i] == 0xff && memcmp(buf + i + 1, tail, 13) == 0) {
        return true;
      }
    }
  }
  return false;
}

/* Inspects the ELF file |fd|. Returns a verdict; a file that is not ELF (or
 * that we cannot parse) gets VERDICT_NONE and is left to execve. */
static enum verdict inspect_elf(int fd, off_t size) {
  struct image im = {.fd = fd, .size = size};
  struct ehdr h;
  if (read_ehdr(&im, &h) < 0) {
    return VERDICT_NONE;
  }
  /* Go first: a Go program that links libc dynamically (cgo) still makes
   * its own system calls. */
  if (has_go_section(&im, &h)) {
    return VERDICT_GO;
  }
  if (h.shnum == 0 && has_go_magic(&im)) {
    return VERDICT_GO;
  }
  bool interp = false, dynamic = false;
  if (scan_segments(&im, &h, &interp, &dynamic) < 0) {
    return VERDICT_NONE;
  }
  /* Without PT_INTERP the dynamic loader never runs, so LD_PRELOAD is not
   * honoured (static-pie binaries have PT_DYNAMIC but no PT_INTERP). */
  if (!interp || !dynamic) {
    return VERDICT_STATIC;
  }
  return VERDICT_NONE;
}

/* Looks at the program at |path|; for a "#!" script, at its interpreter
 * (up to |depth| levels). Sets |*culprit| to the file the verdict is about. */
static enum verdict inspect(const char *path, int depth, char *culprit,
                            size_t culprit_len) {
  snprintf(culprit, culprit_len, "%s", path);
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    return VERDICT_NONE;
  }
  enum verdict v = VERDICT_NONE;
  struct stat st;
  if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
    goto out;
  }
  /* The loader ignores LD_PRELOAD (but for a few system folders) when it
   * raises privileges. */
  if (((st.st_mode & S_ISUID) && st.st_uid != geteuid()) ||
      ((st.st_mode & S_ISGID) && st.st_gid != getegid())) {
    v = VERDICT_SETID;
    goto out;
  }
  char head[256];
  ssize_t n = pread(fd, head, sizeof(head) - 1, 0);
  if (n >= 2 && head[0] == '#' && head[1] == '!' && depth > 0) {
    head[n] = '\0';
    char *s = head + 2;
    s += strspn(s, " \t");
    size_t len = strcspn(s, " \t\n");
    if (len > 0 && s[len] != '\0') {
      s[len] = '\0';
      v = inspect(s, depth - 1, culprit, culprit_len);
      if (v == VERDICT_NONE) {
        snprintf(culprit, culprit_len, "%s", path);
      }
    }
    goto out;
  }
  v = inspect_elf(fd, st.st_size);
out:
  close(fd);
  return v;
}

/* Finds |cmd| like execvp would: as given when it holds a slash, else in
 * $PATH. Returns 0 with |out| set, or -ENOENT / -EACCES. */
static int find_command(const char *cmd, char *out, size_t out_len) {
  if (strchr(cmd, '/') != NULL) {
    snprintf(out, out_len, "%s", cmd);
    return 0;
  }
  const char *path = getenv("PATH");
  if (path == NULL || path[0] == '\0') {
    path = "/usr/local/bin:/usr/bin:/bin";
  }
  int rc = -ENOENT;
  for (const char *p = path;; p++) {
    const char *end = strchr(p, ':');
    size_t len = end != NULL ? (size_t)(end - p) : strlen(p);
    char cand[PATH_MAX];
    int w = snprintf(cand, sizeof(cand), "%.*s%s%s", (int)len, p,
                     len > 0 ? "/" : "", cmd);
    struct stat st;
    if (w > 0 && (size_t)w < sizeof(cand) && stat(cand, &st) == 0 &&
        S_ISREG(st.st_mode)) {
      if (access(cand, X_OK) == 0) {
        snprintf(out, out_len, "%s", cand);
        return 0;
      }
      rc = -EACCES;
    }
    if (end == NULL) {
      break;
    }
    p = end;
  }
  return rc;
}

/* Finds the shim: $TLSSHIM_LIB, else ../lib/libtlsshim.so beside this
 * program. Returns 0 with the absolute path in |out|, or -1 (printed). */
static int find_library(char *out, size_t out_len) {
  const char *env = getenv("TLSSHIM_LIB");
  char cand[PATH_MAX];
  if (env != NULL && env[0] != '\0') {
    snprintf(cand, sizeof(cand), "%s", env);
  } else {
    char self[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
    if (n < 0) {
      cli_error("run: cannot find this program (/proc/self/exe): %s; set "
                "TLSSHIM_LIB to the shim library",
                strerror(errno));
      return -1;
    }
    self[n] = '\0';
    char *slash = strrchr(self, '/');
    if (slash != NULL) {
      *slash = '\0';
    }
    snprintf(cand, sizeof(cand), "%s/../lib/libtlsshim.so", self);
  }
  char real[PATH_MAX];
  if (realpath(cand, real) == NULL || access(real, R_OK) != 0) {
    cli_error("run: cannot use the shim library %s: %s%s", cand,
              strerror(errno),
              env != NULL && env[0] != '\0' ? " (from TLSSHIM_LIB)"
                                            : "; set TLSSHIM_LIB");
    return -1;
  }
  /* LD_PRELOAD separates items with spaces and colons. */
  if (strpbrk(real, " :") != NULL) {
    cli_error("run: the shim library path '%s' holds a space or a colon, "
              "which LD_PRELOAD cannot express",
              real);
    return -1;
  }
  snprintf(out, out_len, "%s", real);
  return 0;
}

/* Sets LD_PRELOAD to |lib| followed by what it held before. */
static int prepend_preload(const char *lib) {
  const char *old = getenv("LD_PRELOAD");
  if (old == NULL || old[0] == '\0') {
    return setenv("LD_PRELOAD", lib, 1);
  }
  size_t len = strlen(lib);
  if (strncmp(old, lib, len) == 0 &&
      (old[len] == '\0' || old[len] == ':' || old[len] == ' ')) {
    return 0; /* already first */
  }
  size_t total = len + 1 + strlen(old) + 1;
  char *v = malloc(total);
  if (v == NULL) {
    return -1;
  }
  snprintf(v, total, "%s:%s", lib, old);
  int rc = setenv("LD_PRELOAD", v, 1);
  free(v);
  return rc;
}

static bool valid_level(const char *l) {
  return strcmp(l, "error") == 0 || strcmp(l, "warn") == 0 ||
         strcmp(l, "info") == 0 || strcmp(l, "debug") == 0;
}

int cli_run(int argc, char **argv) {
  const char *policy_path = NULL;
  const char *level = NULL;
  bool allow = false;
  int i = 1;
  for (; i < argc; i++) {
    const char *a = argv[i];
    if (strcmp(a, "--") == 0) {
      i++;
      break;
    }
    if (strcmp(a, "-p") == 0 || strcmp(a, "--policy") == 0 ||
        strcmp(a, "--log") == 0) {
      if (i + 1 >= argc) {
        return cli_usage_error("run: %s needs a value", a);
      }
      if (strcmp(a, "--log") == 0) {
        level = argv[++i];
      } else {
        policy_path = argv[++i];
      }
    } else if (strncmp(a, "--policy=", 9) == 0) {
      policy_path = a + 9;
    } else if (strncmp(a, "--log=", 6) == 0) {
      level = a + 6;
    } else if (strcmp(a, "--allow-uninterceptable") == 0) {
      allow = true;
    } else if (a[0] == '-' && a[1] != '\0') {
      return cli_usage_error("run: unknown option '%s'", a);
    } else {
      break; /* the command, without "--" */
    }
  }
  if (i >= argc) {
    return cli_usage_error("run: missing CMD");
  }
  if (level != NULL && !valid_level(level)) {
    return cli_usage_error("run: unknown log level '%s' (expected error, "
                           "warn, info or debug)",
                           level);
  }
  char **cmd_argv = argv + i;
  if (policy_path == NULL) {
    policy_path = cli_default_policy();
  }

  struct tls_config *cfg = NULL;
  if (cli_load_config(policy_path, true, &cfg) < 0) {
    return CLI_EXIT_CONFIG;
  }
  char abs_policy[PATH_MAX];
  snprintf(abs_policy, sizeof(abs_policy), "%s", tls_config_policy(cfg)->path);
  tls_config_unref(cfg);

  char lib[PATH_MAX];
  if (find_library(lib, sizeof(lib)) < 0) {
    return CLI_EXIT_FAIL;
  }

  char path[PATH_MAX];
  int rc = find_command(cmd_argv[0], path, sizeof(path));
  if (rc < 0) {
    cli_error("run: %s: %s", cmd_argv[0],
              rc == -EACCES ? "permission denied" : "command not found");
    return rc == -EACCES ? CLI_EXIT_REFUSED : CLI_EXIT_NOTFOUND;
  }

  char culprit[PATH_MAX];
  enum verdict v = inspect(path, 4, culprit, sizeof(culprit));
  if (v != VERDICT_NONE) {
    const char *why =
        v == VERDICT_GO ? "is a Go program, which makes its own system calls"
        : v == VERDICT_STATIC
            ? "is statically linked"
            : "is set-user-ID or set-group-ID (the loader ignores "
              "LD_PRELOAD for it)";
    if (!allow) {
      cli_error("run: refusing to run %s: it %s%s, so tlsshim cannot intercept "
                "its sockets and the policy would silently not apply (use "
                "--allow-uninterceptable to run it anyway)",
                culprit, why,
                strcmp(culprit, path) != 0 ? " (the interpreter of the "
                                             "script)"
                                           : "");
      return CLI_EXIT_REFUSED;
    }
    cli_error("warning: %s %s: the policy does not apply to its sockets",
              culprit, why);
  }

  if (setenv("TLSSHIM_POLICY", abs_policy, 1) < 0 ||
      (level != NULL && setenv("TLSSHIM_LOG", level, 1) < 0) ||
      prepend_preload(lib) < 0) {
    cli_error("run: cannot set the environment: %s", strerror(errno));
    return CLI_EXIT_FAIL;
  }
  fflush(stdout);
  fflush(stderr);
  execv(path, cmd_argv);
  int e = errno;
  cli_error("run: cannot execute %s: %s", path, strerror(e));
  return e == ENOENT ? CLI_EXIT_NOTFOUND : CLI_EXIT_REFUSED;
}
