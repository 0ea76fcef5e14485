/* files.c: paths named by the policy, and the plain-text PEM check of the
 * files they name (no crypto library here: only block markers matter). */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "policy/internal.h"
#include "policy/policy.h"

/* A policy never needs to name a file this large; reading stops there. */
#define POLICY_MAX_FILE (16 * 1024 * 1024)

char *policy_path_join(const char *dir, const char *rel) {
  if (rel[0] == '/' || dir == NULL || dir[0] == '\0') {
    return strdup(rel);
  }
  size_t dl = strlen(dir), rl = strlen(rel);
  bool slash = dir[dl - 1] == '/';
  char *out = malloc(dl + rl + 2);
  if (out == NULL) {
    return NULL;
  }
  memcpy(out, dir, dl);
  size_t n = dl;
  if (!slash) {
    out[n++] = '/';
  }
  memcpy(out + n, rel, rl + 1);
  return out;
}

char *policy_absolute_path(const char *path) {
  if (path[0] == '/') {
    return strdup(path);
  }
  char cwd[PATH_MAX];
  if (getcwd(cwd, sizeof(cwd)) == NULL) {
    return NULL;
  }
  const char *rel = path;
  while (rel[0] == '.' && rel[1] == '/') {
    rel += 2;
  }
  return policy_path_join(cwd, rel);
}

char *policy_dir_of(const char *path) {
  const char *slash = strrchr(path, '/');
  if (slash == NULL) {
    return strdup(".");
  }
  if (slash == path) {
    return strdup("/");
  }
  return strndup(path, (size_t)(slash - path));
}

const char *policy_pem_label(enum policy_pem_kind kind) {
  switch (kind) {
    case POLICY_PEM_CERTIFICATE:
      return "CERTIFICATE";
    case POLICY_PEM_PRIVATE_KEY:
      return "PRIVATE KEY";
    case POLICY_PEM_CRL:
      return "X509 CRL";
    case POLICY_PEM_NONE:
      break;
  }
  return "";
}

/* Whether |label| (the text between "-----BEGIN " and "-----") is one that
 * |kind| accepts: private keys come as "PRIVATE KEY", "RSA PRIVATE KEY",
 * "EC PRIVATE KEY" or "ENCRYPTED PRIVATE KEY". */
static bool label_fits(const char *label, size_t len,
                       enum policy_pem_kind kind) {
  const char *want = policy_pem_label(kind);
  size_t wl = strlen(want);
  if (kind == POLICY_PEM_PRIVATE_KEY) {
    return len >= wl && memcmp(label + len - wl, want, wl) == 0 &&
           (len == wl || label[len - wl - 1] == ' ');
  }
  return len == wl && memcmp(label, want, wl) == 0;
}

static const char *find(const char *hay, size_t hay_len, const char *needle) {
  return memmem(hay, hay_len, needle, strlen(needle));
}

bool policy_pem_has_block(const char *text, size_t text_len,
                          enum policy_pem_kind kind) {
  static const char begin[] = "-----BEGIN ";
  const char *end_text = text + text_len;
  const char *s = text;
  while (s < end_text) {
    const char *b = find(s, (size_t)(end_text - s), begin);
    if (b == NULL) {
      return false;
    }
    const char *label = b + sizeof(begin) - 1;
    const char *close = find(label, (size_t)(end_text - label), "-----");
    if (close == NULL) {
      return false;
    }
    size_t label_len = (size_t)(close - label);
    if (label_len < 64 && memchr(label, '\n', label_len) == NULL &&
        label_fits(label, label_len, kind)) {
      char end_marker[96] = "-----END ";
      memcpy(end_marker + 9, label, label_len);
      memcpy(end_marker + 9 + label_len, "-----", 6);
      const char *after = close + 5;
      if (find(after, (size_t)(end_text - after), end_marker) != NULL) {
        return true;
      }
    }
    s = close + 5;
  }
  return false;
}

int policy_check_file(const char *path, enum policy_pem_kind kind,
                      unsigned *out_mode) {
  *out_mode = 0;
  int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
  if (fd < 0) {
    return -errno;
  }
  int rc = 0;
  char *buf = NULL;
  struct stat st;
  if (fstat(fd, &st) != 0) {
    rc = -errno;
    goto out_close;
  }
  *out_mode = (unsigned)(st.st_mode & 07777);
  if (S_ISDIR(st.st_mode)) {
    rc = -EISDIR;
    goto out_close;
  }
  size_t cap = POLICY_MAX_FILE, len = 0;
  if (S_ISREG(st.st_mode) && st.st_size < (off_t)cap) {
    cap = (size_t)st.st_size + 1;
  }
  buf = malloc(cap);
  if (buf == NULL) {
    rc = -ENOMEM;
    goto out_close;
  }
  while (len < cap) {
    ssize_t n = read(fd, buf + len, cap - len);
    if (n < 0) {
      if (errno == EINTR) {
        continue;
      }
      rc = -errno;
      goto out_close;
    }
    if (n == 0) {
      break;
    }
    len += (size_t)n;
  }
  if (kind != POLICY_PEM_NONE && !policy_pem_has_block(buf, len, kind)) {
    rc = -EINVAL;
  }
out_close:
  free(buf);
  close(fd);
  return rc;
}

int policy_edit_distance(const char *a, const char *b, int limit) {
  size_t la = strlen(a), lb = strlen(b);
  if (la > 64 || lb > 64) {
    return limit + 1;
  }
  int prev[65], cur[65];
  for (size_t j = 0; j <= lb; j++) {
    prev[j] = (int)j;
  }
  for (size_t i = 1; i <= la; i++) {
    cur[0] = (int)i;
    for (size_t j = 1; j <= lb; j++) {
      int cost = a[i - 1] == b[j - 1] ? 0 : 1;
      int v = prev[j - 1] + cost;
      if (prev[j] + 1 < v) {
        v = prev[j] + 1;
      }
      if (cur[j - 1] + 1 < v) {
        v = cur[j - 1] + 1;
      }
      cur[j] = v;
    }
    memcpy(prev, cur, (lb + 1) * sizeof(int));
  }
  return prev[lb] > limit ? limit + 1 : prev[lb];
}
