/* faults: the misbehaviour the simulator injects on request, and the link switches.
 *
 * A fault names an upstream ("mp", "wh:ES-MAD", "wh:*" or "*"), a call ("*" or a method/route
 * name as counted in /control/stats), a probability and what to do. Several may be active; for
 * each request every matching fault rolls its dice: the latencies of all that fire add up, and
 * the first one that fires with a misbehaviour (status, reset, stall, ...) decides that. The
 * set has its own lock, so deciding never waits for the world's lock. */
#ifndef SIM_FAULTS_H
#define SIM_FAULTS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <cjson/cJSON.h>

struct jb;
struct fault_set;

enum fault_kind {
    FK_LATENCY,     /* only delay */
    FK_STATUS,      /* answer an HTTP error status (optionally with Retry-After) */
    FK_RESET,       /* close the connection (RST) without answering */
    FK_STALL,       /* hang stall_ms (0: until the client gives up), then answer */
    FK_TRUNCATE,    /* send a prefix of the answer, then close */
    FK_MALFORMED,   /* 200 with a body that is not JSON */
    FK_LOST_ANSWER, /* apply the request, then close without answering */
    FK_API_ERROR,   /* marketplace only: 200 with the platform's error JSON (api_code) */
    FK_OVERSIZED,   /* the normal answer, then pad_bytes of whitespace (still valid JSON) */
};

struct fault_action {
    int id; /* fault that decided the misbehaviour, 0 if none */
    enum fault_kind kind;
    int64_t latency_ms;
    int status;
    int retry_after;        /* seconds, -1 = no header */
    int64_t stall_ms;       /* 0 = until the client gives up */
    int64_t truncate_bytes; /* -1 = half the body */
    int64_t pad_bytes;      /* oversized: whitespace after the answer */
    bool apply;             /* whether the request's effect happens */
    char api_code[48];
    char api_type[4]; /* api_error: "ISV" or "ISP", "" = by the code (flow control ISP) */
};

struct fault_set *faults_new(uint64_t seed);
void faults_free(struct fault_set *f);

/* Adds the fault described by spec (see README). Returns its id (> 0), or -1 with a reason in
 * err when the spec is invalid. */
int faults_add(struct fault_set *f, const cJSON *spec, char *err, size_t errlen);
void faults_clear(struct fault_set *f);
/* 0, or -1 when no fault has that id. */
int faults_remove(struct fault_set *f, int id);
/* What happens to one request to target/call. */
void faults_decide(struct fault_set *f, const char *target, const char *call,
                   struct fault_action *out);
/* The active faults, with how often each fired: a JSON array. */
void faults_json(struct fault_set *f, struct jb *j);
const char *fault_kind_name(enum fault_kind k);

/* Links: a target that is down has its connections closed before any answer. target is "mp",
 * "wh:CODE" or "*" ("*" up clears every switch). */
void links_set(struct fault_set *f, const char *target, bool up);
bool links_down(struct fault_set *f, const char *target);
/* The targets currently down: a JSON array of strings. */
void links_json(struct fault_set *f, struct jb *j);

#endif
