/* http: the one HTTP/1.1 server (libmicrohttpd, a thread per connection) in front of the
 * marketplace gateway (/sync), the warehouses (/wh/{CODE}/v1/...) and the control interface
 * (/control/...), and the fault machinery between the socket and the handlers.
 *
 * Handlers never see libmicrohttpd: they get a struct http_req and fill a struct http_resp. */
#ifndef SIM_HTTP_H
#define SIM_HTTP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "json_out.h"
#include "params.h"

struct sim;
struct http_server;

/* Largest request body accepted (413 beyond). */
#define HTTP_MAX_BODY ((size_t)64 << 20)
/* Largest answer built (500 beyond); CSV dumps of 1M x 4 rows fit comfortably. */
#define HTTP_MAX_RESPONSE ((size_t)512 << 20)

struct http_req {
    const char *method;
    const char *path;    /* without the query string */
    struct params query; /* decoded query arguments */
    struct params form;  /* /sync only: query arguments + url-encoded body */
    bool form_malformed; /* the body was not valid url-encoding */
    const char *body;
    size_t body_len;
    const char *authorization; /* header value or NULL */
    const char *app_key;       /* Goodcang's app-key header, or NULL */
    const char *app_token;     /* Goodcang's app-token header, or NULL */
};

struct http_resp {
    int status;
    struct jb body;
    const char *content_type; /* static string */
    int retry_after;          /* seconds; -1 = no header */
    const char *www_authenticate;
};

void http_resp_init(struct http_resp *r);
void http_resp_free(struct http_resp *r);
/* Replaces the answer with {"error":{"code":...,"message":...}} and the given status. */
void http_resp_error(struct http_resp *r, int status, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* Starts serving on s->cfg.listen (127.0.0.1 by default):port (0 = any free port). NULL with a
 * message on failure. */
struct http_server *http_start(struct sim *s, uint16_t port, char *err, size_t errlen);
uint16_t http_port(const struct http_server *h);
/* Stops accepting, wakes stalled handlers, joins every connection thread, frees h. */
void http_stop(struct http_server *h);

#endif
