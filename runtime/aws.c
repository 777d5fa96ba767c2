/*
 * aws.c - AWS settings from the environment and the libcurl options that
 * sign and send a request with them (see aws.h).
 */
#include "aws.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "json.h"

/* Header carrying the session token (SigV4 with temporary credentials). */
#define TOKEN_HEADER "X-Amz-Security-Token: "

/* Longest endpoint URL accepted. */
#define ENDPOINT_MAX 2048

/* getenv, with "" treated as unset (as the SDKs do for these variables). */
static const char *env(const char *name) {
  const char *v = getenv(name);
  return v && *v ? v : NULL;
}

static char *dup_str(const char *s) {
  size_t n = strlen(s);
  char *p = malloc(n + 1);
  if (p) memcpy(p, s, n + 1);
  return p;
}

/* Overwrites then frees a secret string. The volatile pointer keeps the
 * compiler from dropping the stores to memory about to be freed. */
static void wipe_free(char *s) {
  if (!s) return;
  volatile char *p = s;
  while (*p) *p++ = '\0';
  free(s);
}

/*
 * Checks an endpoint override and returns a malloc'd copy that ends in a
 * path ("http://127.0.0.1:8000" -> "http://127.0.0.1:8000/"). Only http and
 * https are accepted: anything else is a configuration mistake, reported
 * with the variable's name (the URL itself is not secret).
 */
static int take_endpoint(mm_aws_t *a, const char *var, const char *url, mm_err_t *err) {
  size_t n = strlen(url);
  const char *rest = NULL;
  if (strncmp(url, "http://", 7) == 0) rest = url + 7;
  else if (strncmp(url, "https://", 8) == 0) rest = url + 8;
  if (!rest || !*rest || *rest == '/' || n > ENDPOINT_MAX)
    return mm_err_set(err, MM_EINVAL,
                      "%s='%.200s' is not an http:// or https:// URL with a host",
                      var, url);
  for (const char *p = url; *p; p++)
    if ((unsigned char)*p <= ' ' || *p == 0x7f)
      return mm_err_set(err, MM_EINVAL, "%s contains white space or control characters",
                        var);
  int has_path = strchr(rest, '/') != NULL;
  a->endpoint = malloc(n + 2);
  if (!a->endpoint) return mm_err_set(err, MM_ENOMEM, "out of memory reading %s", var);
  memcpy(a->endpoint, url, n);
  if (!has_path) a->endpoint[n++] = '/';
  a->endpoint[n] = '\0';
  a->endpoint_from_env = 1;
  return 0;
}

/* A region or service name goes into the signing scope and a host name:
 * letters, digits and '-' only. */
static int valid_name(const char *s) {
  size_t n = strlen(s);
  if (n == 0 || n >= MM_AWS_NAME_MAX) return 0;
  for (size_t i = 0; i < n; i++)
    if (!isalnum((unsigned char)s[i]) && s[i] != '-') return 0;
  return 1;
}

/* The CA bundle: SSL_CERT_FILE when set (even if it does not exist: then
 * libcurl reports the bad file, which is the honest outcome), else the
 * first bundle of MM_AWS_CA_BUNDLES present on this host. */
static int find_ca(mm_aws_t *a, mm_err_t *err) {
  const char *f = env("SSL_CERT_FILE");
  if (!f) {
    static const char *const bundles[] = MM_AWS_CA_BUNDLES;
    for (size_t i = 0; i < sizeof bundles / sizeof bundles[0] && !f; i++)
      if (access(bundles[i], R_OK) == 0) f = bundles[i];
  }
  if (!f) return 0;
  if (!(a->ca_file = dup_str(f)))
    return mm_err_set(err, MM_ENOMEM, "out of memory reading the CA bundle path");
  return 0;
}

/*
 * Reads every setting (aws.h). The order of the checks is the order a user
 * fixes them in: service, endpoint, region, credentials.
 */
int mm_aws_init(mm_aws_t *a, const char *service, mm_err_t *err) {
  return mm_aws_init_hint(a, service, NULL, err);
}

int mm_aws_init_hint(mm_aws_t *a, const char *service, const char *region_hint,
                     mm_err_t *err) {
  memset(a, 0, sizeof *a);
  int rc = 0;
  if (!service || !valid_name(service)) {
    rc = mm_err_set(err, MM_EINVAL, "invalid AWS service name");
    goto fail;
  }
  memcpy(a->service, service, strlen(service) + 1);

  /* Endpoint override: AWS_ENDPOINT_URL_<SERVICE>, then AWS_ENDPOINT_URL. */
  char var[MM_AWS_NAME_MAX + 32];
  snprintf(var, sizeof var, "AWS_ENDPOINT_URL_%s", service);
  for (char *p = var; *p; p++) *p = *p == '-' ? '_' : (char)toupper((unsigned char)*p);
  const char *ign = env("AWS_IGNORE_CONFIGURED_ENDPOINT_URLS");
  int ignore = ign && strcasecmp(ign, "true") == 0;
  const char *url = NULL, *url_var = NULL;
  if (!ignore) {
    if ((url = env(var))) url_var = var;
    else if ((url = env("AWS_ENDPOINT_URL"))) url_var = "AWS_ENDPOINT_URL";
  }
  if (url && (rc = take_endpoint(a, url_var, url, err))) goto fail;

  /* Region. */
  const char *region = env("AWS_REGION");
  const char *region_var = "AWS_REGION";
  if (!region) {
    region = env("AWS_DEFAULT_REGION");
    region_var = "AWS_DEFAULT_REGION";
  }
  if (!region && region_hint && *region_hint) {
    region = region_hint;
    region_var = "the region";
  }
  if (!region && a->endpoint) region = MM_AWS_DEFAULT_LOCAL_REGION;
  if (!region) {
    rc = mm_err_set(err, MM_EINVAL,
                    "AWS_REGION is not set (Lambda sets it; set it, or an "
                    "endpoint with %s, to run elsewhere)", var);
    goto fail;
  }
  if (!valid_name(region)) {
    rc = mm_err_set(err, MM_EINVAL, "%s='%.64s' is not a region name", region_var, region);
    goto fail;
  }
  memcpy(a->region, region, strlen(region) + 1);
  if (!a->endpoint) {
    /* https://<service>.<region>.amazonaws.com/, .com.cn in China. */
    const char *suffix = strncmp(region, "cn-", 3) == 0 ? ".cn" : "";
    size_t n = strlen(service) + strlen(region) + 40;
    if (!(a->endpoint = malloc(n))) {
      rc = mm_err_set(err, MM_ENOMEM, "out of memory building the endpoint");
      goto fail;
    }
    snprintf(a->endpoint, n, "https://%s.%s.amazonaws.com%s/", service, region, suffix);
  }
  snprintf(a->sigv4, sizeof a->sigv4, "aws:amz:%s:%s", a->region, a->service);

  /* Credentials: never quoted in messages. */
  const char *key = env("AWS_ACCESS_KEY_ID"), *secret = env("AWS_SECRET_ACCESS_KEY");
  const char *token = env("AWS_SESSION_TOKEN");
  if (!key || !secret) {
    rc = mm_err_set(err, MM_EINVAL,
                    "AWS credentials missing: AWS_ACCESS_KEY_ID and "
                    "AWS_SECRET_ACCESS_KEY must be set (Lambda sets them)");
    goto fail;
  }
  for (const char *p = token; p && *p; p++)
    if ((unsigned char)*p < ' ' || *p == 0x7f) {
      rc = mm_err_set(err, MM_EINVAL, "AWS_SESSION_TOKEN contains control characters");
      goto fail;
    }
  if (!(a->access_key = dup_str(key)) || !(a->secret_key = dup_str(secret)) ||
      (token && !(a->session_token = dup_str(token)))) {
    rc = mm_err_set(err, MM_ENOMEM, "out of memory reading AWS credentials");
    goto fail;
  }
  if ((rc = find_ca(a, err))) goto fail;
  return 0;
fail:
  mm_aws_free(a);
  return rc;
}

void mm_aws_free(mm_aws_t *a) {
  if (!a) return;
  free(a->endpoint);
  wipe_free(a->access_key);
  wipe_free(a->secret_key);
  wipe_free(a->session_token);
  free(a->ca_file);
  memset(a, 0, sizeof *a);
}

/*
 * Sets the options of aws.h on h. libcurl computes the SigV4 signature
 * itself when the transfer starts, over the method, path, the headers it
 * sends (Host, X-Amz-Date and every header in the list built here) and the
 * body's SHA-256; tests/check_ddb.c compares its result with an independent
 * signer. The token header is added before signing so it is signed too.
 */
int mm_aws_setup(const mm_aws_t *a, CURL *h, const char *const *extra,
                 struct curl_slist **headers, mm_err_t *err) {
  struct curl_slist *list = NULL, *t;
  char *tok = NULL;
  int rc = 0;
  *headers = NULL;
  for (size_t i = 0; extra && extra[i]; i++) {
    if (!(t = curl_slist_append(list, extra[i]))) goto nomem;
    list = t;
  }
  if (a->session_token) {
    size_t n = sizeof TOKEN_HEADER + strlen(a->session_token);
    if (!(tok = malloc(n))) goto nomem;
    snprintf(tok, n, "%s%s", TOKEN_HEADER, a->session_token);
    t = curl_slist_append(list, tok); /* copies */
    wipe_free(tok);
    tok = NULL;
    if (!t) goto nomem;
    list = t;
  }

#define SET(opt, val)                                                        \
  do {                                                                       \
    CURLcode c_ = curl_easy_setopt(h, opt, val);                             \
    if (c_ != CURLE_OK) {                                                    \
      rc = mm_err_set(err, MM_EIO, "libcurl refused %s: %s", #opt,           \
                      curl_easy_strerror(c_));                               \
      goto fail;                                                             \
    }                                                                        \
  } while (0)
  SET(CURLOPT_URL, a->endpoint);
  /* Best effort: libcurl before 7.85 lacks the option (the URL is ours,
   * http or https by construction, so nothing depends on it). */
  (void)curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
  SET(CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_1_1);
  SET(CURLOPT_PROXY, "");          /* never a proxy from the environment */
  SET(CURLOPT_NOSIGNAL, 1L);       /* no SIGALRM/SIGPIPE from libcurl */
  SET(CURLOPT_TCP_NODELAY, 1L);
  SET(CURLOPT_TCP_KEEPALIVE, 1L);  /* idle pooled connections stay alive */
  SET(CURLOPT_FOLLOWLOCATION, 0L); /* credentials never follow a redirect */
  SET(CURLOPT_SSL_VERIFYPEER, 1L);
  SET(CURLOPT_SSL_VERIFYHOST, 2L);
  if (a->ca_file) SET(CURLOPT_CAINFO, a->ca_file);
  SET(CURLOPT_AWS_SIGV4, a->sigv4);
  SET(CURLOPT_USERNAME, a->access_key);
  SET(CURLOPT_PASSWORD, a->secret_key);
  SET(CURLOPT_HTTPHEADER, list);
#undef SET
  *headers = list;
  return 0;
nomem:
  rc = mm_err_set(err, MM_ENOMEM, "out of memory building request headers");
fail:
  wipe_free(tok);
  curl_slist_free_all(list);
  return rc;
}

void mm_aws_printable(char *out, size_t cap, const char *s, size_t n) {
  size_t j = 0;
  for (size_t i = 0; i < n && j + 1 < cap; i++) {
    unsigned char ch = (unsigned char)s[i];
    out[j++] = ch >= 0x20 && ch < 0x7f ? (char)ch : '?';
  }
  if (cap) out[j] = '\0';
}

/* Copies the decoded text of string node i, made printable, into out. */
static void copy_str(const mm_json_doc_t *d, uint32_t i, char *out, size_t cap) {
  size_t n;
  char *s = mm_json_strdup(d, i, &n);
  if (!s) return;
  mm_aws_printable(out, cap, s, n);
  free(s);
}

void mm_aws_error_body(const char *body, size_t len, char *type, size_t tcap, char *msg,
                       size_t mcap) {
  mm_json_doc_t doc;
  mm_err_t jerr;
  memset(&doc, 0, sizeof doc);
  if (mcap) msg[0] = '\0';
  if (len == 0) return;
  if (mm_json_parse(&doc, body, len, 16, &jerr) || mm_json_type(&doc, 0) != MM_JSON_OBJ) {
    mm_aws_printable(msg, mcap < 120 ? mcap : 120, body, len);
    mm_json_free(&doc);
    return;
  }
  uint32_t t = mm_json_get(&doc, 0, "__type", 6);
  if (t && mm_json_type(&doc, t) == MM_JSON_STR) {
    char *s = mm_json_strdup(&doc, t, NULL);
    if (s) {
      const char *h = strrchr(s, '#');
      h = h ? h + 1 : s;
      mm_aws_printable(type, tcap, h, strlen(h));
      free(s);
    }
  }
  uint32_t m = mm_json_get(&doc, 0, "message", 7);
  if (!m) m = mm_json_get(&doc, 0, "Message", 7);
  if (m && mm_json_type(&doc, m) == MM_JSON_STR) copy_str(&doc, m, msg, mcap);
  mm_json_free(&doc);
}
