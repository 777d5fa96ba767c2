/*
 * aws.h - AWS request plumbing shared by the service clients (ddb.c).
 *
 * Provides: the settings every signed AWS request needs, read once from the
 * environment as the AWS SDKs read them (mm_aws_init), and the libcurl
 * options that apply them to an easy handle (mm_aws_setup):
 *
 *   endpoint     AWS_ENDPOINT_URL_<SERVICE> (e.g. AWS_ENDPOINT_URL_DYNAMODB),
 *                else AWS_ENDPOINT_URL, else https://<service>.<region>.
 *                amazonaws.com (amazonaws.com.cn for cn-* regions). Both
 *                overrides are ignored when AWS_IGNORE_CONFIGURED_ENDPOINT_URLS
 *                is "true", as in the SDKs. A URL without a path gets "/".
 *   region       AWS_REGION, else AWS_DEFAULT_REGION; with an endpoint
 *                override and no region, "us-east-1" (local servers ignore it).
 *   credentials  AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN
 *                (optional). Missing key or secret is MM_EINVAL.
 *   signing      SigV4 by libcurl itself (CURLOPT_AWS_SIGV4
 *                "aws:amz:<region>:<service>", key and secret as user name and
 *                password), plus an X-Amz-Security-Token header (signed, as
 *                libcurl signs every header the caller adds) when a session
 *                token is set.
 *   TLS          verified; CA bundle from SSL_CERT_FILE, else the first file
 *                that exists of MM_AWS_CA_BUNDLES (Amazon Linux, Debian);
 *                none found leaves libcurl's built-in default.
 *   connection   HTTP/1.1, never via a proxy from the environment, TCP
 *                keep-alive, no signals (the handles are reused, so are their
 *                connections).
 *
 * Relies on libcurl and err.h. Ownership: an mm_aws_t owns its strings
 * (mm_aws_free, which also wipes the secrets); mm_aws_setup makes libcurl
 * copy every string it sets, except the header list it returns, which the
 * caller frees with curl_slist_free_all after the transfer. Credentials are
 * never written to a log or an error message.
 */
#ifndef MM_AWS_H
#define MM_AWS_H

#include <curl/curl.h>
#include <stddef.h>
#include "err.h"

/* CA bundles tried in order when SSL_CERT_FILE is not set: Amazon Linux
 * (Lambda's provided.al2023 / al2) first, then Debian/Ubuntu. */
#define MM_AWS_CA_BUNDLES \
  { "/etc/pki/tls/certs/ca-bundle.crt", "/etc/ssl/certs/ca-certificates.crt" }

/* Region used when an endpoint override is set but no region is. */
#define MM_AWS_DEFAULT_LOCAL_REGION "us-east-1"

/* Longest service name and region accepted (both end up in headers). */
#define MM_AWS_NAME_MAX 64

typedef struct mm_aws {
  char service[MM_AWS_NAME_MAX];  /* signing name, "dynamodb" */
  char region[MM_AWS_NAME_MAX];
  char *endpoint;        /* owned: full URL requests are POSTed to */
  int endpoint_from_env; /* 1 when an override variable set it */
  char *access_key;      /* owned, secret-adjacent: never logged */
  char *secret_key;      /* owned, secret: never logged */
  char *session_token;   /* owned or NULL */
  char *ca_file;         /* owned or NULL (libcurl's default) */
  char sigv4[2 * MM_AWS_NAME_MAX + 16]; /* "aws:amz:<region>:<service>" */
} mm_aws_t;

/* Reads the settings above for `service` (lower case, e.g. "dynamodb";
 * its upper-case form names the per-service endpoint variable). On error
 * (missing credentials, malformed endpoint, no region) returns MM_EINVAL
 * naming the variable, MM_ENOMEM on allocation failure; *a is then empty
 * (safe to mm_aws_free). */
int mm_aws_init(mm_aws_t *a, const char *service, mm_err_t *err);

/* mm_aws_init, but with region_hint (may be NULL) used when neither
 * AWS_REGION nor AWS_DEFAULT_REGION is set: a region the caller already
 * knows, e.g. from an SQS queue URL's host. */
int mm_aws_init_hint(mm_aws_t *a, const char *service, const char *region_hint,
                     mm_err_t *err);

/* Releases the strings, overwriting the secrets first (a may be NULL or
 * half-built; safe to call twice). */
void mm_aws_free(mm_aws_t *a);

/* Applies URL, signing, credentials, TLS and connection options to h (a
 * fresh or curl_easy_reset handle), and returns in *headers a new list
 * holding the caller's `extra` headers (NUL-terminated array of
 * "Name: value" strings, may be NULL) plus the session token header. The
 * caller sets body, callbacks and timeouts, and frees *headers after the
 * transfer. Returns 0, or MM_ENOMEM / MM_EIO (an option libcurl refused:
 * e.g. a libcurl built without SigV4). */
int mm_aws_setup(const mm_aws_t *a, CURL *h, const char *const *extra,
                 struct curl_slist **headers, mm_err_t *err);

/* Copies printable ASCII of s[0..n) into out (cap bytes, NUL-terminated),
 * other bytes as '?': server text goes into log lines. */
void mm_aws_printable(char *out, size_t cap, const char *s, size_t n);

/* Reads an AWS JSON-protocol error body: the error code (`__type`, the
 * part after '#') into type, and `message` (or `Message`) into msg, both
 * made printable. A body that is not a JSON object leaves type empty and
 * quotes the body's start in msg. */
void mm_aws_error_body(const char *body, size_t len, char *type, size_t tcap, char *msg,
                       size_t mcap);

#endif
