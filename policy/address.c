/* address.c: IP literals, address blocks and ports, parsed without socket
 * headers (policy/ knows nothing of sockets). */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "policy/internal.h"
#include "policy/policy.h"

static int hex_value(char c) {
  if (c >= '0' && c <= '9') {
    return c - '0';
  }
  if (c >= 'a' && c <= 'f') {
    return c - 'a' + 10;
  }
  if (c >= 'A' && c <= 'F') {
    return c - 'A' + 10;
  }
  return -1;
}

/* Parses exactly a dotted quad in [s, end) into out[0..3]. Leading zeros are
 * refused: "010" would mean 8 to some parsers and 10 to others. */
static bool parse_ipv4(const char *s, const char *end, uint8_t out[4]) {
  int part = 0;
  while (part < 4) {
    if (s >= end || *s < '0' || *s > '9') {
      return false;
    }
    unsigned value = 0;
    const char *start = s;
    while (s < end && *s >= '0' && *s <= '9') {
      value = value * 10 + (unsigned)(*s - '0');
      s++;
      if (s - start > 3) {
        return false;
      }
    }
    if (value > 255 || (s - start > 1 && *start == '0')) {
      return false;
    }
    out[part++] = (uint8_t)value;
    if (part < 4) {
      if (s >= end || *s != '.') {
        return false;
      }
      s++;
    }
  }
  return s == end;
}

/* Parses an IPv6 literal in [s, end), with "::" and a trailing dotted quad. */
static bool parse_ipv6(const char *s, const char *end, uint8_t out[16]) {
  uint8_t bytes[16] = {0};
  int n = 0;    /* bytes written */
  int gap = -1; /* where "::" was, in bytes */
  if (end - s >= 2 && s[0] == ':' && s[1] == ':') {
    gap = 0;
    s += 2;
    if (s == end) {
      memset(out, 0, 16);
      return true;
    }
  } else if (s < end && *s == ':') {
    return false;
  }
  while (s < end) {
    if (n >= 16) {
      return false;
    }
    /* A dotted quad may end the address. */
    const char *dot = memchr(s, '.', (size_t)(end - s));
    const char *colon = memchr(s, ':', (size_t)(end - s));
    if (dot != NULL && colon == NULL) {
      if (n > 12 || !parse_ipv4(s, end, bytes + n)) {
        return false;
      }
      n += 4;
      s = end;
      break;
    }
    unsigned value = 0;
    int digits = 0;
    while (s < end && hex_value(*s) >= 0) {
      value = value * 16 + (unsigned)hex_value(*s);
      s++;
      if (++digits > 4) {
        return false;
      }
    }
    if (digits == 0) {
      return false;
    }
    bytes[n++] = (uint8_t)(value >> 8);
    bytes[n++] = (uint8_t)value;
    if (s == end) {
      break;
    }
    if (*s != ':') {
      return false;
    }
    s++;
    if (s < end && *s == ':') {
      if (gap >= 0) {
        return false;
      }
      gap = n;
      s++;
      if (s == end) {
        break;
      }
    } else if (s == end) {
      return false; /* a trailing single colon */
    }
  }
  if (gap >= 0) {
    if (n == 16) {
      return false; /* "::" must stand for at least one group */
    }
    int tail = n - gap;
    memset(out, 0, 16);
    memcpy(out, bytes, (size_t)gap);
    memcpy(out + 16 - tail, bytes + gap, (size_t)tail);
    return true;
  }
  if (n != 16) {
    return false;
  }
  memcpy(out, bytes, 16);
  return true;
}

static bool is_mapped(const uint8_t addr[16]) {
  static const uint8_t prefix[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
  return memcmp(addr, prefix, 12) == 0;
}

bool policy_parse_address(const char *text, uint8_t out[16]) {
  if (text == NULL) {
    return false;
  }
  const char *end = text + strlen(text);
  if (memchr(text, ':', (size_t)(end - text)) != NULL) {
    return parse_ipv6(text, end, out);
  }
  uint8_t v4[4];
  if (!parse_ipv4(text, end, v4)) {
    return false;
  }
  memset(out, 0, 10);
  out[10] = 0xff;
  out[11] = 0xff;
  memcpy(out + 12, v4, 4);
  return true;
}

const char *policy_format_address(const uint8_t addr[16], char *buf,
                                  size_t buf_len) {
  if (buf_len == 0) {
    return buf;
  }
  if (is_mapped(addr)) {
    snprintf(buf, buf_len, "%u.%u.%u.%u", addr[12], addr[13], addr[14],
             addr[15]);
    return buf;
  }
  /* RFC 5952: the longest run of two or more zero groups becomes "::". */
  unsigned groups[8];
  for (int i = 0; i < 8; i++) {
    groups[i] = (unsigned)addr[2 * i] << 8 | addr[2 * i + 1];
  }
  int best = -1, best_len = 0;
  for (int i = 0; i < 8;) {
    if (groups[i] != 0) {
      i++;
      continue;
    }
    int j = i;
    while (j < 8 && groups[j] == 0) {
      j++;
    }
    if (j - i > best_len && j - i >= 2) {
      best = i;
      best_len = j - i;
    }
    i = j;
  }
  char tmp[48];
  size_t n = 0;
  for (int i = 0; i < 8; i++) {
    if (i == best) {
      tmp[n++] = ':';
      tmp[n++] = ':';
      i += best_len - 1;
      continue;
    }
    if (n > 0 && tmp[n - 1] != ':') {
      tmp[n++] = ':';
    }
    n += (size_t)snprintf(tmp + n, sizeof(tmp) - n, "%x", groups[i]);
  }
  tmp[n] = '\0';
  snprintf(buf, buf_len, "%s", tmp);
  return buf;
}

int policy_parse_cidr(const char *text, struct policy_cidr *out) {
  char addr_text[64];
  const char *slash = strchr(text, '/');
  size_t addr_len = slash != NULL ? (size_t)(slash - text) : strlen(text);
  if (addr_len == 0 || addr_len >= sizeof(addr_text)) {
    return -EINVAL;
  }
  memcpy(addr_text, text, addr_len);
  addr_text[addr_len] = '\0';
  if (!policy_parse_address(addr_text, out->addr)) {
    return -EINVAL;
  }
  bool v4 = strchr(addr_text, ':') == NULL;
  int max = v4 ? 32 : 128;
  int prefix = max;
  if (slash != NULL) {
    const char *s = slash + 1;
    if (*s == '\0' || strlen(s) > 3) {
      return -ERANGE;
    }
    prefix = 0;
    for (; *s != '\0'; s++) {
      if (*s < '0' || *s > '9') {
        return -ERANGE;
      }
      prefix = prefix * 10 + (*s - '0');
    }
    if (prefix > max) {
      return -ERANGE;
    }
  }
  out->prefix = v4 ? prefix + 96 : prefix;
  /* Clear the host bits so that matching compares whole bytes. */
  for (int bit = out->prefix; bit < 128; bit++) {
    out->addr[bit / 8] &= (uint8_t) ~(0x80u >> (bit % 8));
  }
  return 0;
}

static int parse_one_port(const char *s, const char *end, unsigned *out) {
  if (s == end || end - s > 5) {
    return -EINVAL;
  }
  unsigned value = 0;
  for (; s < end; s++) {
    if (*s < '0' || *s > '9') {
      return -EINVAL;
    }
    value = value * 10 + (unsigned)(*s - '0');
  }
  if (value < 1 || value > 65535) {
    return -EINVAL;
  }
  *out = value;
  return 0;
}

int policy_parse_port(const char *text, struct policy_port_range *out) {
  const char *end = text + strlen(text);
  const char *dash = strchr(text, '-');
  unsigned low, high;
  if (dash == NULL) {
    if (parse_one_port(text, end, &low) != 0) {
      return -EINVAL;
    }
    high = low;
  } else {
    if (parse_one_port(text, dash, &low) != 0 ||
        parse_one_port(dash + 1, end, &high) != 0) {
      return -EINVAL;
    }
    if (low > high) {
      return -ERANGE;
    }
  }
  out->low = (uint16_t)low;
  out->high = (uint16_t)high;
  return 0;
}
