/*
 * Connector for the AliExpress Open Platform gateway (../shared/UPSTREAM.md §1): the marketplace.
 * Every platform method and field name tally uses, and their mapping to the replica, live here.
 *
 * Requests: POST {gateway}, form-urlencoded, signed (iop_sign.h): app_key, method, timestamp
 * (ms), sign_method (sha256 | md5), session (the seller's token: the platform's page names it
 * access_token, but the three official SDKs, easy2digital/aliexpressiop iop/base.py,
 * lpcs007/ae_php_sdk iop/IopClient.php and the Java one, send it as session on /sync),
 * format=json, the method's parameters (JSON ones as JSON text), sign. Answers: HTTP 200 with
 * {"<method_with_underscores>_response": {...}} or {"error_response": {"type", "code", "msg"}}.
 *
 * Streams (each round is pages; a page is applied with its checkpoint in one transaction):
 *   catalog  aliexpress.solution.product.list.get (PRODUCT_PAGE a page: the metadata says
 *            page_size "must be less than 100"; product_status_type is required, so a round
 *            lists each of the four documented statuses in turn, onSelling, offline,
 *            auditing, editingRequired; gmt_modified_start = the checkpoint's modified_since
 *            minus the overlap), then for every product of the page
 *            aliexpress.solution.product.info.get (at most DETAIL_PARALLEL at a time); the page
 *            goes to the engine only when every detail is in.
 *   orders   aliexpress.solution.order.get (50 a page, modified_date_start = modified_since
 *            minus [marketplace] orders_overlap, every status tally maps), then
 *            aliexpress.solution.order.info.get for every order of the page, likewise, except
 *            the orders whose stored details were read after a list entry with the same
 *            gmt_update and order_status (orders.mp_seen, see order_seen): an order listed
 *            again by the overlap or a reconciliation, unchanged, is not read again. A
 *            stream's first round reads every one; an entry without a readable gmt_update
 *            reads it (as does a replica without the order). A detail that fails leaves the
 *            page unapplied (transient) or the order skipped with its mp_seen unchanged, so
 *            the next listing reads it again.
 *   logistics aliexpress.logistics.redefining.listlogisticsservice, one page, the whole list
 *            (replaces mp_services; at the catalog's interval and on `tally sync`): the
 *            service keys a fulfil's service_name takes, each with its tracking_no_regex.
 *   receipts aliexpress.solution.order.receiptinfo.get (param1 {"order_id"}; result
 *            OrderAddressDto) for the open orders, not yet sent to a warehouse and never
 *            purged, whose details came with a masked ship-to (orders.receipt = 1), RECEIPT_PAGE
 *            a page, on the coordinator or a station shipping itself (personal data is read
 *            only where a parcel needs it). Each order's answer is its own: the full ship-to
 *            is stored (receipt 0) and the order goes on; a refusal of that order is stored
 *            (receipt 2, receipt_error) and the fulfilment pass raises a bad address saying
 *            why; a transient failure leaves it for the next round. Only a page of failures
 *            alone fails the page (the link). The orders stream never waits for it; an orders
 *            page that stores a masked ship-to asks for a receipts round at once, and the
 *            stream's own rounds (at [marketplace] orders_interval) retry what failed.
 * Masked: a ship-to text with a run of two or more asterisks ("83****334", ae_masked, the one
 * rule) is no value: not stored (the replica's value, if any, stays), never a bad address.
 * Checkpoint: cursor = the next page number while a round pages ("<k>:<page>" for the catalog's
 * k-th product status, from 0; a catalog cursor without k, of an earlier version, starts the
 * round over), "" between rounds; version =
 * the round's start (catalog: our clock when its first page was asked; orders: the gateway's
 * clock when its first page was answered); at the end of a round modified_since = that start,
 * in the gateway's clock. The lists are not bounded above: orders and products modified while a
 * round pages can only enter the filtered set (never leave it), so a page boundary can repeat
 * a row but never skip one, and whatever changed after the start is in the next round's window.
 * The gateway's clock is learnt from the HTTP Date header of its answers (any method), within
 * CLOCK_BOUND_S of ours (the gateway refuses our own timestamp beyond 7200 s, so a Date further
 * off is not the clock of a gateway that answers us: ignored). The answers' time_stamp is not
 * read for it: its zone is undocumented, and a live capture showed GMT+8 (UPSTREAM.md). Only
 * the order list's date windows are documented as US Pacific.
 * A checkpoint whose modified_since is more than CLOCK_BOUND_S ahead of the gateway's clock
 * (one written while time_stamp, GMT+8, was read as Pacific) is not trusted: the stream starts
 * over as on its first round, from its first page, so that nothing it hid is skipped.
 * The first round of a stream (modified_since 0) and a reconciliation round (cp->reconcile)
 * have no window and leave out FINISH orders (the account's whole history); windowed rounds ask
 * for FINISH too, so that orders which finish are updated. A reconciliation round of the
 * catalog counts the SKUs it had to change as repaired.
 * A page whose details failed transiently is kept, with the details it did read, and when the
 * engine asks for the same page again only the missing ones are asked for (see pull_finish).
 * An order whose line cannot be read is skipped whole (a partial order must not be picked); a
 * line's SKU the catalog does not know yet gets a placeholder. An order inserted by a windowed
 * round is announced (events_order) once its page is committed.
 *
 * Push: outbox rows of kind "fulfil" (payload {order_id, send_type, logistics_no, carrier,
 * warehouse}; a row of an earlier version has the carrier as service_name), one per call,
 * aliexpress.solution.order.fulfill. Before anything is sent (fulfil_service): the carrier
 * maps to a service key ([carriers] / carrier.NAME), the pulled list has that key, and the
 * number matches its tracking_no_regex; else the row is held with the reason ("not sent: ...",
 * an upstream_rejected exception), never sent to be refused. A list never pulled is fetched
 * first. tracking_website is sent only for the key "other" (from the mapping). The platform has no
 * idempotency key and documents no "already shipped" answer (only result.result_success), so a
 * row whose earlier attempt may have reached it (outbox attempts > 0: an answer lost, a
 * time-out, a refusal) is not sent again blindly: the order is read back first
 * (aliexpress.solution.order.info.get, no ext_info_bit_flag = every block, logistics included;
 * result.data.logistic_info_list.global_aeop_tp_logistic_info_dto[].logistics_no, as in the
 * platform's GlobalAeopTpLogisticInfoDto; a bare array or the key logistics_info_list are read
 * too). A shipment carrying this row's logistics number is there (compared without case and
 * surrounding blanks) -> done. Otherwise, when the order carries another number that is none
 * of the order's shipments in the replica (a split order's other parts are ours) for a
 * send_type "all", or has left WAIT_SELLER_SEND_GOODS / SELLER_PART_SEND_GOODS without our
 * number, or is SELLER_PART_SEND_GOODS with no shipment listed (a block left out: unknown)
 * -> held (an upstream_rejected exception on the order, never a silent done). Otherwise the
 * fulfil is sent again. A refusal answered right
 * after such a read-back is held like any refusal; ORDER_ALREADY_SHIPPED (undocumented) without
 * one only means "read back first": transient.
 * Publish: aliexpress.solution.batch.product.inventory.update, the batch grouped by product
 * (at most PUBLISH_PRODUCTS products x PUBLISH_SKUS SKUs a call; values capped at 999,999),
 * per-product outcomes from update_successful_list / update_failed_list (a product is applied
 * whole or not at all: when the refusal names one of its SKUs, the others go again without it).
 *
 * Mapping (platform field -> replica):
 *   product.info.get result.product_id             -> products.product_id (digits)
 *     .subject                                     -> products.title
 *     .product_status_type                         -> products.status (onSelling, offline, ...)
 *     .aeop_ae_product_s_k_us.global_aeop_ae_product_sku[]:
 *       .sku_code                                  -> skus.code
 *       .id ("14:691;5:361385", "<none>")          -> skus.mp_sku_id
 *       .sku_price ("22.31") + .currency_code      -> skus.price_minor (exact) + skus.currency
 *       .aeop_s_k_u_property_list.global_aeop_sku_property[]:
 *         sku_property_name | name of sku_property_id (14 Color, 5 Size, 200007763 Ships From)
 *         | the id -> property_value_definition_name | sku_property_value | property_value_id
 *                                                  -> skus.attributes (MessagePack map)
 *       subject + " (" + attribute values + ")"    -> skus.title
 *   order.info.get result.data (success = data present and no error_code: the documented result
 *     is data, error_code, error_message, time_stamp, no result_success flag)
 *   order.info.get result.data.id                  -> orders.order_id
 *     .order_status                                -> orders.status
 *     .gmt_create (US Pacific "yyyy-MM-dd HH:mm:ss") -> orders.created_at (epoch s)
 *     .receipt_address.contact_person              -> orders.buyer_name
 *     .receipt_address.detail_address, address2, province -> orders.address (", "-joined)
 *     .receipt_address.city / .zip                 -> orders.city / orders.postcode
 *     .receipt_address.phone_country + mobile_no   -> orders.phone ("+34 612345678")
 *     .receipt_address.country (UK->GB, SRB->RS, MNE->ME) -> orders.country ("ZZ" if none)
 *     .product_price.currency_code of the lines (all alike) -> orders.currency
 *     .child_order_list.global_aeop_tp_child_order_dto[]: .logistics_type (first line)
 *                                                  -> orders.service
 *       .sku_code -> order_lines.sku (catalog_sku_ensure), .product_count -> qty,
 *       .product_price.amount -> price_minor (orders.total_minor follows from the lines)
 *   order.get order_dto.timeout_left_time (ms, else left_send_good_day/hour/min) + the list
 *     answer's Date, only while the entry's order_status is WAIT_SELLER_SEND_GOODS or
 *     SELLER_PART_SEND_GOODS (the time left in the current status: after shipping it is
 *     the buyer's)                                 -> orders.ship_by
 *
 * Classification:
 *   no answer, curl error, HTTP 408/429/5xx, unparsable JSON on 200      transient
 *   a list answer with success false: its error_code / error_msg; a code of the gateway's
 *     own (below) keeps its meaning (ApiCallLimit transient, IllegalAccessToken auth); one
 *     naming SYSTEM, BUSY, TIMEOUT or LIMIT (any case) is transient; any other a refusal of
 *     the request                                                        permanent
 *   other HTTP 4xx                                                       permanent
 *   error_response, flow control and the platform's own failures: ApiCallLimit, AppCallLimit,
 *     SessionCallLimit, any *CallLimit* / *Limited* code (and TOP's numeric 7), SystemError,
 *     SystemBusy, ServiceUnavailable, ServiceTimeout, InternalError, and any code of type ISP
 *     or with a sub_code isp.*                                           transient
 *   error_response, the account's credentials: IncompleteSignature, InvalidSignature,
 *     MissingSignature, InvalidSignatureMethod, InvalidAppKey, MissingAppKey,
 *     IllegalAccessToken ("The specified access token is invalid or expired"),
 *     MissingAccessToken; and HTTP 401 / 403                            auth (**)
 *     (IllegalAccessToken, IncompleteSignature and InvalidAppKey are seen in public captures of
 *     the live gateway; the others are the same family's names, unconfirmed)
 *   error_response, the clock: InvalidTimestamp, MissingTimestamp      transient (*)
 *   error_response, the API is not open to this app: InsufficientPermission, InvalidMethod,
 *     MissingMethod, InvalidFormat                                       permanent (api-wide)
 *   error_response, the request: InvalidParameter, MissingParameter, InvalidRequest,
 *     ProductNotFound, and any other (ISV) code                         permanent
 * (*) Every call fails alike until the token, secret or clock is fixed: no outbox row or stock
 * value is at fault, so none is held or dropped; the link goes down with the platform's reason
 * (tally status, a sync event) and is probed with the engine's capped backoff. Classed
 * permanent, pulls (whose permanent failures count as an answer) and pushes (whose transient
 * ones take the link down) would flap the link, and every "link is back" starts all rounds
 * at once: a hot loop, seen against a gateway refusing one method.
 * (**) SYNC_AUTH: as (*), but the link shows auth_failed with one exception, and nothing is
 * sent until the secret files change or `tally sync` asks (sync.c); the rows stay pending.
 * A detail (product or order) refused for its own parameters, ProductNotFound or
 * ORDER_NOT_FOUND is skipped and counted; any transient detail failure makes the whole page
 * transient (nothing of it is applied); an api-wide refusal makes it permanent (the round
 * ends; the stream shows the reason).
 * Business codes: fulfil codes with SYSTEM / BUSY / TIMEOUT / LIMIT -> transient;
 * ORDER_ALREADY_SHIPPED without a read-back this attempt -> transient (read back next time);
 * others (ORDER_NOT_FOUND, ORDER_STATUS_NOT_ALLOWED, ...) -> permanent. Inventory update per
 * product: SYSTEM_ERROR -> transient; PRODUCT_NOT_FOUND, SKU_NOT_FOUND, INVALID_INVENTORY,
 * PARAM_ERROR -> permanent.
 *
 * Everything read from an answer is range-checked; strings are validated (mp_id_ok /
 * mp_text_ok) before they reach SQLite. A row that cannot be read is skipped and counted, a
 * field that cannot be read is dropped and counted; one warning per page says how many.
 * Secrets (app secret, access token) are read at init, never logged, and wiped at free; the
 * request body, which carries the token, is wiped once curl has copied it.
 */
#include <ctype.h>
#include <inttypes.h>
#include <regex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <msgpack.h>

#include "catalog.h"
#include "codec.h"
#include "enums.h"
#include "events.h"
#include "iop_sign.h"
#include "json.h"
#include "log.h"
#include "orders.h"
#include "reserve.h"
#include "secret.h"
#include "tally/protocol.h"
#include "upstream.h"

#define METHOD_PRODUCT_LIST "aliexpress.solution.product.list.get"
#define METHOD_PRODUCT_INFO "aliexpress.solution.product.info.get"
#define METHOD_INVENTORY "aliexpress.solution.batch.product.inventory.update"
#define METHOD_ORDER_LIST "aliexpress.solution.order.get"
#define METHOD_ORDER_INFO "aliexpress.solution.order.info.get"
#define METHOD_FULFIL "aliexpress.solution.order.fulfill"
#define METHOD_LOGISTICS "aliexpress.logistics.redefining.listlogisticsservice"
#define METHOD_RECEIPT "aliexpress.solution.order.receiptinfo.get"

#define PRODUCT_PAGE 50    /* product.list.get page_size: "must be less than 100" */
#define ORDER_PAGE 50      /* order.get page_size: the platform's largest */
#define MAX_PAGE_ITEMS 500 /* more entries than asked for: the answer is not trusted */
#define DETAIL_PARALLEL 8  /* detail requests in flight per page (capped by max_parallel) */
#define PUBLISH_PRODUCTS 20
#define PUBLISH_SKUS 200
#define PUBLISH_MAX_VALUE 999999
#define MAX_PARAMS 8
#define MAX_ANSWER HTTP_MAX_ANSWER    /* a page of 50 orders or 100 products, or one detail */
#define MAX_PRICE_MINOR 10000000000LL /* as importer.c */
#define MAX_LINE_QTY 1000000LL
#define MAX_LINES 100
#define MAX_ATTRIBUTES 32
#define MAX_TIME 253402300799LL             /* 9999-12-31 */
#define MAX_LEFT_MS (3650LL * 86400 * 1000) /* ten years of handling time, either way */
#define JSON_ID_MAX 9007199254740992.0      /* 2^53: ids as JSON numbers are exact below */
#define ID_LEN 24                           /* a platform id in digits, and its NUL */
#define CARRY_MAX_S 900     /* a failed page's details are reused this long (see pull_finish) */
#define CLOCK_BOUND_S 7200  /* a Date header further from our clock is ignored */
#define MAX_SERVICES 500    /* logistics services in one list: more, the answer is not trusted */
#define REGEX_MAX 512       /* a tracking_no_regex longer than this is not checked */
#define REGEX_COST_MAX 4096 /* nor one regcomp would build larger than this (ere_small) */

enum { STREAM_CATALOG, STREAM_ORDERS, STREAM_LOGISTICS, STREAM_RECEIPTS };
static const char *const ae_streams[] = {"catalog", "orders", "logistics", "receipts"};
#define RECEIPT_PAGE 8  /* masked orders whose ship-to a receipts page reads */
#define SEEN_LEN 96     /* orders.mp_seen: "yyyy-MM-dd HH:mm:ss|" + a status, and its NUL */
#define SEEN_SETTLE_S 2 /* a gmt_update this close to the list's Date is not trusted */

/* Statuses asked for by the order list: the platform's eleven (enum_order_status, the one
 * table), FINISH last there so that a stream's first round can leave it out. */
static size_t order_status_count(void)
{
    size_t n = 0;
    while (enum_order_status.values[n])
        n++;
    return n;
}

/* product.list.get's product_status_type (required), the four documented values, in the order
 * a catalog round lists them. */
static const char *const product_statuses[] = {"onSelling", "offline", "auditing",
                                               "editingRequired"};
#define N_PRODUCT_STATUSES (int)(sizeof product_statuses / sizeof product_statuses[0])

struct ae {
    char secret[256]; /* secret: the app secret (signing key) */
    char token[1024]; /* secret: the seller's access token */
    enum iop_sign_method sign;
    bool have_offset;
    int64_t offset_s;         /* the gateway's clock minus ours, from answers' Date header */
    struct call_link *calls;  /* requests in flight (struct ae_call) */
    struct call_link *pulls;  /* pages not yet handed to the engine (struct ae_pull) */
    struct ae_pull *carry[2]; /* per stream: a page that failed, with what it had read */
    char regex_warned[8][65]; /* services whose tracking_no_regex was logged as not checkable */
    struct ae_rcpt *rcpt;     /* the receipts page in progress */
};

enum call_kind { CALL_LIST, CALL_DETAIL, CALL_PUBLISH, CALL_PUSH, CALL_SERVICES, CALL_RECEIPT };

struct ae_call;
/* Called once with the verdict and, on SYNC_OK, the method's response object. */
typedef void (*answer_fn)(struct ae_call *c, int outcome, const cJSON *resp);

/* One gateway request. */
struct ae_call {
    struct call_link node; /* first: the list casts */
    struct http_req req;
    struct upstream *u;
    int kind;
    const char *method;
    cJSON *doc; /* the parsed answer; an answer function may take it (and set NULL) */
    char error[256];
    char code[64];  /* error_response code, "" when none */
    bool api_wide;  /* refused for the API as a whole (not open to this app), not the call */
    int64_t gw_now; /* the answer's Date (the gateway's clock), 0 when absent or out of bounds */
    answer_fn answer;
    void *owner;
    int index;
    char ref[TALLY_MAX_ID_LEN + 1]; /* fulfil: the logistics number sent */
    bool read_back;                 /* fulfil: sent after the order was read back; read-back:
                                     * after a refusal (it->error holds it) */
};

/* One product or order of a list page and its detail. */
struct ae_item {
    char id[ID_LEN];      /* "" when the list entry had no readable id */
    const cJSON *summary; /* the list's entry (inside the list answer) */
    cJSON *doc;           /* the detail answer, once in */
    const cJSON *detail;  /* product.info.get result / order.info.get result.data */
    const char *status;   /* orders: the status stored (for the new-order event) */
    char seen[SEEN_LEN];  /* orders: the list entry's "gmt_update|order_status" to store with
                           * the details (orders.mp_seen), "" when not to be trusted */
    bool created;         /* orders: inserted by this page */
    bool done;            /* read, gone or skipped: not asked again */
};

/* One page of a stream, from the list request to the engine's release(). */
struct ae_pull {
    struct call_link node; /* first */
    struct upstream *u;
    int stream;
    struct pull_page page;
    int64_t page_no;
    int status_idx; /* catalog: the product_status_type listed (product_statuses) */
    int64_t pages;  /* the list answer's total_page */
    bool new_round;
    bool initial;        /* the stream's first round: no window, no new-order events */
    bool full;           /* no window: the first round, or the engine's reconciliation */
    int64_t window_from; /* modified-time filter (gateway clock), 0 for none */
    int64_t started;     /* our clock when asked */
    int64_t server_now;  /* orders: the list answer's Date, 0 when unknown */
    int worst;           /* SYNC_OK, or the page's failure */
    cJSON *list;
    struct ae_item *items;
    int n, next, inflight, parallel;
    int64_t bad, dropped, gone;
    int64_t unchanged; /* orders: entries whose stored details are current (not read) */
    char problem[160]; /* the first skipped row's or dropped field's reason */
};

/* A publish batch while its call runs. */
struct ae_pub {
    struct publish_batch *b;
    int ngroups;
    int64_t pid[PUBLISH_PRODUCTS];
    int *group; /* per item: its product group in the call, -1 when not sent */
};

static int64_t wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int64_t min64(int64_t a, int64_t b)
{
    return a < b ? a : b;
}

/* ---- the platform's time: "yyyy-MM-dd HH:mm:ss", US Pacific ---- */

static int64_t floor_div(int64_t a, int64_t b)
{
    int64_t q = a / b;
    return (a % b != 0 && (a < 0) != (b < 0)) ? q - 1 : q;
}

static int64_t days_from_civil(int64_t y, int m, int d)
{
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    int64_t yoe = y - era * 400;
    int64_t doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;
    int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

static void civil_from_days(int64_t z, int64_t *y, int *m, int *d)
{
    z += 719468;
    int64_t era = (z >= 0 ? z : z - 146096) / 146097;
    int64_t doe = z - era * 146097;
    int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    int64_t mp = (5 * doy + 2) / 153;
    *d = (int)(doy - (153 * mp + 2) / 5 + 1);
    *m = (int)(mp < 10 ? mp + 3 : mp - 9);
    *y = yoe + era * 400 + (*m <= 2);
}

/* Day number of the n-th Sunday of month m. */
static int64_t nth_sunday(int64_t y, int m, int n)
{
    int64_t d1 = days_from_civil(y, m, 1);
    int64_t wd = ((d1 + 4) % 7 + 7) % 7; /* 0 = Sunday; 1970-01-01 was a Thursday */
    return d1 + (7 - wd) % 7 + 7 * (n - 1);
}

/* US daylight saving (the rule since 2007): from 02:00 PST on the second Sunday of March to
 * 02:00 PDT on the first Sunday of November. Computed here, not from the host's tz data. */
static bool pacific_dst(int64_t t)
{
    int64_t y;
    int m, d;
    civil_from_days(floor_div(t - 8 * 3600, 86400), &y, &m, &d);
    int64_t start = nth_sunday(y, 3, 2) * 86400 + 10 * 3600;
    int64_t end = nth_sunday(y, 11, 1) * 86400 + 9 * 3600;
    return t >= start && t < end;
}

static void format_pacific(int64_t t, char out[32])
{
    int64_t local = t - (pacific_dst(t) ? 7 : 8) * 3600;
    int64_t days = floor_div(local, 86400), secs = local - days * 86400, y;
    int m, d;
    civil_from_days(days, &y, &m, &d);
    snprintf(out, 32, "%04d-%02d-%02d %02d:%02d:%02d", (int)y, m, d, (int)(secs / 3600),
             (int)(secs / 60 % 60), (int)(secs % 60));
}

static int digits(const char *s, int n)
{
    int v = 0;
    for (int i = 0; i < n; i++)
        v = v * 10 + (s[i] - '0');
    return v;
}

/* Parses exactly "yyyy-MM-dd HH:mm:ss" (Pacific) into epoch seconds; 0 or -1. An hour that
 * occurs twice (November) is read as its first (PDT) occurrence: the earlier instant, which
 * for a window start only widens it. */
static int parse_pacific(const char *s, int64_t *out)
{
    static const char shape[] = "dddd-dd-dd dd:dd:dd";
    static const int mdays[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    if (!s || strlen(s) != sizeof shape - 1)
        return -1;
    for (size_t i = 0; i < sizeof shape - 1; i++) {
        bool digit = s[i] >= '0' && s[i] <= '9';
        if (shape[i] == 'd' ? !digit : s[i] != shape[i])
            return -1;
    }
    int y = digits(s, 4), mo = digits(s + 5, 2), d = digits(s + 8, 2);
    int h = digits(s + 11, 2), mi = digits(s + 14, 2), se = digits(s + 17, 2);
    if (y < 1970 || mo < 1 || mo > 12 || d < 1 || h > 23 || mi > 59 || se > 59)
        return -1;
    bool leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    if (d > mdays[mo - 1] + (mo == 2 && leap))
        return -1;
    int64_t local = days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + se;
    int64_t as_pdt = local + 7 * 3600;
    int64_t t = pacific_dst(as_pdt) ? as_pdt : local + 8 * 3600;
    if (t < 0 || t > MAX_TIME)
        return -1;
    *out = t;
    return 0;
}

/* ---- money: decimal strings to minor units, exactly ---- */

static bool iso_upper(const char *s, size_t len)
{
    if (!s || strlen(s) != len)
        return false;
    for (size_t i = 0; i < len; i++)
        if (s[i] < 'A' || s[i] > 'Z')
            return false;
    return true;
}

/* Decimal places of an ISO 4217 currency's minor unit. */
static int currency_exponent(const char *c)
{
    static const char zero[] =
        "BIF CLP DJF GNF ISK JPY KMF KRW PYG RWF UGX UYI VND VUV XAF XOF XPF";
    static const char three[] = "BHD IQD JOD KWD LYD OMR TND";
    if (strstr(zero, c))
        return 0;
    if (strstr(three, c))
        return 3;
    return 2;
}

/* "22.31" -> 2231 with exp 2. Digits, optionally '.' and digits; more decimals than the
 * currency has are accepted only when they are zeros. No sign, no exponent, no spaces. */
static int parse_amount(const char *s, int exp, int64_t *minor)
{
    if (!s)
        return -1;
    int64_t v = 0;
    int n = 0, taken = 0;
    for (; *s >= '0' && *s <= '9'; s++, n++) {
        if (v > MAX_PRICE_MINOR)
            return -1;
        v = v * 10 + (*s - '0');
    }
    if (n == 0)
        return -1;
    if (*s == '.') {
        s++;
        if (!(*s >= '0' && *s <= '9'))
            return -1;
        for (; *s >= '0' && *s <= '9'; s++) {
            if (taken < exp) {
                v = v * 10 + (*s - '0');
                taken++;
            } else if (*s != '0') {
                return -1;
            }
        }
    }
    if (*s)
        return -1;
    for (; taken < exp; taken++)
        v *= 10;
    if (v > MAX_PRICE_MINOR)
        return -1;
    *minor = v;
    return 0;
}

/* A money object {"currency_code", "amount"} (or "cent" with a matching "cent_factor"). */
static int money(const cJSON *m, int64_t *minor, char currency[4])
{
    const char *c = json_str(m, "currency_code");
    if (!iso_upper(c, 3))
        return -1;
    int exp = currency_exponent(c);
    const char *amount = json_str(m, "amount");
    if (amount) {
        if (parse_amount(amount, exp, minor) != 0)
            return -1;
    } else {
        int64_t cent, factor, want = exp == 0 ? 1 : exp == 3 ? 1000 : 100;
        if (json_int(m, "cent", 0, MAX_PRICE_MINOR, &cent) != 0 ||
            json_int(m, "cent_factor", 1, 1000, &factor) != 0 || factor != want)
            return -1;
        *minor = cent;
    }
    memcpy(currency, c, 4);
    return 0;
}

/* ---- reading answers ---- */

static const cJSON *member(const cJSON *o, const char *key)
{
    return cJSON_GetObjectItemCaseSensitive(o, key);
}

/* The platform wraps lists in an object named after the element type:
 * "target_list": {"order_dto": [...]}. A bare array is taken too. NULL when absent. */
static const cJSON *list_of(const cJSON *o, const char *key, const char *elem)
{
    const cJSON *w = member(o, key);
    if (cJSON_IsArray(w))
        return w;
    w = member(w, elem);
    return cJSON_IsArray(w) ? w : NULL;
}

/* A platform id (product, order): a JSON number in [1, 2^53) (a larger one cannot be read
 * exactly from a double: refused, never rounded) or a string of 1-20 digits
 * without a leading zero, as canonical digits. */
static bool id_text(const cJSON *v, char out[ID_LEN])
{
    if (cJSON_IsNumber(v)) {
        double d = v->valuedouble;
        if (!(d >= 1 && d < JSON_ID_MAX) || (double)(int64_t)d != d)
            return false;
        snprintf(out, ID_LEN, "%" PRId64, (int64_t)d);
        return true;
    }
    if (!cJSON_IsString(v))
        return false;
    const char *s = v->valuestring;
    size_t n = strlen(s);
    if (n == 0 || n > 20 || s[0] == '0')
        return false;
    for (size_t i = 0; i < n; i++)
        if (s[i] < '0' || s[i] > '9')
            return false;
    memcpy(out, s, n + 1);
    return true;
}

/* The string member when it is text of 1..max bytes (UTF-8, no control characters). */
static const char *jtext(const cJSON *o, const char *key, size_t max)
{
    const char *s = json_str(o, key);
    size_t n = s ? strlen(s) : 0;
    return n > 0 && n <= max && mp_text_ok(s, n) ? s : NULL;
}

/* The string member when it is an identifier (1-64 printable ASCII, no spaces). */
static const char *jid(const cJSON *o, const char *key)
{
    const char *s = json_str(o, key);
    return s && mp_id_ok(s, strlen(s)) ? s : NULL;
}

/* Whether `tok` occurs in `s` as a whole word (not inside a longer identifier). */
static bool has_token(const char *s, const char *tok)
{
    size_t n = strlen(tok);
    if (!s || n == 0)
        return false;
    for (const char *p = strstr(s, tok); p; p = strstr(p + 1, tok)) {
        char before = p > s ? p[-1] : ' ', after = p[n];
        bool wb = (before >= '0' && before <= '9') || (before >= 'A' && before <= 'Z') ||
                  (before >= 'a' && before <= 'z') || before == '-' || before == '_';
        bool wa = (after >= '0' && after <= '9') || (after >= 'A' && after <= 'Z') ||
                  (after >= 'a' && after <= 'z') || after == '-' || after == '_';
        if (!wb && !wa)
            return true;
    }
    return false;
}

/* An answer's Date header (the gateway's clock, epoch seconds, 0 when none): learns the clock
 * offset when it is within CLOCK_BOUND_S of ours; the time, or 0 when not taken. */
static int64_t note_date(struct ae *a, int64_t date)
{
    /* Read now, after the answer arrived, and Date is truncated to the second: the offset is
     * never overestimated, so a window start computed from it is at worst a little early. */
    int64_t off = date - store_now();
    if (date <= 0 || off > CLOCK_BOUND_S || off < -CLOCK_BOUND_S)
        return 0;
    a->offset_s = off;
    a->have_offset = true;
    return date;
}

/* ---- gateway calls ---- */

static void wipe(struct jbuf *b)
{
    if (b->p)
        explicit_bzero(b->p, b->cap);
    jb_free(b);
}

static void call_free(struct ae_call *c)
{
    http_req_reset(&c->req);
    cJSON_Delete(c->doc);
    free(c);
}

static const struct {
    const char *code;
    int outcome;
    bool api_wide;
} gateway_codes[] = {
    {"ApiCallLimit", SYNC_TRANSIENT, false},
    {"AppCallLimit", SYNC_TRANSIENT, false},
    {"SessionCallLimit", SYNC_TRANSIENT, false},
    {"SystemError", SYNC_TRANSIENT, false},
    {"SystemBusy", SYNC_TRANSIENT, false},
    {"ServiceUnavailable", SYNC_TRANSIENT, false},
    {"ServiceTimeout", SYNC_TRANSIENT, false},
    {"InternalError", SYNC_TRANSIENT, false},
    {"IncompleteSignature", SYNC_AUTH, false},
    {"InvalidSignature", SYNC_AUTH, false},
    {"MissingSignature", SYNC_AUTH, false},
    {"InvalidSignatureMethod", SYNC_AUTH, false},
    {"InvalidAppKey", SYNC_AUTH, false},
    {"MissingAppKey", SYNC_AUTH, false},
    {"IllegalAccessToken", SYNC_AUTH, false},
    {"MissingAccessToken", SYNC_AUTH, false},
    {"InvalidTimestamp", SYNC_TRANSIENT, false},
    {"MissingTimestamp", SYNC_TRANSIENT, false},
    {"InsufficientPermission", SYNC_PERMANENT, true},
    {"InvalidMethod", SYNC_PERMANENT, true},
    {"MissingMethod", SYNC_PERMANENT, true},
    {"InvalidFormat", SYNC_PERMANENT, true},
    {"InvalidParameter", SYNC_PERMANENT, false},
    {"MissingParameter", SYNC_PERMANENT, false},
    {"InvalidRequest", SYNC_PERMANENT, false},
    {"ProductNotFound", SYNC_PERMANENT, false},
};

/* Classifies an error_response {"type", "code", "msg", "sub_code"?}. */
static int gateway_error(struct ae_call *c, const cJSON *er)
{
    const cJSON *code = member(er, "code");
    const char *type = json_str(er, "type"), *sub = json_str(er, "sub_code");
    const char *msg = json_str(er, "msg");
    if (cJSON_IsString(code) && mp_id_ok(code->valuestring, strlen(code->valuestring)))
        snprintf(c->code, sizeof c->code, "%s", code->valuestring);
    else if (cJSON_IsNumber(code) && code->valuedouble >= 0 && code->valuedouble < 1e9)
        snprintf(c->code, sizeof c->code, "%d", (int)code->valuedouble);
    else
        snprintf(c->code, sizeof c->code, "unknown");
    if (msg && !mp_text_ok(msg, strlen(msg)))
        msg = NULL;
    snprintf(c->error, sizeof c->error, "%.63s: %.180s", c->code, msg ? msg : "(no message)");
    for (size_t i = 0; i < sizeof gateway_codes / sizeof gateway_codes[0]; i++) {
        if (!strcmp(c->code, gateway_codes[i].code)) {
            c->api_wide = gateway_codes[i].api_wide;
            return gateway_codes[i].outcome;
        }
    }
    if (strstr(c->code, "CallLimit") || strstr(c->code, "Limited") ||
        (type && !strcmp(type, "ISP")) || (sub && !strncmp(sub, "isp.", 4)) ||
        !strcmp(c->code, "7") /* TOP numbering: App Call Limited */)
        return SYNC_TRANSIENT;
    return SYNC_PERMANENT;
}

/* The verdict on an answer; on SYNC_OK *resp is the method's response object. */
static int verdict(struct ae_call *c, const cJSON **resp)
{
    struct http_req *r = &c->req;
    /* A read whose answer is larger than one can honestly be gets the same answer when asked
     * again: it fails as refused (a detail is skipped, a list page ends the round with the
     * stream's last_error), not as a failed link. A write's answer is another matter: the
     * request may have been applied, so it stays a lost answer (transient). */
    bool read = c->kind == CALL_LIST || c->kind == CALL_DETAIL || c->kind == CALL_SERVICES ||
                c->kind == CALL_RECEIPT;
    if (r->curl_code != 0 && r->too_large) {
        snprintf(c->error, sizeof c->error, "%s: %.200s", read ? "refused" : "no answer", r->error);
        c->api_wide = false;
        return read ? SYNC_PERMANENT : SYNC_TRANSIENT;
    }
    if (r->curl_code != 0) {
        snprintf(c->error, sizeof c->error, "no answer: %.200s", r->error);
        return SYNC_TRANSIENT;
    }
    if (r->response && r->response_len) {
        c->doc = json_parse(r->response, r->response_len);
        if (!c->doc && !json_within_bound(r->response, r->response_len)) {
            snprintf(c->error, sizeof c->error, "%s: answer of more than %d values (%zu bytes)",
                     read ? "refused" : "unreadable answer", JSON_MAX_VALUES, r->response_len);
            c->api_wide = false;
            return read ? SYNC_PERMANENT : SYNC_TRANSIENT;
        }
    }
    const cJSON *er = member(c->doc, "error_response");
    if (r->status < 200 || r->status >= 300) {
        char detail[230] = "";
        if (cJSON_IsObject(er)) {
            gateway_error(c, er);
            snprintf(detail, sizeof detail, ": %.200s", c->error);
        }
        snprintf(c->error, sizeof c->error, "HTTP %ld%s", r->status, detail);
        c->api_wide = false;
        if (r->status == 401 || r->status == 403)
            return SYNC_AUTH;
        return r->status == 408 || r->status == 429 || r->status >= 500 ? SYNC_TRANSIENT
                                                                        : SYNC_PERMANENT;
    }
    if (!cJSON_IsObject(c->doc)) {
        snprintf(c->error, sizeof c->error, "unreadable answer (%zu bytes)", r->response_len);
        return SYNC_TRANSIENT;
    }
    if (cJSON_IsObject(er))
        return gateway_error(c, er);
    char key[96];
    snprintf(key, sizeof key, "%s_response", c->method);
    for (char *k = key; *k; k++)
        if (*k == '.')
            *k = '_';
    const cJSON *rsp = member(c->doc, key);
    if (!cJSON_IsObject(rsp)) {
        snprintf(c->error, sizeof c->error, "answer without %s", key);
        return SYNC_TRANSIENT;
    }
    *resp = rsp;
    return SYNC_OK;
}

static void on_answer(struct http_req *r)
{
    struct ae_call *c = r->data;
    struct ae *a = c->u->conn;
    call_link_remove(&a->calls, &c->node);
    const cJSON *resp = NULL;
    if (c->req.curl_code == 0)
        c->gw_now = note_date(a, c->req.date);
    int outcome = verdict(c, &resp);
    c->answer(c, outcome, resp);
    call_free(c);
}

/* Tests only (tests/unit/test_ae_fixtures.c, which includes this file): sees each request's
 * parameters, every one but sign, as they are signed and sent. NULL in the daemon. */
static void (*request_seen)(const char *method, const struct iop_param *all, size_t n);

/* Signs and starts one request; NULL when it could not be started (answer is not called). */
static struct ae_call *call_start(struct upstream *u, int kind, const char *method,
                                  const struct iop_param *params, size_t n, answer_fn answer,
                                  void *owner, int index)
{
    struct ae *a = u->conn;
    struct iop_param all[6 + MAX_PARAMS];
    if (n > MAX_PARAMS)
        return NULL;
    struct ae_call *c = calloc(1, sizeof *c);
    if (!c)
        return NULL;
    char ts[24], sign[65];
    snprintf(ts, sizeof ts, "%" PRId64, wall_ms());
    size_t k = 0;
    all[k++] = (struct iop_param){"app_key", u->mp->app_key};
    all[k++] = (struct iop_param){"method", method};
    all[k++] = (struct iop_param){"timestamp", ts};
    all[k++] = (struct iop_param){"sign_method", a->sign == IOP_SIGN_MD5 ? "md5" : "sha256"};
    all[k++] = (struct iop_param){"session", a->token};
    all[k++] = (struct iop_param){"format", "json"};
    for (size_t i = 0; i < n; i++)
        all[k++] = params[i];
    if (request_seen)
        request_seen(method, all, k);
    struct jbuf body = {0};
    if (iop_sign(a->sign, a->secret, NULL, all, k, sign) != 0) {
        free(c);
        return NULL;
    }
    for (size_t i = 0; i < k; i++) {
        if (i)
            jb_lit(&body, "&");
        jb_form(&body, all[i].name);
        jb_lit(&body, "=");
        jb_form(&body, all[i].value);
    }
    jb_lit(&body, "&sign=");
    jb_lit(&body, sign);
    c->u = u;
    c->kind = kind;
    c->method = method;
    c->answer = answer;
    c->owner = owner;
    c->index = index;
    c->req.data = c;
    c->req.url = u->mp->gateway;
    c->req.method = "POST";
    c->req.content_type = "application/x-www-form-urlencoded;charset=utf-8";
    c->req.body = body.p;
    c->req.body_len = body.len;
    c->req.max_response = MAX_ANSWER;
    /* The platform has no idempotency key for a shipment: libcurl must not send one twice. */
    c->req.fresh_connect = !strcmp(method, METHOD_FULFIL);
    c->req.done = on_answer;
    upstream_timeouts(u, &c->req);
    int rc = body.failed ? -1 : http_start(u->http, &c->req);
    /* curl copied the body (it carries the access token): wipe ours now. */
    wipe(&body);
    c->req.body = NULL;
    c->req.body_len = 0;
    if (rc != 0) {
        call_free(c);
        return NULL;
    }
    call_link_add(&a->calls, &c->node);
    return c;
}

/* ---- pulls: a list page, then the details of its entries ---- */

static void free_pull(struct ae_pull *p)
{
    for (int i = 0; i < p->n; i++)
        cJSON_Delete(p->items[i].doc);
    free(p->items);
    cJSON_Delete(p->list);
    free(p);
}

static void release_pull(struct pull_page *pg)
{
    struct ae_pull *p = pg->data;
    free_pull(p);
}

static void release_nothing(struct pull_page *pg)
{
    (void)pg;
}

/* A row that cannot be read is skipped: counted, and the first reason kept for the log. */
static void skip_row(struct ae_pull *p, const char *fmt, const char *what)
{
    p->bad++;
    if (!p->problem[0])
        snprintf(p->problem, sizeof p->problem, fmt, what);
}

static void drop_field(struct ae_pull *p, const char *fmt, const char *what)
{
    p->dropped++;
    if (!p->problem[0])
        snprintf(p->problem, sizeof p->problem, fmt, what);
}

static void page_warn(const struct ae_pull *p, const char *rows)
{
    if (p->bad || p->dropped)
        log_warn("%s: page %" PRId64 ": %" PRId64 " %s skipped, %" PRId64
                 " fields dropped (first: %s)",
                 p->u->streams[p->stream].name, p->page_no, p->bad, rows, p->dropped, p->problem);
    if (p->gone)
        log_info("%s: page %" PRId64 ": %" PRId64 " %s gone before their details were read",
                 p->u->streams[p->stream].name, p->page_no, p->gone, rows);
}

static int apply_catalog(struct pull_page *pg, struct store *st, struct checkpoint *cp, char *err,
                         size_t errlen);
static int apply_orders(struct pull_page *pg, struct store *st, struct checkpoint *cp, char *err,
                        size_t errlen);

/*
 * Hands the page to the engine (which then owns it until release). A page that failed
 * transiently after its list was read is kept instead: the engine gets a failure, and when it
 * asks for the same page again (after its backoff) only what is missing is asked for. Under
 * flow control a page of 100 details would otherwise almost never come through whole.
 */
static void pull_finish(struct ae_pull *p)
{
    struct ae *a = p->u->conn;
    call_link_remove(&a->pulls, &p->node);
    if (p->worst == SYNC_TRANSIENT && p->list) {
        struct pull_page failed = {.outcome = SYNC_TRANSIENT,
                                   .retry_after_s = p->page.retry_after_s,
                                   .release = release_nothing};
        snprintf(failed.error, sizeof failed.error, "%s", p->page.error);
        if (a->carry[p->stream])
            free_pull(a->carry[p->stream]);
        a->carry[p->stream] = p;
        sync_pull_done(p->u, p->stream, &failed);
        return;
    }
    struct pull_page *pg = &p->page;
    pg->outcome = p->worst;
    if (p->worst != SYNC_OK && !pg->error[0])
        snprintf(pg->error, sizeof pg->error, "page %" PRId64 " failed", p->page_no);
    pg->rows = p->n;
    pg->apply = p->stream == STREAM_CATALOG ? apply_catalog : apply_orders;
    pg->release = release_pull;
    pg->data = p;
    sync_pull_done(p->u, p->stream, pg);
}

static void page_failed(struct ae_pull *p, int outcome, const struct ae_call *c)
{
    /* Refused credentials win (the whole upstream waits); then a transient failure: the page
     * is asked again soon rather than at the interval. */
    if (p->worst != SYNC_AUTH && (p->worst != SYNC_TRANSIENT || outcome == SYNC_AUTH)) {
        p->worst = outcome;
        snprintf(p->page.error, sizeof p->page.error, "%s", c->error);
    }
    if (c->req.retry_after_s > p->page.retry_after_s)
        p->page.retry_after_s = c->req.retry_after_s;
}

static void on_detail(struct ae_call *c, int outcome, const cJSON *resp);

static bool detail_start(struct ae_pull *p, int i)
{
    struct ae_item *it = &p->items[i];
    if (p->stream == STREAM_CATALOG) {
        struct iop_param prm = {"product_id", it->id};
        return call_start(p->u, CALL_DETAIL, METHOD_PRODUCT_INFO, &prm, 1, on_detail, p, i);
    }
    char q[64];
    snprintf(q, sizeof q, "{\"order_id\":%s}", it->id);
    struct iop_param prm = {"param1", q};
    return call_start(p->u, CALL_DETAIL, METHOD_ORDER_INFO, &prm, 1, on_detail, p, i);
}

/* Starts details while there is room; finishes the page when nothing is left in flight. */
static void pump(struct ae_pull *p)
{
    while (p->worst == SYNC_OK && p->inflight < p->parallel && p->next < p->n) {
        int i = p->next++;
        if (p->items[i].done)
            continue;
        if (!detail_start(p, i)) {
            p->worst = SYNC_TRANSIENT;
            snprintf(p->page.error, sizeof p->page.error, "could not start a request");
            break;
        }
        p->inflight++;
    }
    if (p->inflight == 0 && (p->worst != SYNC_OK || p->next >= p->n))
        pull_finish(p); /* p may be gone now */
}

static void on_detail(struct ae_call *c, int outcome, const cJSON *resp)
{
    struct ae_pull *p = c->owner;
    struct ae_item *it = &p->items[c->index];
    p->inflight--;
    it->done = true; /* unless it failed transiently, below */
    const cJSON *res = member(resp, "result");
    if (outcome == SYNC_OK && p->stream == STREAM_ORDERS && cJSON_IsObject(res)) {
        /* Success is data present and no error_code (a null or empty one is none): the
         * documented result has no success flag (a result_success false, which some answers
         * carry, is read as a refusal). */
        const cJSON *ec = member(res, "error_code");
        bool refused = ec && !cJSON_IsNull(ec) && !(cJSON_IsString(ec) && !ec->valuestring[0]);
        if (refused || !cJSON_IsObject(member(res, "data")) ||
            cJSON_IsFalse(member(res, "result_success"))) {
            const char *code = jid(res, "error_code");
            if (code && !strcmp(code, "ORDER_NOT_FOUND")) {
                p->gone++;
            } else if (code && (strstr(code, "SYSTEM") || strstr(code, "BUSY"))) {
                snprintf(c->error, sizeof c->error, "order %s: %s", it->id, code);
                page_failed(p, SYNC_TRANSIENT, c);
                it->done = false;
            } else {
                skip_row(p, "order detail refused: %s", code ? code : "no data");
            }
            pump(p);
            return;
        }
        res = member(res, "data");
    }
    if (outcome == SYNC_OK) {
        if (cJSON_IsObject(res)) {
            it->doc = c->doc; /* kept until the page is released */
            c->doc = NULL;
            it->detail = res;
        } else {
            skip_row(p, "a detail answer without its result (%s)", it->id);
        }
    } else if (outcome == SYNC_PERMANENT && !c->api_wide) {
        if (!strcmp(c->code, "ProductNotFound"))
            p->gone++;
        else
            skip_row(p, "detail refused: %.120s", c->error);
    } else {
        page_failed(p, outcome, c);
        it->done = false;
    }
    pump(p);
}

/* What a refusal's error_code means, in a list answer or for one product of a stock update:
 * the gateway's own codes keep their meaning (ApiCallLimit is flow control, a refused token is
 * refused credentials); other codes naming the platform's failure or a limit, in any letter
 * case (SystemBusy, ISV_CALL_LIMIT), are transient; any other is a refusal. */
static int refusal_outcome(const char *code)
{
    if (!code)
        return SYNC_PERMANENT;
    for (size_t i = 0; i < sizeof gateway_codes / sizeof gateway_codes[0]; i++)
        if (!strcmp(code, gateway_codes[i].code))
            return gateway_codes[i].outcome;
    char up[64];
    snprintf(up, sizeof up, "%s", code);
    for (size_t i = 0; up[i]; i++)
        up[i] = (char)toupper((unsigned char)up[i]);
    bool transient =
        strstr(up, "SYSTEM") || strstr(up, "BUSY") || strstr(up, "TIMEOUT") || strstr(up, "LIMIT");
    return transient ? SYNC_TRANSIENT : SYNC_PERMANENT;
}

/* A list answer with success false: the platform refused the request (a parameter, the
 * account) or failed itself. The reason from error_code and error_msg / error_message. */
static int list_refused(struct ae_pull *p, const struct ae_call *c, const cJSON *res)
{
    const cJSON *ec = member(res, "error_code");
    char code[64] = "";
    if (cJSON_IsString(ec) && mp_id_ok(ec->valuestring, strlen(ec->valuestring)))
        snprintf(code, sizeof code, "%s", ec->valuestring);
    else if (cJSON_IsNumber(ec) && ec->valuedouble >= -1e9 && ec->valuedouble < 1e9)
        snprintf(code, sizeof code, "%d", (int)ec->valuedouble);
    const char *msg = json_str(res, "error_msg");
    if (!msg)
        msg = json_str(res, "error_message");
    if (msg && !mp_text_ok(msg, strlen(msg)))
        msg = NULL;
    snprintf(p->page.error, sizeof p->page.error, "%s refused: %.40s %.120s", c->method,
             code[0] ? code : "(no code)", msg ? msg : "(no message)");
    return refusal_outcome(code);
}

/*
 * What an order list entry says of the order's last change, to be stored with the details
 * read after it (orders.mp_seen): "gmt_update|order_status". OrderDto's gmt_update is "Last
 * order update time" (bububa/opentaobao model/aesolution/OrderDto.go; the platform's sample
 * answer, tests/fixtures/aliexpress/order_get.answer.json, carries it). Its zone is not
 * documented (gmt_create and gmt_pay_time are US Pacific): it is compared as text, equal or
 * not, and read as Pacific only to tell whether it is settled: an update in the same second
 * as the list answer (its Date, whole seconds) may be followed, within that second and after
 * the detail was read, by another that leaves the same text, so such an entry records
 * nothing (its details are read again next round). Read in a zone east of Pacific (GMT+8,
 * UTC) the text names a later instant: never settled, every detail is read, as before.
 * False (read the details, record nothing) without a readable gmt_update, order_status or
 * Date.
 */
static bool order_seen(const struct ae_pull *p, const cJSON *e, char out[SEEN_LEN])
{
    out[0] = 0;
    const char *upd = json_str(e, "gmt_update"), *status = jid(e, "order_status");
    int64_t t;
    if (!upd || !status || p->server_now <= 0 || parse_pacific(upd, &t) != 0)
        return false;
    /* In the hour that occurs twice (November) the text was read as its first occurrence:
     * settled only if its second one is too. */
    if (pacific_dst(t) && !pacific_dst(t + 3600))
        t += 3600;
    if (t > p->server_now - SEEN_SETTLE_S ||
        snprintf(out, SEEN_LEN, "%s|%s", upd, status) >= SEEN_LEN) {
        out[0] = 0;
        return false;
    }
    return true;
}

/* Whether the replica holds order `oid` with details read after the list entry `seen`
 * (orders.mp_seen, written with them by apply_order): then they are current. Any doubt (no
 * row, no store, a storage error) says no: the details are read, as on every round before. */
static bool order_current(struct store *st, const char *oid, const char *seen)
{
    sqlite3_stmt *s =
        st ? store_stmt(st, "SELECT 1 FROM orders WHERE order_id = ?1 AND mp_seen = ?2") : NULL;
    if (!s)
        return false;
    sqlite3_bind_text(s, 1, oid, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 2, seen, -1, SQLITE_STATIC);
    bool hit = sqlite3_step(s) == SQLITE_ROW;
    sqlite3_reset(s);
    return hit;
}

static void on_list(struct ae_call *c, int outcome, const cJSON *resp)
{
    struct ae_pull *p = c->owner;
    if (outcome != SYNC_OK) {
        page_failed(p, outcome, c);
        pull_finish(p);
        return;
    }
    const cJSON *res = member(resp, "result"), *list;
    int64_t total = -1, pages = -1;
    if (p->stream == STREAM_CATALOG) {
        list = list_of(res, "aeop_a_e_product_display_d_t_o_list", "item_display_dto");
        json_int(res, "product_count", 0, INT64_MAX / 2, &total);
    } else {
        list = list_of(res, "target_list", "order_dto"); /* absent when the page is empty */
        json_int(res, "total_count", 0, INT64_MAX / 2, &total);
        p->server_now = c->gw_now;
    }
    int n = list ? cJSON_GetArraySize(list) : 0;
    if (cJSON_IsObject(res) && cJSON_IsFalse(member(res, "success"))) {
        /* A documented refusal is the request's own fault: asked again it is refused again.
         * Permanent: the round ends with the reason on the stream (tally status). */
        p->worst = list_refused(p, c, res);
        pull_finish(p);
        return;
    }
    if (!cJSON_IsObject(res) || json_int(res, "total_page", 0, INT32_MAX, &pages) != 0 ||
        n > MAX_PAGE_ITEMS) {
        p->worst = SYNC_TRANSIENT;
        snprintf(p->page.error, sizeof p->page.error, "unreadable %s answer", c->method);
        pull_finish(p);
        return;
    }
    if (n > 0 && !(p->items = calloc((size_t)n, sizeof *p->items))) {
        p->worst = SYNC_TRANSIENT;
        snprintf(p->page.error, sizeof p->page.error, "out of memory");
        pull_finish(p); /* not kept: it has no list */
        return;
    }
    /* The catalog lists one product status after another: its round's total is not known. */
    p->page.total = p->stream == STREAM_CATALOG ? -1 : total;
    p->pages = pages;
    p->page.more = p->page_no < pages ||
                   (p->stream == STREAM_CATALOG && p->status_idx + 1 < N_PRODUCT_STATUSES);
    p->list = c->doc; /* the entries point into it */
    c->doc = NULL;
    p->n = n;
    const char *idkey = p->stream == STREAM_CATALOG ? "product_id" : "order_id";
    for (int i = 0; i < n; i++) {
        const cJSON *e = cJSON_GetArrayItem(list, i);
        p->items[i].summary = e;
        if (!id_text(member(e, idkey), p->items[i].id)) {
            p->items[i].done = true;
            skip_row(p, "a list entry without a readable %s", idkey);
        } else if (p->stream == STREAM_ORDERS && order_seen(p, e, p->items[i].seen) &&
                   !p->initial && order_current(p->u->store, p->items[i].id, p->items[i].seen)) {
            p->items[i].done = true; /* its stored details are current: not read again */
            p->unchanged++;
        }
    }
    pump(p);
}

/* The page number a cursor names, or 0 when none (a new round). A catalog cursor names the
 * product status first: "<k>:<page>" (k in 0..N_PRODUCT_STATUSES-1); without it *status_idx
 * is -1 (the orders' cursor, or a catalog cursor of a version that listed every status at
 * once, 100 a page). */
static int64_t cursor_page(const char *s, int *status_idx)
{
    int64_t v = 0;
    *status_idx = -1;
    if (s[0] >= '0' && s[0] < '0' + N_PRODUCT_STATUSES && s[1] == ':') {
        *status_idx = s[0] - '0';
        s += 2;
    }
    if (!s[0] || strlen(s) > 9) {
        *status_idx = 0;
        return 0;
    }
    for (; *s; s++) {
        if (*s < '0' || *s > '9') {
            *status_idx = 0;
            return 0;
        }
        v = v * 10 + (*s - '0');
    }
    if (v == 0)
        *status_idx = 0;
    return v;
}

static void pull_services(struct upstream *u);
static void receipts_pull(struct upstream *u, const struct checkpoint *cp);

static void ae_pull(struct upstream *u, int stream, const struct checkpoint *cp)
{
    if (stream == STREAM_RECEIPTS) {
        receipts_pull(u, cp);
        return;
    }
    struct ae *a = u->conn;
    if (stream == STREAM_LOGISTICS) {
        pull_services(u); /* one page: the whole list */
        return;
    }
    int status_idx;
    int64_t page_no = cursor_page(cp->cursor, &status_idx), overlap = u->mp->orders_overlap_s,
            from = 0;
    bool new_round = page_no == 0, initial = cp->modified_since <= 0;
    bool full = initial || cp->reconcile;
    /* A window can only start before the gateway's clock (the rounds' starts are read in it,
     * and a Date is taken within CLOCK_BOUND_S of ours). One further ahead comes from a
     * checkpoint written before the clock came from Date (time_stamp, GMT+8, read as Pacific:
     * 15-16 h ahead) or from a clock since set right: it would hide every change until then.
     * The stream starts over as on its first round (apply writes modified_since 0 with the
     * first page, so that its later pages keep the round whole). */
    int64_t gw_now = store_now() + (a->have_offset ? a->offset_s : 0);
    if (!full && cp->modified_since > gw_now + CLOCK_BOUND_S) {
        log_warn("%s: checkpoint %" PRId64 " s ahead of the gateway's clock: a whole round",
                 u->streams[stream].name, cp->modified_since - gw_now);
        initial = full = new_round = true;
    }
    /* A catalog cursor without a status is a page of another listing (every status, 100 a
     * page): the rows before page N of this one may never have been read. The round starts
     * over, keeping its window. */
    if (stream == STREAM_CATALOG && status_idx < 0 && !new_round) {
        log_info("%s: cursor %s of an earlier version: the round starts over",
                 u->streams[stream].name, cp->cursor);
        new_round = true;
    }
    if (new_round)
        page_no = 1;
    if (new_round || stream != STREAM_CATALOG)
        status_idx = 0;
    if (!full)
        from = cp->modified_since > overlap ? cp->modified_since - overlap : 1;
    unsigned maxp = u->d ? u->d->cfg.max_parallel : DETAIL_PARALLEL;
    int parallel = maxp == 0 ? 1 : maxp < DETAIL_PARALLEL ? (int)maxp : DETAIL_PARALLEL;

    /* The same page again after a transient failure: ask only for what it is missing. */
    struct ae_pull *p = a->carry[stream];
    a->carry[stream] = NULL;
    if (p && p->page_no == page_no && p->status_idx == status_idx && p->new_round == new_round &&
        p->full == full && p->window_from == from && store_now() - p->started < CARRY_MAX_S) {
        p->worst = SYNC_OK;
        p->page.error[0] = 0;
        p->page.retry_after_s = -1;
        p->next = 0;
        p->parallel = parallel;
        call_link_add(&a->pulls, &p->node);
        pump(p);
        return;
    }
    if (p)
        free_pull(p);
    p = calloc(1, sizeof *p);
    if (!p) {
        struct pull_page failed = {
            .outcome = SYNC_TRANSIENT, .retry_after_s = -1, .release = release_nothing};
        snprintf(failed.error, sizeof failed.error, "out of memory");
        sync_pull_done(u, stream, &failed);
        return;
    }
    p->u = u;
    p->stream = stream;
    p->page.retry_after_s = -1;
    p->page.total = -1;
    p->parallel = parallel;
    p->page_no = page_no;
    p->status_idx = status_idx;
    p->new_round = new_round;
    p->initial = initial;
    p->full = full;
    p->window_from = from;
    p->started = store_now();
    call_link_add(&a->pulls, &p->node);

    struct jbuf q = {0};
    char t[32] = "";
    /* The order list's windows are documented as US Pacific; the product list's
     * gmt_modified_start has no documented zone. Pacific for both: read in any zone east of
     * it (GMT+8, UTC), the same text names an earlier instant, so the window only widens. */
    if (p->window_from)
        format_pacific(p->window_from, t);
    jb_lit(&q, "{\"current_page\":");
    jb_int(&q, p->page_no);
    jb_lit(&q, ",\"page_size\":");
    jb_int(&q, stream == STREAM_CATALOG ? PRODUCT_PAGE : ORDER_PAGE);
    if (t[0]) {
        jb_lit(&q,
               stream == STREAM_CATALOG ? ",\"gmt_modified_start\":" : ",\"modified_date_start\":");
        jb_str(&q, t);
    }
    if (stream == STREAM_CATALOG) {
        jb_lit(&q, ",\"product_status_type\":");
        jb_str(&q, product_statuses[p->status_idx]);
    }
    if (stream == STREAM_ORDERS) {
        jb_lit(&q, ",\"order_status_list\":[");
        size_t all = order_status_count(), nst = p->full ? all - 1 : all;
        for (size_t i = 0; i < nst; i++) {
            if (i)
                jb_lit(&q, ",");
            jb_str(&q, enum_order_status.values[i]);
        }
        jb_lit(&q, "]");
    }
    jb_lit(&q, "}");
    struct iop_param prm = {stream == STREAM_CATALOG ? "aeop_a_e_product_list_query" : "param0",
                            q.p};
    const char *method = stream == STREAM_CATALOG ? METHOD_PRODUCT_LIST : METHOD_ORDER_LIST;
    struct ae_call *c = q.failed ? NULL : call_start(u, CALL_LIST, method, &prm, 1, on_list, p, 0);
    jb_free(&q);
    if (!c) {
        p->worst = SYNC_TRANSIENT;
        snprintf(p->page.error, sizeof p->page.error, "could not start a request");
        pull_finish(p);
    }
}

/* ---- catalog apply ---- */

static const char *property_name(int64_t id)
{
    switch (id) {
    case 14:
        return "Color";
    case 5:
        return "Size";
    case 200007763:
        return "Ships From";
    default:
        return NULL;
    }
}

struct attr {
    const char *name, *value;
    char nbuf[24], vbuf[24];
};

/* The SKU's variant attributes (name -> value), at most MAX_ATTRIBUTES; unreadable ones are
 * dropped. Returns how many. */
static int sku_attributes(struct ae_pull *p, const char *code, const cJSON *sku, struct attr *out)
{
    const cJSON *props = list_of(sku, "aeop_s_k_u_property_list", "global_aeop_sku_property");
    const cJSON *pr;
    int n = 0;
    cJSON_ArrayForEach(pr, props)
    {
        if (n == MAX_ATTRIBUTES) {
            drop_field(p, "SKU %s: more than 32 variant attributes", code);
            break;
        }
        struct attr *a = &out[n];
        int64_t v;
        a->name = jtext(pr, "sku_property_name", TALLY_MAX_ID_LEN);
        if (!a->name && json_int(pr, "sku_property_id", 1, INT64_MAX / 2, &v) == 0) {
            a->name = property_name(v);
            if (!a->name) {
                snprintf(a->nbuf, sizeof a->nbuf, "%" PRId64, v);
                a->name = a->nbuf;
            }
        }
        a->value = jtext(pr, "property_value_definition_name", 256);
        if (!a->value)
            a->value = jtext(pr, "sku_property_value", 256);
        if (!a->value && json_int(pr, "property_value_id", 0, INT64_MAX / 2, &v) == 0) {
            snprintf(a->vbuf, sizeof a->vbuf, "%" PRId64, v);
            a->value = a->vbuf;
        }
        bool dup = false;
        for (int k = 0; a->name && k < n && !dup; k++)
            dup = !strcmp(out[k].name, a->name);
        if (!a->name || !a->value || dup) {
            drop_field(p, "SKU %s: an unreadable variant attribute", code);
            continue;
        }
        n++;
    }
    return n;
}

static int pack_attributes(const struct attr *a, int n, msgpack_sbuffer *sb)
{
    msgpack_packer pk;
    msgpack_packer_init(&pk, sb, msgpack_sbuffer_write);
    int r = msgpack_pack_map(&pk, (size_t)n);
    for (int i = 0; i < n; i++) {
        size_t kn = strlen(a[i].name), vn = strlen(a[i].value);
        r |= msgpack_pack_str(&pk, kn);
        r |= msgpack_pack_str_body(&pk, a[i].name, kn);
        r |= msgpack_pack_str(&pk, vn);
        r |= msgpack_pack_str_body(&pk, a[i].value, vn);
    }
    return r ? -1 : 0;
}

/* "subject (Gray, M)"; the subject alone when there is no variant or it would not fit. */
static void sku_title(const char *subject, const struct attr *a, int n, char *out, size_t cap)
{
    size_t len = (size_t)snprintf(out, cap, "%s", subject);
    for (int i = 0; i < n && len < cap; i++)
        len += (size_t)snprintf(out + len, cap - len, "%s%s", i ? ", " : " (", a[i].value);
    if (n && len < cap)
        len += (size_t)snprintf(out + len, cap - len, ")");
    if (len >= cap)
        snprintf(out, cap, "%s", subject);
}

static int upsert_product(struct store *st, const char *pid, const char *title, const char *status,
                          int64_t *id)
{
    sqlite3_stmt *s = store_stmt(st, "INSERT INTO products(product_id, title, status, updated_at)"
                                     " VALUES(?1,?2,?3,?4) ON CONFLICT(product_id) DO UPDATE SET"
                                     " title = excluded.title,"
                                     " status = COALESCE(excluded.status, status),"
                                     " updated_at = excluded.updated_at RETURNING id");
    if (!s)
        return TALLY_E_STORAGE;
    sqlite3_bind_text(s, 1, pid, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 2, title, -1, SQLITE_STATIC);
    if (status)
        sqlite3_bind_text(s, 3, status, -1, SQLITE_STATIC);
    sqlite3_bind_int64(s, 4, store_now());
    int rc = sqlite3_step(s);
    if (rc == SQLITE_ROW) {
        *id = sqlite3_column_int64(s, 0);
        rc = sqlite3_step(s);
    }
    sqlite3_reset(s);
    return rc == SQLITE_DONE ? 0 : store_error(st, rc, "product upsert");
}

static int apply_sku(struct store *st, struct ae_pull *p, int64_t product, const char *pid,
                     const char *subject, const char *pcurrency, const cJSON *sku)
{
    const char *code = jid(sku, "sku_code");
    if (!code) {
        skip_row(p, "product %s: a SKU without a usable sku_code", pid);
        return 0;
    }
    const char *currency = json_str(sku, "currency_code");
    if (!iso_upper(currency, 3))
        currency = pcurrency;
    int64_t price;
    if (!currency ||
        parse_amount(json_str(sku, "sku_price"), currency_exponent(currency), &price) != 0) {
        skip_row(p, "SKU %s: unreadable sku_price or currency", code);
        return 0;
    }
    char idbuf[ID_LEN];
    const char *mp_sku_id = jid(sku, "id");
    if (!mp_sku_id && id_text(member(sku, "id"), idbuf))
        mp_sku_id = idbuf;
    struct attr attrs[MAX_ATTRIBUTES];
    int nattr = sku_attributes(p, code, sku, attrs);
    char title[TALLY_MAX_TEXT_LEN + 1];
    sku_title(subject, attrs, nattr, title, sizeof title);
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    if (pack_attributes(attrs, nattr, &sb) != 0) {
        msgpack_sbuffer_destroy(&sb);
        return TALLY_E_NOMEM;
    }
    /* A placeholder SKU a warehouse reported first moves to its real product here (and the
     * schema's skus_listed trigger marks its stock for publishing). */
    sqlite3_stmt *s = store_stmt(
        st,
        "INSERT INTO skus(code, product, mp_sku_id, title, attributes, price_minor, currency,"
        " updated_at) VALUES(?1,?2,?3,?4,?5,?6,?7,?8)"
        " ON CONFLICT(code) DO UPDATE SET product = excluded.product,"
        " mp_sku_id = excluded.mp_sku_id, title = excluded.title,"
        " attributes = excluded.attributes, price_minor = excluded.price_minor,"
        " currency = excluded.currency, updated_at = excluded.updated_at"
        " WHERE skus.product IS NOT excluded.product OR skus.mp_sku_id IS NOT excluded.mp_sku_id"
        " OR skus.title IS NOT excluded.title OR skus.attributes IS NOT excluded.attributes"
        " OR skus.price_minor IS NOT excluded.price_minor"
        " OR skus.currency IS NOT excluded.currency"
        " RETURNING id");
    if (!s) {
        msgpack_sbuffer_destroy(&sb);
        return TALLY_E_STORAGE;
    }
    sqlite3_bind_text(s, 1, code, -1, SQLITE_STATIC);
    sqlite3_bind_int64(s, 2, product);
    if (mp_sku_id)
        sqlite3_bind_text(s, 3, mp_sku_id, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 4, title, -1, SQLITE_STATIC);
    sqlite3_bind_blob(s, 5, sb.data ? sb.data : "", (int)sb.size, SQLITE_STATIC);
    sqlite3_bind_int64(s, 6, price);
    sqlite3_bind_text(s, 7, currency, -1, SQLITE_STATIC);
    sqlite3_bind_int64(s, 8, store_now());
    int64_t id = 0;
    int rc = sqlite3_step(s);
    if (rc == SQLITE_ROW) {
        id = sqlite3_column_int64(s, 0);
        rc = sqlite3_step(s);
    }
    sqlite3_reset(s);
    msgpack_sbuffer_destroy(&sb);
    if (rc != SQLITE_DONE)
        return store_error(st, rc, "sku upsert");
    if (id && p->full && !p->initial) /* a reconciliation found it missing or different */
        p->page.repaired++;
    return 0;
}

static int apply_product(struct store *st, struct ae_pull *p, const struct ae_item *it)
{
    const cJSON *r = it->detail;
    char pid[ID_LEN];
    if (!id_text(member(r, "product_id"), pid) || strcmp(pid, it->id) != 0) {
        skip_row(p, "product %s: the detail names another product", it->id);
        return 0;
    }
    const char *subject = jtext(r, "subject", TALLY_MAX_TEXT_LEN);
    if (!subject)
        subject = jtext(it->summary, "subject", TALLY_MAX_TEXT_LEN);
    if (!subject) {
        skip_row(p, "product %s: no readable subject", pid);
        return 0;
    }
    const char *status = jid(r, "product_status_type");
    const char *currency = json_str(r, "currency_code");
    if (!iso_upper(currency, 3))
        currency = NULL;
    int64_t product = 0;
    int rc = upsert_product(st, pid, subject, status, &product);
    const cJSON *skus = list_of(r, "aeop_ae_product_s_k_us", "global_aeop_ae_product_sku"), *sku;
    cJSON_ArrayForEach(sku, skus)
    {
        if (rc)
            break;
        rc = apply_sku(st, p, product, pid, subject, currency, sku);
    }
    return rc;
}

static int apply_catalog(struct pull_page *pg, struct store *st, struct checkpoint *cp, char *err,
                         size_t errlen)
{
    struct ae_pull *p = pg->data;
    struct ae *a = p->u->conn;
    for (int i = 0; i < p->n; i++) {
        if (!p->items[i].detail)
            continue;
        int r = apply_product(st, p, &p->items[i]);
        if (r) {
            snprintf(err, errlen, "product %s not stored", p->items[i].id);
            return r;
        }
    }
    if (p->new_round)
        cp->version = p->started;
    if (p->new_round && p->initial)
        cp->modified_since = 0; /* a first round (again, see ae_pull): its pages stay whole */
    if (pg->more) {
        /* The next page of this status, else the first of the next status. */
        bool next_status = !(p->page_no < p->pages);
        int k = next_status ? p->status_idx + 1 : p->status_idx;
        int64_t next = next_status ? 1 : p->page_no + 1;
        snprintf(cp->cursor, sizeof cp->cursor, "%d:%" PRId64, k, next);
    } else {
        cp->cursor[0] = 0;
        cp->modified_since = cp->version + (a->have_offset ? a->offset_s : 0);
    }
    page_warn(p, "products");
    return 0;
}

/* ---- orders apply ---- */

struct line {
    const char *sku;
    int64_t qty, price;
};

/*
 * Whether the platform masked a text ("83****334", "J*** D***"): it holds a run of two or more
 * asterisks. The one rule for every ship-to field of an order detail; a masked field is no
 * value (never stored, never a bad address), and the order's full ship-to is read with
 * order.receiptinfo.get (the receipts stream).
 */
static bool ae_masked(const char *s)
{
    return s && strstr(s, "**") != NULL;
}

static const char *opt_text(struct ae_pull *p, const cJSON *o, const char *key, size_t max,
                            const char *oid);

/* A ship-to field of an order detail: as opt_text, but NULL with *masked set when masked. */
static const char *pii_text(struct ae_pull *p, const cJSON *o, const char *key, size_t max,
                            const char *oid, bool *masked)
{
    if (ae_masked(json_str(o, key))) {
        *masked = true;
        return NULL;
    }
    return opt_text(p, o, key, max, oid);
}

/* The street line: detail_address (else address), address2 and province, ", "-joined; when
 * too long, the street line alone. */
static void join_address(const char *const parts[3], char *out, size_t cap)
{
    out[0] = 0;
    for (size_t i = 0, len = 0; i < 3; i++) {
        if (!parts[i])
            continue;
        int w = snprintf(out + len, cap - len, "%s%s", len ? ", " : "", parts[i]);
        if (w < 0 || (size_t)w >= cap - len) {
            snprintf(out, cap, "%s", parts[0] ? parts[0] : "");
            break;
        }
        len += (size_t)w;
    }
}

/* "+34 612345678" from phone_country and the number. */
static void join_phone(const char *cc, const char *number, char *out, size_t cap)
{
    out[0] = 0;
    if (number)
        snprintf(out, cap, "%s%s%s%s", cc && cc[0] != '+' ? "+" : "", cc ? cc : "", cc ? " " : "",
                 number);
}

/* An optional text field: NULL when absent or empty; dropped (and counted) when unreadable. */
static const char *opt_text(struct ae_pull *p, const cJSON *o, const char *key, size_t max,
                            const char *oid)
{
    const char *s = json_str(o, key);
    if (!s || !s[0])
        return NULL;
    if (strlen(s) > max || !mp_text_ok(s, strlen(s))) {
        drop_field(p, "order %s: an unreadable ship-to field", oid);
        return NULL;
    }
    return s;
}

/* The ship-to country as ISO 3166 alpha-2 (the platform says UK, SRB, MNE for GB, RS, ME). */
static const char *country_code(const char *c)
{
    static const char *const fix[][2] = {{"UK", "GB"}, {"SRB", "RS"}, {"MNE", "ME"}};
    for (size_t i = 0; c && i < sizeof fix / sizeof fix[0]; i++)
        if (!strcmp(c, fix[i][0]))
            return fix[i][1];
    return iso_upper(c, 2) ? c : NULL;
}

/* The order's lines, duplicates of a SKU merged; the count, or -1 (the order is skipped). */
static int order_lines(struct ae_pull *p, const char *oid, const cJSON *d, const cJSON *sum,
                       struct line *lines, char currency[4])
{
    const cJSON *kids = list_of(d, "child_order_list", "global_aeop_tp_child_order_dto"), *k;
    const char *price_key = "product_price";
    if (!kids || cJSON_GetArraySize(kids) == 0) {
        kids = list_of(sum, "product_list", "order_product_dto");
        price_key = "product_unit_price";
    }
    int n = 0;
    cJSON_ArrayForEach(k, kids)
    {
        const char *code = jid(k, "sku_code");
        int64_t qty, price;
        char cur[4];
        if (!code || json_int(k, "product_count", 1, MAX_LINE_QTY, &qty) != 0 ||
            money(member(k, price_key), &price, cur) != 0) {
            skip_row(p, "order %s: a line without a usable sku_code, count or price", oid);
            return -1;
        }
        if (!currency[0])
            memcpy(currency, cur, 4);
        if (strcmp(currency, cur) != 0) {
            skip_row(p, "order %s: lines in different currencies", oid);
            return -1;
        }
        int j = 0;
        while (j < n && strcmp(lines[j].sku, code) != 0)
            j++;
        if (j < n) { /* the same SKU twice (two products share a code): one line */
            lines[j].qty = min64(lines[j].qty + qty, MAX_LINE_QTY);
            continue;
        }
        if (n == MAX_LINES) {
            skip_row(p, "order %s: more than 100 lines", oid);
            return -1;
        }
        lines[n++] = (struct line){code, qty, price};
    }
    if (n == 0)
        skip_row(p, "order %s: no lines", oid);
    return n ? n : -1;
}

/* Whether an order in `status` waits to be shipped (its current status's time limit is the
 * ship-by). */
static bool waits_shipping(const char *status)
{
    return status &&
           (!strcmp(status, "WAIT_SELLER_SEND_GOODS") || !strcmp(status, "SELLER_PART_SEND_GOODS"));
}

/* ship_by from the list's handling-time fields, relative to the list answer's time stamp.
 * timeout_left_time is "the remain time of the current status" (OrderDto): the ship-by only
 * while the order waits to be shipped (`status`, the list entry's); after shipping it is the
 * buyer's acceptance window, in IN_CANCEL the time to answer the cancel request. In any other
 * status nothing is read: the stored ship_by stays. */
static bool ship_by(const struct ae_pull *p, const cJSON *sum, const char *status, int64_t *out)
{
    int64_t ms, d, h, m;
    if (p->server_now <= 0 || !waits_shipping(status))
        return false;
    if (json_int(sum, "timeout_left_time", -MAX_LEFT_MS, MAX_LEFT_MS, &ms) == 0) {
        *out = p->server_now + ms / 1000;
        return true;
    }
    if (json_int(sum, "left_send_good_day", 0, 3650, &d) == 0 &&
        json_int(sum, "left_send_good_hour", 0, 23, &h) == 0 &&
        json_int(sum, "left_send_good_min", 0, 59, &m) == 0) {
        *out = p->server_now + d * 86400 + h * 3600 + m * 60;
        return true;
    }
    return false;
}

/*
 * After an order detail is stored: masked[] says which of buyer_name, address, city,
 * postcode, phone came masked. When the replica holds no value for one of them, the full
 * ship-to is to be read (receipt = 1; a purged order never is, a refused read stays refused);
 * a detail without a masked field ends the wait (its values are stored).
 */
static int mark_receipt(struct store *st, int64_t ref, const bool masked[5])
{
    bool any = masked[0] || masked[1] || masked[2] || masked[3] || masked[4];
    sqlite3_stmt *s =
        any ? store_stmt(st, "UPDATE orders SET receipt = 1, receipt_error = NULL WHERE id = ?1"
                             " AND purged_at IS NULL AND receipt = 0 AND ((?2 AND buyer_name IS"
                             " NULL) OR (?3 AND address IS NULL) OR (?4 AND city IS NULL) OR"
                             " (?5 AND postcode IS NULL) OR (?6 AND phone IS NULL))")
            : store_stmt(st, "UPDATE orders SET receipt = 0, receipt_error = NULL WHERE id = ?1"
                             " AND receipt <> 0");
    if (!s)
        return TALLY_E_STORAGE;
    sqlite3_bind_int64(s, 1, ref);
    for (int i = 0; any && i < 5; i++)
        sqlite3_bind_int(s, 2 + i, masked[i]);
    int rc = sqlite3_step(s);
    sqlite3_reset(s);
    return rc == SQLITE_DONE ? 0 : store_error(st, rc, "order receipt");
}

/* The list entry the details just stored were read after (order_seen), or NULL: a later
 * round reads them again only when the entry differs. Written in the page's transaction with
 * the details, so that a page not committed leaves its orders to be read again. */
static int mark_seen(struct store *st, int64_t ref, const char *seen)
{
    sqlite3_stmt *s = store_stmt(st, "UPDATE orders SET mp_seen = ?2 WHERE id = ?1");
    if (!s)
        return TALLY_E_STORAGE;
    sqlite3_bind_int64(s, 1, ref);
    if (seen[0])
        sqlite3_bind_text(s, 2, seen, -1, SQLITE_STATIC);
    else
        sqlite3_bind_null(s, 2);
    int rc = sqlite3_step(s);
    sqlite3_reset(s);
    return rc == SQLITE_DONE ? 0 : store_error(st, rc, "order seen");
}

static int apply_order(struct store *st, struct ae_pull *p, struct ae_item *it)
{
    const cJSON *d = it->detail, *sum = it->summary;
    char oid[ID_LEN];
    if (!id_text(member(d, "id"), oid) || strcmp(oid, it->id) != 0) {
        skip_row(p, "order %s: the detail names another order", it->id);
        return 0;
    }
    const char *status = jid(d, "order_status");
    if (!status)
        status = jid(sum, "order_status");
    int64_t created;
    if (!status || (parse_pacific(json_str(d, "gmt_create"), &created) != 0 &&
                    parse_pacific(json_str(sum, "gmt_create"), &created) != 0)) {
        skip_row(p, "order %s: no readable order_status or gmt_create", oid);
        return 0;
    }
    /* The order's currency is its lines' (their prices make total_minor), not order_amount's,
     * which may be in the buyer's currency. */
    struct line lines[MAX_LINES];
    char currency[4] = "";
    int nl = order_lines(p, oid, d, sum, lines, currency);
    if (nl < 0)
        return 0;

    /* A masked field (ae_masked) is no value: what the replica holds stays, and when it holds
     * none the order's full ship-to is to be read (receipt = 1, below). */
    const cJSON *ra = member(d, "receipt_address");
    bool m_name = false, m_street = false, m_city = false, m_zip = false, m_phone = false;
    const char *name = pii_text(p, ra, "contact_person", 256, oid, &m_name);
    if (!name && !m_name)
        name = pii_text(p, d, "buyer_signer_fullname", 256, oid, &m_name);
    char address[TALLY_MAX_TEXT_LEN + 1] = "";
    const char *parts[] = {pii_text(p, ra, "detail_address", TALLY_MAX_TEXT_LEN, oid, &m_street),
                           pii_text(p, ra, "address2", TALLY_MAX_TEXT_LEN, oid, &m_street),
                           pii_text(p, ra, "province", 256, oid, &m_street)};
    if (!m_street) /* never a street line made of what was left unmasked */
        join_address(parts, address, sizeof address);
    char phone[33] = "";
    const char *mobile = pii_text(p, ra, "mobile_no", 24, oid, &m_phone);
    const char *cc = opt_text(p, ra, "phone_country", 6, oid);
    if (!mobile && !m_phone)
        mobile = pii_text(p, ra, "phone_number", 24, oid, &m_phone);
    join_phone(cc, mobile, phone, sizeof phone);
    const char *city = pii_text(p, ra, "city", 256, oid, &m_city);
    const char *zip = pii_text(p, ra, "zip", 32, oid, &m_zip);
    const char *country = country_code(json_str(ra, "country"));
    if (!country)
        country = country_code(json_str(member(d, "buyer_info"), "country"));
    if (!country) {
        drop_field(p, "order %s: no readable ship-to country", oid);
        country = "ZZ";
    }
    const cJSON *first =
        cJSON_GetArrayItem(list_of(d, "child_order_list", "global_aeop_tp_child_order_dto"), 0);
    if (!first)
        first = cJSON_GetArrayItem(list_of(sum, "product_list", "order_product_dto"), 0);
    const char *service = jid(first, "logistics_type");
    int64_t by = 0;
    const char *sum_status = jid(sum, "order_status");
    bool has_by = ship_by(p, sum, sum_status ? sum_status : status, &by);
    struct order_header h = {
        .order_id = oid,
        .status = status,
        .created_at = created,
        .has_ship_by = has_by,
        .ship_by = by,
        .country = country,
        .currency = currency,
        .service = service,
        .buyer_name = name,
        .address = address[0] ? address : NULL,
        .city = city,
        .postcode = zip,
        .phone = phone[0] ? phone : NULL,
    };
    int64_t ref;
    bool inserted, line_new;
    int r = orders_upsert_header(st, &h, &ref, &inserted);
    if (r == 0)
        r = mark_receipt(st, ref, (bool[5]){m_name, m_street, m_city, m_zip, m_phone});
    if (r == 0)
        r = mark_seen(st, ref, it->seen);
    if (r == 0 && (m_name || m_street || m_city || m_zip || m_phone))
        p->u->streams[STREAM_RECEIPTS].requested = true; /* read it now, not at the interval */
    for (int i = 0; r == 0 && i < nl; i++) {
        int64_t sku;
        /* A SKU the catalog has not pulled yet gets a placeholder: the order still lands. */
        if ((r = catalog_sku_ensure(st, lines[i].sku, &sku)) == 0)
            r = orders_upsert_line(st, ref, sku, lines[i].qty, lines[i].price, &line_new);
        /* A new order's units are off the marketplace's stock already: its SKUs are due for
         * publishing (sync.c counts an order not allocated yet in the value). */
        if (r == 0 && (inserted || line_new))
            r = reserve_mark_publish(st, sku);
    }
    if (r == 0 && inserted && !p->initial) {
        it->created = true;
        it->status = status;
    }
    return r;
}

static int apply_orders(struct pull_page *pg, struct store *st, struct checkpoint *cp, char *err,
                        size_t errlen)
{
    struct ae_pull *p = pg->data;
    struct ae *a = p->u->conn;
    for (int i = 0; i < p->n; i++) {
        if (!p->items[i].detail)
            continue;
        int r = apply_order(st, p, &p->items[i]);
        if (r) {
            snprintf(err, errlen, "order %s not stored", p->items[i].id);
            return r;
        }
    }
    if (p->new_round)
        cp->version =
            p->server_now > 0 ? p->server_now : p->started + (a->have_offset ? a->offset_s : 0);
    if (p->new_round && p->initial)
        cp->modified_since = 0; /* a first round (again, see ae_pull): its pages stay whole */
    if (pg->more) {
        snprintf(cp->cursor, sizeof cp->cursor, "%" PRId64, p->page_no + 1);
    } else {
        cp->cursor[0] = 0;
        cp->modified_since = cp->version;
    }
    page_warn(p, "orders");
    if (p->unchanged)
        log_debug("orders: page %" PRId64 ": %" PRId64 " unchanged orders not read again",
                  p->page_no, p->unchanged);
    /* New orders are announced (not during a first round, which would flood watchers with the
     * whole backlog) from inside the page's transaction: events.c holds them until it commits
     * and drops them when it does not, so no watcher hears of an order the replica has not. */
    for (int i = 0; p->u->d && i < p->n; i++)
        if (p->items[i].created)
            events_order(p->u->d, p->items[i].id, p->items[i].status);
    return 0;
}

/* ---- receipts: the full ship-to of orders whose details came masked ---- */

struct rcpt_item {
    int64_t ref;
    char id[ID_LEN];
    int outcome; /* -1 while not answered */
    char error[200];
    char name[257], address[TALLY_MAX_TEXT_LEN + 1], city[257], zip[33], phone[33], country[3];
};

/* One receipts page: up to RECEIPT_PAGE orders waiting for their ship-to, one call each. */
struct ae_rcpt {
    struct upstream *u;
    struct pull_page page;
    struct rcpt_item items[RECEIPT_PAGE];
    int n, next, inflight, parallel;
    int64_t last_ref;
};

static void rcpt_free(struct ae_rcpt *r)
{
    explicit_bzero(r, sizeof *r); /* it held buyers' addresses */
    free(r);
}

static void rcpt_release(struct pull_page *pg)
{
    rcpt_free(pg->data);
}

/* A text of the receiptinfo answer: NULL when absent, empty, unreadable or still masked. */
static const char *rcpt_text(const cJSON *o, const char *key, size_t max)
{
    const char *v = json_str(o, key);
    if (!v || !v[0] || strlen(v) > max || !mp_text_ok(v, strlen(v)) || ae_masked(v))
        return NULL;
    return v;
}

/* Reads one answer (OrderAddressDto): 0, or -1 with the reason (a refusal of this order). */
static int rcpt_read(struct rcpt_item *it, const cJSON *res)
{
    const char *name = rcpt_text(res, "contact_person", 256);
    const char *street = rcpt_text(res, "detail_address", TALLY_MAX_TEXT_LEN);
    if (!street)
        street = rcpt_text(res, "address", TALLY_MAX_TEXT_LEN);
    const char *parts[] = {street, rcpt_text(res, "address2", TALLY_MAX_TEXT_LEN),
                           rcpt_text(res, "province", 256)};
    const char *mobile = rcpt_text(res, "mobile_no", 24);
    if (!mobile)
        mobile = rcpt_text(res, "phone_number", 24);
    const char *country = country_code(json_str(res, "country"));
    if (!cJSON_IsObject(res) || !name || !street) {
        snprintf(it->error, sizeof it->error,
                 "order.receiptinfo.get answered no readable, unmasked recipient and street");
        return -1;
    }
    snprintf(it->name, sizeof it->name, "%s", name);
    join_address(parts, it->address, sizeof it->address);
    snprintf(it->city, sizeof it->city, "%s",
             rcpt_text(res, "city", 256) ? json_str(res, "city") : "");
    snprintf(it->zip, sizeof it->zip, "%s", rcpt_text(res, "zip", 32) ? json_str(res, "zip") : "");
    join_phone(rcpt_text(res, "phone_country", 6), mobile, it->phone, sizeof it->phone);
    snprintf(it->country, sizeof it->country, "%s", country ? country : "");
    return 0;
}

static void rcpt_finish(struct ae_rcpt *r);

static void on_receipt(struct ae_call *c, int outcome, const cJSON *resp)
{
    struct ae_rcpt *r = c->owner;
    struct rcpt_item *it = &r->items[c->index];
    r->inflight--;
    it->outcome = outcome;
    if (outcome == SYNC_OK) {
        if (rcpt_read(it, member(resp, "result")) != 0)
            it->outcome = SYNC_PERMANENT;
    } else if (outcome == SYNC_PERMANENT && c->api_wide) {
        it->outcome = SYNC_TRANSIENT; /* not this order's fault: the stream shows it */
        snprintf(r->page.error, sizeof r->page.error, "%s", c->error);
        r->page.outcome = SYNC_PERMANENT;
    } else {
        snprintf(it->error, sizeof it->error, "order.receiptinfo.get: %.170s", c->error);
        if (outcome == SYNC_AUTH || (outcome == SYNC_TRANSIENT && !r->page.error[0]))
            snprintf(r->page.error, sizeof r->page.error, "%s", c->error);
        if (outcome == SYNC_AUTH)
            r->page.outcome = SYNC_AUTH;
    }
    if (c->req.retry_after_s > r->page.retry_after_s)
        r->page.retry_after_s = c->req.retry_after_s;
    rcpt_finish(r);
}

/* Starts calls while there is room; hands the page on when every order has its answer. */
static void rcpt_finish(struct ae_rcpt *r)
{
    struct ae *a = r->u->conn;
    while (r->page.outcome == SYNC_OK && r->inflight < r->parallel && r->next < r->n) {
        struct rcpt_item *it = &r->items[r->next];
        char q[64];
        snprintf(q, sizeof q, "{\"order_id\":%s}", it->id);
        struct iop_param prm = {"param1", q};
        if (!call_start(r->u, CALL_RECEIPT, METHOD_RECEIPT, &prm, 1, on_receipt, r, r->next)) {
            it->outcome = SYNC_TRANSIENT;
            snprintf(r->page.error, sizeof r->page.error, "could not start a request");
        } else {
            r->inflight++;
        }
        r->next++;
    }
    if (r->inflight > 0 || (r->page.outcome == SYNC_OK && r->next < r->n))
        return;
    a->rcpt = NULL;
    /* A page of failures alone (the link, flow control) is the link's failure: backoff. What
     * was answered is applied; what failed transiently is read again next round. */
    int answered = 0;
    for (int i = 0; i < r->n; i++)
        answered += r->items[i].outcome == SYNC_OK || r->items[i].outcome == SYNC_PERMANENT;
    if (r->page.outcome == SYNC_OK && r->n > 0 && answered == 0)
        r->page.outcome = SYNC_TRANSIENT;
    sync_pull_done(r->u, STREAM_RECEIPTS, &r->page);
}

/* Stores the answered ship-tos (receipt 0) and the refusals (receipt 2, receipt_error); the
 * order is looked at again by the fulfilment pass (fdirty). A purged order is not written, nor
 * one cancelled or closed while its read was under way (no address is kept it does not need). */
static int apply_receipts(struct pull_page *pg, struct store *st, struct checkpoint *cp, char *err,
                          size_t errlen)
{
    struct ae_rcpt *r = pg->data;
    sqlite3_stmt *ok = store_stmt(
        st, "UPDATE orders SET buyer_name = ?2, address = ?3, city = NULLIF(?4, ''),"
            " postcode = NULLIF(?5, ''), phone = NULLIF(?6, ''),"
            " country = IIF(?7 <> '', ?7, country), receipt = 0, receipt_error = NULL, fdirty = 1"
            " WHERE id = ?1 AND receipt = 1 AND purged_at IS NULL"
            " AND fstate IN ('new', 'pending', 'ready', 'allocated')");
    sqlite3_stmt *no = store_stmt(st, "UPDATE orders SET receipt = 2, receipt_error = ?2,"
                                      " fdirty = 1 WHERE id = ?1 AND receipt = 1"
                                      " AND purged_at IS NULL AND fstate IN ('new', 'pending',"
                                      " 'ready', 'allocated')");
    if (!ok || !no) {
        snprintf(err, errlen, "receipts not stored");
        return TALLY_E_STORAGE;
    }
    for (int i = 0; i < r->n; i++) {
        struct rcpt_item *it = &r->items[i];
        sqlite3_stmt *s = it->outcome == SYNC_OK ? ok : it->outcome == SYNC_PERMANENT ? no : NULL;
        if (!s)
            continue;
        if (it->outcome == SYNC_PERMANENT)
            log_warn("mp:receipts: order %s: %s", it->id, it->error);
        sqlite3_bind_int64(s, 1, it->ref);
        if (s == ok) {
            sqlite3_bind_text(s, 2, it->name, -1, SQLITE_STATIC);
            sqlite3_bind_text(s, 3, it->address, -1, SQLITE_STATIC);
            sqlite3_bind_text(s, 4, it->city, -1, SQLITE_STATIC);
            sqlite3_bind_text(s, 5, it->zip, -1, SQLITE_STATIC);
            sqlite3_bind_text(s, 6, it->phone, -1, SQLITE_STATIC);
            sqlite3_bind_text(s, 7, it->country, -1, SQLITE_STATIC);
        } else {
            sqlite3_bind_text(s, 2, it->error, -1, SQLITE_STATIC);
        }
        int rc = sqlite3_step(s);
        sqlite3_clear_bindings(s); /* no address stays bound in the statement cache */
        sqlite3_reset(s);
        if (rc != SQLITE_DONE) {
            snprintf(err, errlen, "order %s: receipt not stored", it->id);
            return store_error(st, rc, "receipt");
        }
    }
    /* Orders that closed or were purged while they waited need no ship-to any more: out of
     * the wait (and of the index the pages read). */
    sqlite3_stmt *gone = store_stmt(st, "UPDATE orders SET receipt = 0 WHERE receipt = 1 AND"
                                        " (purged_at IS NOT NULL OR fstate NOT IN ('new',"
                                        " 'pending', 'ready', 'allocated'))");
    int rc = gone ? sqlite3_step(gone) : SQLITE_ERROR;
    if (gone)
        sqlite3_reset(gone);
    if (rc != SQLITE_DONE) {
        snprintf(err, errlen, "receipts not stored");
        return store_error(st, rc, "receipt");
    }
    if (pg->more)
        snprintf(cp->cursor, sizeof cp->cursor, "%" PRId64, r->last_ref);
    else
        cp->cursor[0] = 0;
    return 0;
}

/* Whether this station needs buyers' addresses: the coordinator (outbound orders) or one
 * that ships from a warehouse here (tally ship). Others never read them. */
static bool needs_addresses(const struct upstream *u)
{
    if (!u->d)
        return true;
    if (u->d->cfg.coordinator)
        return true;
    for (unsigned i = 0; i < u->d->cfg.nwh; i++)
        if (!strcmp(u->d->cfg.wh[i].fulfilment, "station"))
            return true;
    return false;
}

/*
 * A receipts page: the open orders (not yet sent to a warehouse) whose ship-to came masked
 * and is not read yet (receipt = 1), never a purged one, after the cursor (the last order id
 * of the previous page of this round), RECEIPT_PAGE at most; one order.receiptinfo.get each
 * (param1 {"order_id"}). A page with none makes no call.
 */
static void receipts_pull(struct upstream *u, const struct checkpoint *cp)
{
    struct ae *a = u->conn;
    struct ae_rcpt *r = calloc(1, sizeof *r);
    if (!r) {
        struct pull_page failed = {
            .outcome = SYNC_TRANSIENT, .retry_after_s = -1, .release = release_nothing};
        snprintf(failed.error, sizeof failed.error, "out of memory");
        sync_pull_done(u, STREAM_RECEIPTS, &failed);
        return;
    }
    r->u = u;
    r->page.retry_after_s = -1;
    r->page.total = -1;
    r->page.apply = apply_receipts;
    r->page.release = rcpt_release;
    r->page.data = r;
    unsigned maxp = u->d ? u->d->cfg.max_parallel : DETAIL_PARALLEL;
    r->parallel = maxp == 0 ? 1 : maxp < DETAIL_PARALLEL ? (int)maxp : DETAIL_PARALLEL;
    int64_t after = 0;
    for (const char *c = cp->cursor; *c >= '0' && *c <= '9' && after < INT64_MAX / 10; c++)
        after = after * 10 + (*c - '0');
    sqlite3_stmt *s =
        needs_addresses(u)
            ? store_stmt(u->store, "SELECT id, order_id FROM orders WHERE receipt = 1 AND id > ?1"
                                   " AND purged_at IS NULL AND fstate IN ('new', 'pending',"
                                   " 'ready', 'allocated') ORDER BY id LIMIT ?2")
            : NULL;
    if (s) {
        sqlite3_bind_int64(s, 1, after);
        sqlite3_bind_int(s, 2, RECEIPT_PAGE + 1);
        while (sqlite3_step(s) == SQLITE_ROW) {
            if (r->n == RECEIPT_PAGE) {
                r->page.more = true;
                break;
            }
            const char *id = (const char *)sqlite3_column_text(s, 1);
            if (!id || strlen(id) >= ID_LEN)
                continue;
            struct rcpt_item *it = &r->items[r->n++];
            it->ref = r->last_ref = sqlite3_column_int64(s, 0);
            it->outcome = -1;
            snprintf(it->id, sizeof it->id, "%s", id);
        }
        sqlite3_reset(s);
    }
    r->page.rows = r->n;
    /* None to read: no request, and no word on the link (an answer would mark it up, and
     * resolve a refused token's exception, while the gateway still refuses it). */
    r->page.no_request = r->n == 0;
    a->rcpt = r;
    rcpt_finish(r);
}

/* ---- publish: marketplace stock ---- */

static void publish_finish(struct ae_pub *s)
{
    struct publish_batch *b = s->b;
    free(s->group);
    free(s);
    sync_publish_done(b);
}

/* A product of the call the platform refused: its SKUs' outcomes. When the message names one
 * SKU of several, only that one is refused; the others go again without it. */
static void product_refused(struct ae_pub *s, int g, const char *code, const char *msg)
{
    struct publish_batch *b = s->b;
    /* A refused token fails the whole call (error_response), never one product: here only
     * flow control and the platform's own failures go again. */
    bool retry = refusal_outcome(code) == SYNC_TRANSIENT;
    int named = -1, members = 0;
    for (int i = 0; i < b->n; i++) {
        if (s->group[i] != g)
            continue;
        members++;
        if (has_token(msg, b->items[i].sku))
            named = named == -1 ? i : -2;
    }
    for (int i = 0; i < b->n; i++) {
        struct publish_item *it = &b->items[i];
        if (s->group[i] != g)
            continue;
        if (!retry && members > 1 && named >= 0 && i != named) {
            it->outcome = SYNC_TRANSIENT;
            snprintf(it->error, sizeof it->error, "product refused for SKU %s; sent again",
                     b->items[named].sku);
            continue;
        }
        it->outcome = retry ? SYNC_TRANSIENT : SYNC_PERMANENT;
        snprintf(it->error, sizeof it->error, "%s: %.200s", code ? code : "refused",
                 msg ? msg : "(no message)");
    }
}

static int group_of(const struct ae_pub *s, const cJSON *e)
{
    int64_t pid;
    if (json_int(e, "product_id", 1, INT64_MAX / 2, &pid) != 0)
        return -1;
    for (int g = 0; g < s->ngroups; g++)
        if (s->pid[g] == pid)
            return g;
    return -1;
}

static void on_published(struct ae_call *c, int outcome, const cJSON *resp)
{
    struct ae_pub *s = c->owner;
    struct publish_batch *b = s->b;
    b->retry_after_s = c->req.retry_after_s;
    if (outcome == SYNC_TRANSIENT || outcome == SYNC_AUTH) { /* the values stay due */
        b->outcome = outcome;
        snprintf(b->error, sizeof b->error, "%s", c->error);
        publish_finish(s);
        return;
    }
    const cJSON *oks = list_of(resp, "update_successful_list", "synchronize_product_response_dto");
    const cJSON *fails = list_of(resp, "update_failed_list", "synchronize_product_response_dto");
    const cJSON *success = member(resp, "update_success"), *e;
    for (int i = 0; i < b->n; i++) {
        struct publish_item *it = &b->items[i];
        if (s->group[i] < 0)
            continue;
        if (outcome == SYNC_PERMANENT) {
            it->outcome = SYNC_PERMANENT;
            snprintf(it->error, sizeof it->error, "%s", c->error);
        } else if (!oks && !fails && cJSON_IsBool(success)) {
            it->outcome = cJSON_IsTrue(success) ? SYNC_OK : SYNC_PERMANENT;
            snprintf(it->error, sizeof it->error, "%.60s: %.180s",
                     json_str(resp, "update_error_code") ? json_str(resp, "update_error_code")
                                                         : "refused",
                     json_str(resp, "update_error_message") ? json_str(resp, "update_error_message")
                                                            : "(no message)");
        } else {
            it->outcome = SYNC_TRANSIENT;
            snprintf(it->error, sizeof it->error, "no result for product %s in the answer",
                     it->product_id);
        }
    }
    cJSON_ArrayForEach(e, oks)
    {
        int g = group_of(s, e);
        for (int i = 0; g >= 0 && i < b->n; i++)
            if (s->group[i] == g)
                b->items[i].outcome = SYNC_OK;
    }
    cJSON_ArrayForEach(e, fails)
    {
        int g = group_of(s, e);
        const char *code = jid(e, "error_code"), *msg = jtext(e, "error_message", 400);
        if (g >= 0)
            product_refused(s, g, code, msg);
    }
    /* Nothing settled at all: back off like any transient failure. */
    b->outcome = SYNC_TRANSIENT;
    for (int i = 0; i < b->n; i++)
        if (s->group[i] >= 0 && b->items[i].outcome != SYNC_TRANSIENT)
            b->outcome = SYNC_OK;
    if (b->outcome == SYNC_TRANSIENT)
        for (int i = 0; i < b->n && !b->error[0]; i++)
            if (s->group[i] >= 0)
                snprintf(b->error, sizeof b->error, "%s", b->items[i].error);
    publish_finish(s);
}

/* A marketplace product id: digits only, as the replica keeps them. */
static bool product_number(const char *s, int64_t *v)
{
    size_t n = strlen(s);
    if (n == 0 || n > 18 || s[0] == '0')
        return false;
    *v = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return false;
        *v = *v * 10 + (s[i] - '0');
    }
    return true;
}

static void ae_publish(struct upstream *u, struct publish_batch *b)
{
    struct ae_pub *s = calloc(1, sizeof *s);
    int *group = s ? calloc((size_t)b->n + 1, sizeof *group) : NULL;
    if (!group) {
        free(s);
        b->outcome = SYNC_TRANSIENT;
        snprintf(b->error, sizeof b->error, "out of memory");
        sync_publish_done(b);
        return;
    }
    s->b = b;
    s->group = group;
    int count[PUBLISH_PRODUCTS] = {0};
    for (int i = 0; i < b->n; i++) {
        struct publish_item *it = &b->items[i];
        int64_t pid;
        group[i] = -1;
        it->outcome = SYNC_TRANSIENT; /* stays due: sent with a later call */
        snprintf(it->error, sizeof it->error, "not sent: more products than a call takes");
        if (!product_number(it->product_id, &pid) || !mp_id_ok(it->sku, strlen(it->sku))) {
            it->outcome = SYNC_PERMANENT;
            snprintf(it->error, sizeof it->error, "%.64s is not a marketplace product id",
                     it->product_id);
            continue;
        }
        int g = 0;
        while (g < s->ngroups && s->pid[g] != pid)
            g++;
        if (g == s->ngroups) {
            if (g == PUBLISH_PRODUCTS)
                continue;
            s->pid[s->ngroups++] = pid;
        }
        if (count[g] == PUBLISH_SKUS)
            continue;
        count[g]++;
        group[i] = g;
    }
    if (s->ngroups == 0) {
        b->outcome = SYNC_OK;
        publish_finish(s);
        return;
    }
    struct jbuf q = {0};
    jb_lit(&q, "[");
    for (int g = 0; g < s->ngroups; g++) {
        jb_lit(&q, g ? ",{\"product_id\":" : "{\"product_id\":");
        jb_int(&q, s->pid[g]);
        jb_lit(&q, ",\"multiple_sku_update_list\":[");
        for (int i = 0, k = 0; i < b->n; i++) {
            if (group[i] != g)
                continue;
            jb_lit(&q, k++ ? ",{\"sku_code\":" : "{\"sku_code\":");
            jb_str(&q, b->items[i].sku);
            jb_lit(&q, ",\"inventory\":");
            /* The platform takes 0-999,999: a larger stock shows as the largest it takes. */
            jb_int(&q, b->items[i].value < 0 ? 0 : min64(b->items[i].value, PUBLISH_MAX_VALUE));
            jb_lit(&q, "}");
        }
        jb_lit(&q, "]}");
    }
    jb_lit(&q, "]");
    struct iop_param prm = {"mutiple_product_update_list", q.p}; /* sic: the platform's name */
    struct ae_call *c =
        q.failed ? NULL
                 : call_start(u, CALL_PUBLISH, METHOD_INVENTORY, &prm, 1, on_published, s, 0);
    jb_free(&q);
    if (!c) {
        b->outcome = SYNC_TRANSIENT;
        snprintf(b->error, sizeof b->error, "could not start a request");
        publish_finish(s);
    }
}

/* ---- logistics services (stream "logistics") ---- */

/*
 * aliexpress.logistics.redefining.listlogisticsservice: no parameters of its own (the Python
 * SDK's AliexpressLogisticsRedefiningListlogisticsserviceRequest has none). The answer, as
 * the platform's SDK models have it (Java AliexpressLogisticsRedefiningListlogisticsservice-
 * Response, .NET/PHP AeopLogisticsServiceResult; tests/fixtures/aliexpress/README.md):
 * result_list (a list of aeop_logistics_service_result: display_name, logistics_company,
 * max_process_day, min_process_day, recommend_order, service_name "logistics service key",
 * tracking_no_regex "tracking number rule, a regular expression"), error_desc, result_success;
 * all in the response object. The sources do not show whether result_list is wrapped in an
 * object named after its element (as every TOP list) or a bare array (the Java model's
 * ApiListField): both are read, and the members under a "result" object too. A row without a
 * readable service_name is skipped (counted); the list replaces the replica's whole
 * (mp_services), with the time it was read (mp_services_pull).
 */
struct svc {
    char name[65];
    char display[257];
    char company[129];
    char regex[REGEX_MAX + 1]; /* "" when none (any number) or unreadable */
    int64_t min_day, max_day, order;
    bool has_min, has_max, has_order;
};

struct svc_list {
    struct svc *v;
    int n;
    int64_t bad;
    char problem[160];
};

/* Reads a listlogisticsservice answer into *l: SYNC_OK, SYNC_PERMANENT (refused: result_success
 * false; its error_desc in err) or SYNC_TRANSIENT (an answer that is not a list). */
static int services_read(const cJSON *resp, struct svc_list *l, char *err, size_t errlen)
{
    memset(l, 0, sizeof *l);
    const cJSON *r = resp;
    if (!member(r, "result_list") && cJSON_IsObject(member(r, "result")))
        r = member(r, "result");
    if (cJSON_IsFalse(member(r, "result_success"))) {
        const char *desc = jtext(r, "error_desc", 200), *code = jid(r, "error_code");
        snprintf(err, errlen, "%s refused: %.40s %.120s", METHOD_LOGISTICS,
                 code ? code : "(no code)", desc ? desc : "(no description)");
        return code ? refusal_outcome(code) : SYNC_PERMANENT;
    }
    const cJSON *list = list_of(r, "result_list", "aeop_logistics_service_result"), *e;
    int n = list ? cJSON_GetArraySize(list) : 0;
    /* No result_list at all (garbage, a success flag alone) is no list: taken as an empty one,
     * it would replace the replica's and hold every shipment as "not one of the marketplace's
     * logistics services". */
    if (!cJSON_IsObject(r) || !member(r, "result_list") || (!list && member(r, "result_list")) ||
        n > MAX_SERVICES) {
        snprintf(err, errlen, "unreadable %s answer%s", METHOD_LOGISTICS,
                 member(r, "result_list") ? "" : " (no result_list)");
        return SYNC_TRANSIENT;
    }
    if (n > 0 && !(l->v = calloc((size_t)n, sizeof *l->v))) {
        snprintf(err, errlen, "out of memory");
        return SYNC_TRANSIENT;
    }
    cJSON_ArrayForEach(e, list)
    {
        const char *name = jid(e, "service_name");
        if (!name || strlen(name) >= sizeof l->v[0].name) {
            l->bad++;
            if (!l->problem[0])
                snprintf(l->problem, sizeof l->problem, "a service without a readable key");
            continue;
        }
        bool dup = false;
        for (int i = 0; i < l->n && !dup; i++)
            dup = !strcmp(l->v[i].name, name);
        if (dup) {
            l->bad++;
            if (!l->problem[0])
                snprintf(l->problem, sizeof l->problem, "service %s listed twice", name);
            continue;
        }
        struct svc *v = &l->v[l->n++];
        snprintf(v->name, sizeof v->name, "%s", name);
        const char *t = jtext(e, "display_name", sizeof v->display - 1);
        snprintf(v->display, sizeof v->display, "%s", t ? t : "");
        t = jtext(e, "logistics_company", sizeof v->company - 1);
        snprintf(v->company, sizeof v->company, "%s", t ? t : "");
        t = jtext(e, "tracking_no_regex", REGEX_MAX);
        snprintf(v->regex, sizeof v->regex, "%s", t ? t : "");
        if (!t && json_str(e, "tracking_no_regex") && json_str(e, "tracking_no_regex")[0] &&
            !l->problem[0])
            snprintf(l->problem, sizeof l->problem, "service %s: tracking_no_regex unreadable",
                     name);
        v->has_min = json_int(e, "min_process_day", 0, 3650, &v->min_day) == 0;
        v->has_max = json_int(e, "max_process_day", 0, 3650, &v->max_day) == 0;
        v->has_order = json_int(e, "recommend_order", -1000000, 1000000, &v->order) == 0;
    }
    if (n > 0 && l->n == 0) { /* not one entry readable: the same, kept as it was */
        snprintf(err, errlen, "unreadable %s answer: %.100s", METHOD_LOGISTICS, l->problem);
        return SYNC_TRANSIENT;
    }
    return SYNC_OK;
}

static void bind_text_or_null(sqlite3_stmt *s, int i, const char *t)
{
    if (t && t[0])
        sqlite3_bind_text(s, i, t, -1, SQLITE_STATIC);
    else
        sqlite3_bind_null(s, i);
}

/* Replaces the replica's logistics services with *l (inside the caller's transaction). */
static int services_store(struct store *st, const struct svc_list *l, int64_t now)
{
    sqlite3_stmt *s = store_stmt(st, "DELETE FROM mp_services");
    if (!s || sqlite3_step(s) != SQLITE_DONE)
        return TALLY_E_STORAGE;
    for (int i = 0; i < l->n; i++) {
        const struct svc *v = &l->v[i];
        s = store_stmt(st, "INSERT INTO mp_services(service_name, display_name,"
                           " logistics_company, tracking_no_regex, min_process_day,"
                           " max_process_day, recommend_order) VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7)");
        if (!s)
            return TALLY_E_STORAGE;
        sqlite3_bind_text(s, 1, v->name, -1, SQLITE_STATIC);
        bind_text_or_null(s, 2, v->display);
        bind_text_or_null(s, 3, v->company);
        bind_text_or_null(s, 4, v->regex);
        if (v->has_min)
            sqlite3_bind_int64(s, 5, v->min_day);
        if (v->has_max)
            sqlite3_bind_int64(s, 6, v->max_day);
        if (v->has_order)
            sqlite3_bind_int64(s, 7, v->order);
        int rc = sqlite3_step(s);
        if (rc != SQLITE_DONE)
            return store_error(st, rc, "logistics service");
    }
    s = store_stmt(st, "INSERT OR REPLACE INTO mp_services_pull(id, pulled_at, services)"
                       " VALUES(1, ?1, ?2)");
    if (!s)
        return TALLY_E_STORAGE;
    sqlite3_bind_int64(s, 1, now);
    sqlite3_bind_int(s, 2, l->n);
    int rc = sqlite3_step(s);
    return rc == SQLITE_DONE ? 0 : store_error(st, rc, "logistics services");
}

/* One page of the logistics stream: the whole list. */
struct svc_page {
    struct pull_page page;
    struct upstream *u;
    struct svc_list l;
};

static void svc_page_free(struct svc_page *sp)
{
    free(sp->l.v);
    free(sp);
}

static void release_services(struct pull_page *pg)
{
    svc_page_free(pg->data);
}

static int apply_services(struct pull_page *pg, struct store *st, struct checkpoint *cp, char *err,
                          size_t errlen)
{
    struct svc_page *sp = pg->data;
    int64_t now = store_now();
    int r = services_store(st, &sp->l, now);
    if (r) {
        snprintf(err, errlen, "logistics services not stored");
        return r;
    }
    if (sp->l.bad)
        log_warn("%s: %" PRId64 " logistics services skipped (first: %s)",
                 sp->u->streams[STREAM_LOGISTICS].name, sp->l.bad, sp->l.problem);
    cp->cursor[0] = 0;
    cp->version = now;
    cp->modified_since = now;
    return 0;
}

static void on_services(struct ae_call *c, int outcome, const cJSON *resp)
{
    struct svc_page *sp = c->owner;
    struct pull_page *pg = &sp->page;
    if (c->req.retry_after_s > pg->retry_after_s)
        pg->retry_after_s = c->req.retry_after_s;
    if (outcome == SYNC_OK)
        outcome = services_read(resp, &sp->l, pg->error, sizeof pg->error);
    else
        snprintf(pg->error, sizeof pg->error, "%s", c->error);
    pg->outcome = outcome;
    pg->more = false;
    pg->rows = sp->l.n;
    pg->total = sp->l.n;
    pg->apply = apply_services;
    pg->release = release_services;
    pg->data = sp;
    sync_pull_done(sp->u, STREAM_LOGISTICS, pg);
}

static void pull_services(struct upstream *u)
{
    struct svc_page *sp = calloc(1, sizeof *sp);
    struct ae_call *c =
        sp ? call_start(u, CALL_SERVICES, METHOD_LOGISTICS, NULL, 0, on_services, sp, 0) : NULL;
    if (c) {
        sp->u = u;
        sp->page.retry_after_s = -1;
        return;
    }
    free(sp);
    struct pull_page failed = {
        .outcome = SYNC_TRANSIENT, .retry_after_s = -1, .release = release_nothing};
    snprintf(failed.error, sizeof failed.error, "could not start a request");
    sync_pull_done(u, STREAM_LOGISTICS, &failed);
}

/*
 * The platform's tracking_no_regex is a Java regular expression; tally checks numbers with
 * POSIX regcomp (REG_EXTENDED | REG_NOSUB). The Java shorthands \d \w \s (and \D \W \S outside
 * brackets) become their POSIX classes, an escaped metacharacter stays escaped, and a lazy
 * quantifier's "?" is dropped (with REG_NOSUB only whether it matches counts, which laziness
 * does not change). Anything else of Java's (inline flags and groups "(?", possessive "*+",
 * \b, \p{..}, \Q, back-references, nested or intersected classes) cannot be read: -1. Matched
 * as a search (the pattern says where it is anchored, as "[0-9]{14}$" does).
 */
static int ere_from_java(const char *in, char *out, size_t cap)
{
    struct jbuf b = {0};
    bool bracket = false;
    int r = 0;
    for (const char *p = in; *p && r == 0; p++) {
        char c = *p;
        if (c == '\\') {
            char e = *++p;
            const char *cls = NULL;
            switch (e) {
            case 'd':
                cls = bracket ? "0-9" : "[0-9]";
                break;
            case 'w':
                cls = bracket ? "A-Za-z0-9_" : "[A-Za-z0-9_]";
                break;
            case 's':
                cls = bracket ? "[:space:]" : "[[:space:]]";
                break;
            case 'D':
                cls = bracket ? NULL : "[^0-9]";
                break;
            case 'W':
                cls = bracket ? NULL : "[^A-Za-z0-9_]";
                break;
            case 'S':
                cls = bracket ? NULL : "[^[:space:]]";
                break;
            default:
                break;
            }
            if (cls) {
                jb_lit(&b, cls);
            } else if (e && strchr(".[]{}()*+?^$|\\/-", e) && !bracket) {
                char esc[3] = {'\\', e, 0};
                jb_lit(&b, e == '/' || e == '-' ? esc + 1 : esc);
            } else if (e && strchr(".{}()*+?$|/", e) && bracket) {
                char lit[2] = {e, 0};
                jb_lit(&b, lit);
            } else {
                r = -1; /* \b, \p, \Q, \1, \n, a class inside brackets, ... */
            }
            continue;
        }
        if (bracket) {
            if (c == '[' || (c == '&' && p[1] == '&'))
                r = -1; /* nested or intersected classes */
            else if (c == ']')
                bracket = false;
            char lit[2] = {c, 0};
            jb_lit(&b, lit);
            continue;
        }
        if (c == '(' && p[1] == '?') {
            r = -1;
            continue;
        }
        if (c == '[') {
            bracket = true;
            jb_lit(&b, "[");
            if (p[1] == '^') {
                jb_lit(&b, "^");
                p++;
            }
            if (p[1] == ']') {
                jb_lit(&b, "]");
                p++;
            }
            continue;
        }
        char lit[2] = {c, 0};
        jb_lit(&b, lit);
        if (strchr("*+?}", c) && p[1] == '+')
            r = -1; /* possessive */
        else if (strchr("*+?}", c) && p[1] == '?')
            p++; /* lazy: the same matches */
    }
    if (bracket || b.failed || !b.p || b.len >= cap)
        r = -1;
    if (r == 0)
        snprintf(out, cap, "%s", b.p);
    jb_free(&b);
    return r;
}

/* Whether POSIX ERE `p` is small enough to compile: roughly the nodes regcomp builds, each atom
 * 1, a group the sum of its parts, a bounded repeat {m,n} multiplying what it repeats by n (m+1
 * for {m,}), as glibc copies the repeated tree that many times: "((a{1,100}){1,100}){1,100}",
 * 27 characters from the platform, takes seconds and a gigabyte to compile on the loop's
 * thread. The numbers checked are at most 64 characters; REGEX_COST_MAX is far above any
 * real rule. */
static bool ere_small(const char *p)
{
    int64_t outer[32], cur = 0, last = 0;
    int depth = 0;
    for (; *p; p++) {
        switch (*p) {
        case '\\':
            if (p[1])
                p++;
            last = 1;
            cur++;
            break;
        case '[':
            p++;
            if (*p == '^')
                p++;
            if (*p == ']')
                p++;
            for (; *p && *p != ']'; p++) {
                if (*p == '[' && (p[1] == ':' || p[1] == '.' || p[1] == '=')) {
                    char t = p[1];
                    for (p += 2; *p && !(*p == t && p[1] == ']'); p++)
                        ;
                    if (!*p)
                        return false;
                    p++;
                }
            }
            if (!*p)
                return false;
            last = 1;
            cur++;
            break;
        case '(':
            if (depth == (int)(sizeof outer / sizeof outer[0]))
                return false;
            outer[depth++] = cur;
            cur = last = 0;
            break;
        case ')':
            if (depth == 0)
                return false;
            last = cur;
            cur += outer[--depth];
            break;
        case '{': {
            if (!isdigit((unsigned char)p[1])) {
                last = 1;
                cur++;
                break;
            }
            char *e;
            long m = strtol(p + 1, &e, 10), n = m;
            if (*e == ',') {
                e++;
                n = isdigit((unsigned char)*e) ? strtol(e, &e, 10) : m + 1;
            }
            if (*e != '}' || m > 100000 || n > 100000)
                return false;
            int64_t times = n > 1 ? n : 1;
            cur += last * (times - 1);
            last *= times;
            p = e;
            break;
        }
        case '*':
        case '+':
        case '?':
            cur += last;
            last *= 2;
            break;
        case '|':
            cur++;
            last = 0;
            break;
        default:
            last = 1;
            cur++;
            break;
        }
        if (cur > REGEX_COST_MAX || last > REGEX_COST_MAX)
            return false;
    }
    return true;
}

/* Whether tracking number `no` matches the service's rule: 1, 0, or -1 when the rule cannot be
 * read (see ere_from_java; regcomp refused it): then it is not checked here (the platform
 * does, and its refusal is held like any refusal). An empty rule takes any number. */
static int tracking_matches(const char *regex, const char *no)
{
    char ere[2 * REGEX_MAX + 64];
    if (!regex || !regex[0])
        return 1;
    if (ere_from_java(regex, ere, sizeof ere) != 0 || !ere_small(ere))
        return -1;
    regex_t re;
    if (regcomp(&re, ere, REG_EXTENDED | REG_NOSUB) != 0)
        return -1;
    int m = regexec(&re, no, 0, NULL, 0) == 0;
    regfree(&re);
    return m;
}

/* ---- push: shipments (outbox kind "fulfil") ---- */

struct fulfil {
    char order_id[ID_LEN];
    char send_type[8];
    char logistics_no[TALLY_MAX_ID_LEN + 1];
    char carrier[129];  /* as the warehouse reported it (payload carrier) */
    char warehouse[65]; /* the shipping warehouse's code, "" when the payload names none */
    char service[129];  /* the service key sent (fulfil_service), from the carrier */
    char website[257];  /* tracking_website: only for the service "other" */
};

/* Copies a msgpack str into buf (NUL-terminated) when it is 1..cap-1 bytes of valid text. */
static bool mp_copy(const msgpack_object *o, char *buf, size_t cap, bool id)
{
    if (!o || o->type != MSGPACK_OBJECT_STR || o->via.str.size == 0 || o->via.str.size >= cap)
        return false;
    if (id ? !mp_id_ok(o->via.str.ptr, o->via.str.size)
           : !mp_text_ok(o->via.str.ptr, o->via.str.size))
        return false;
    memcpy(buf, o->via.str.ptr, o->via.str.size);
    buf[o->via.str.size] = 0;
    return true;
}

static int fulfil_read(const struct push_item *it, struct fulfil *f, char *err, size_t errlen)
{
    msgpack_unpacked up;
    msgpack_unpacked_init(&up);
    size_t off = 0;
    int r = -1;
    memset(f, 0, sizeof *f);
    if (msgpack_unpack_next(&up, it->payload, it->payload_len, &off) != MSGPACK_UNPACK_SUCCESS ||
        up.data.type != MSGPACK_OBJECT_MAP) {
        snprintf(err, errlen, "fulfil payload is not a map");
        goto out;
    }
    const msgpack_object *m = &up.data, *o = mp_map_get(m, "order_id");
    if (o && o->type == MSGPACK_OBJECT_POSITIVE_INTEGER && o->via.u64 > 0)
        snprintf(f->order_id, sizeof f->order_id, "%" PRIu64, o->via.u64);
    else if (!mp_copy(o, f->order_id, sizeof f->order_id, true))
        f->order_id[0] = 0;
    for (const char *c = f->order_id; *c; c++)
        if (*c < '0' || *c > '9')
            f->order_id[0] = 0;
    o = mp_map_get(m, "send_type");
    if (!o || o->type == MSGPACK_OBJECT_NIL)
        snprintf(f->send_type, sizeof f->send_type, "all");
    else if (!mp_copy(o, f->send_type, sizeof f->send_type, true) ||
             (strcmp(f->send_type, "all") != 0 && strcmp(f->send_type, "part") != 0))
        f->send_type[0] = 0;
    if (!f->order_id[0]) {
        snprintf(err, errlen, "fulfil payload: order_id must be a marketplace order id");
    } else if (!f->send_type[0]) {
        snprintf(err, errlen, "fulfil payload: send_type must be all or part");
    } else if (!mp_copy(mp_map_get(m, "logistics_no"), f->logistics_no, sizeof f->logistics_no,
                        true)) {
        snprintf(err, errlen, "fulfil payload: logistics_no must be 1-64 printable characters");
    } else if (!mp_copy(mp_map_get(m, "carrier"), f->carrier, sizeof f->carrier, false) &&
               /* a row written before the carrier mapping: its service_name is the carrier */
               !mp_copy(mp_map_get(m, "service_name"), f->carrier, sizeof f->carrier, false)) {
        snprintf(err, errlen, "fulfil payload: carrier is required (text, 1-128 bytes)");
    } else {
        o = mp_map_get(m, "warehouse");
        if (o && o->type != MSGPACK_OBJECT_NIL &&
            !mp_copy(o, f->warehouse, sizeof f->warehouse, true))
            snprintf(err, errlen, "fulfil payload: warehouse must be a warehouse code");
        else
            r = 0;
    }
out:
    msgpack_unpacked_destroy(&up);
    return r;
}

/* Whether the service's rule was logged as not checkable already (once per key and run). */
static bool regex_warned_once(struct ae *a, const char *key)
{
    size_t n = sizeof a->regex_warned / sizeof a->regex_warned[0];
    for (size_t i = 0; i < n; i++) {
        if (!strcmp(a->regex_warned[i], key))
            return true;
        if (!a->regex_warned[i][0]) {
            snprintf(a->regex_warned[i], sizeof a->regex_warned[i], "%s", key);
            return false;
        }
    }
    return true; /* enough said */
}

/*
 * The service key a shipment goes under, checked before anything is sent: the carrier must
 * map to a key ([carriers] / carrier.NAME, config_carrier) that the pulled list knows, and the
 * tracking number must match that key's tracking_no_regex. 0: f->service (and f->website for
 * the key "other", from the mapping) set; 1: the list was never pulled (the row waits for it,
 * never checked against nothing); -1: not sent, the reason in err (the row is held with an
 * exception: fix the mapping, restart tallyd, `tally outbox retry`).
 */
static int fulfil_service(struct upstream *u, struct fulfil *f, char *err, size_t errlen)
{
    const struct carrier_map *m =
        u->d ? config_carrier(&u->d->cfg, f->warehouse, f->carrier) : NULL;
    if (!m) {
        snprintf(err, errlen,
                 "not sent: carrier %.40s%s%.24s maps to no logistics service of the marketplace"
                 " (map it in [carriers]; tally carriers lists the keys)",
                 f->carrier, f->warehouse[0] ? " of " : "", f->warehouse);
        return -1;
    }
    sqlite3_stmt *s = store_stmt(u->store, "SELECT (SELECT COUNT(*) FROM mp_services_pull),"
                                           " (SELECT COUNT(*) FROM mp_services"
                                           "  WHERE service_name = ?1),"
                                           " (SELECT tracking_no_regex FROM mp_services"
                                           "  WHERE service_name = ?1)");
    if (!s) {
        snprintf(err, errlen, "logistics services unreadable");
        return 1;
    }
    sqlite3_bind_text(s, 1, m->service, -1, SQLITE_STATIC);
    char regex[REGEX_MAX + 1] = "";
    bool pulled = false, known = false;
    if (sqlite3_step(s) == SQLITE_ROW) {
        pulled = sqlite3_column_int(s, 0) > 0;
        known = sqlite3_column_int(s, 1) > 0;
        const char *t = (const char *)sqlite3_column_text(s, 2);
        snprintf(regex, sizeof regex, "%s", t ? t : "");
    }
    sqlite3_reset(s);
    if (!pulled) {
        snprintf(err, errlen, "waiting for the marketplace's logistics services");
        return 1;
    }
    if (!known) {
        snprintf(err, errlen,
                 "not sent: carrier %.60s maps to %.64s, which is not one of the marketplace's"
                 " logistics services (tally carriers)",
                 f->carrier, m->service);
        return -1;
    }
    int match = tracking_matches(regex, f->logistics_no);
    if (match == 0) {
        snprintf(err, errlen,
                 "not sent: tracking number %.40s does not match the rule of service %.40s"
                 " (%.60s): check the number, or the carrier's mapping",
                 f->logistics_no, m->service, regex);
        return -1;
    }
    if (match < 0 && !regex_warned_once(u->conn, m->service))
        log_warn("%s: the tracking number rule of service %s (%s) cannot be read here: its"
                 " numbers are not checked before upload (the marketplace checks them)",
                 u->name, m->service, regex);
    snprintf(f->service, sizeof f->service, "%s", m->service);
    snprintf(f->website, sizeof f->website, "%s", !strcmp(m->service, "other") ? m->website : "");
    return 0;
}

static void push_next(struct upstream *u, struct push_batch *b, int i);

/* The list fetched for a push that found it never pulled: stored, then the row goes on. */
static void on_services_for_push(struct ae_call *c, int outcome, const cJSON *resp)
{
    struct push_batch *b = c->owner;
    struct upstream *u = c->u;
    struct push_item *it = &b->items[c->index];
    struct svc_list l = {0};
    char err[256] = "";
    if (outcome == SYNC_OK)
        outcome = services_read(resp, &l, err, sizeof err);
    else
        snprintf(err, sizeof err, "%s", c->error);
    if (outcome == SYNC_OK) {
        int r = store_begin(u->store);
        if (r == 0) {
            r = services_store(u->store, &l, store_now());
            if (r == 0)
                r = store_commit(u->store);
            if (r != 0 && store_in_tx(u->store))
                store_rollback(u->store);
        }
        if (r) {
            outcome = SYNC_TRANSIENT;
            snprintf(err, sizeof err, "logistics services not stored");
        }
    }
    free(l.v);
    if (outcome == SYNC_OK) {
        push_next(u, b, c->index); /* pulled now: checked, then sent or held */
        return;
    }
    /* The list cannot be had: the row waits (never sent unchecked); refused outright (the
     * method not open to the app, say), it is held with the reason rather than asked again
     * at every probe. */
    it->outcome = outcome == SYNC_AUTH || outcome == SYNC_PERMANENT ? outcome : SYNC_TRANSIENT;
    snprintf(it->error, sizeof it->error, "%slogistics services: %.160s",
             outcome == SYNC_PERMANENT ? "not sent: the marketplace refuses its " : "", err);
    push_next(u, b, c->index + 1);
}

static void push_finish(struct push_batch *b)
{
    bool all_transient = true;
    for (int i = 0; i < b->n; i++)
        all_transient = all_transient && b->items[i].outcome == SYNC_TRANSIENT;
    b->outcome = all_transient ? SYNC_TRANSIENT : SYNC_OK;
    if (all_transient && b->n > 0 && !b->error[0])
        snprintf(b->error, sizeof b->error, "%s", b->items[0].error);
    sync_push_done(b);
}

static bool read_back(struct upstream *u, struct push_batch *b, int i, bool after_refusal);
static void on_read_back(struct ae_call *c, int outcome, const cJSON *resp);

static bool has_code(const char *code, const char *part)
{
    return code && strstr(code, part) != NULL;
}

static void on_fulfilled(struct ae_call *c, int outcome, const cJSON *resp)
{
    struct push_batch *b = c->owner;
    struct push_item *it = &b->items[c->index];
    if (c->req.retry_after_s > b->retry_after_s)
        b->retry_after_s = c->req.retry_after_s;
    const cJSON *res = member(resp, "result");
    if (outcome == SYNC_OK && !cJSON_IsObject(res)) {
        /* Perhaps applied: the next attempt reads the order back before sending again. */
        it->outcome = SYNC_TRANSIENT;
        snprintf(it->error, sizeof it->error, "fulfil answer without a result");
    } else if (outcome == SYNC_OK) {
        const char *code = jid(res, "error_code"), *msg = jtext(res, "error_message", 400);
        if (cJSON_IsTrue(member(res, "result_success"))) {
            it->outcome = SYNC_OK;
        } else if (has_code(code, "SYSTEM") || has_code(code, "BUSY") ||
                   has_code(code, "TIMEOUT") || has_code(code, "LIMIT") ||
                   (code && !strcmp(code, "ORDER_ALREADY_SHIPPED") && !c->read_back)) {
            /* ORDER_ALREADY_SHIPPED is documented nowhere: it proves nothing about which
             * shipment is there. Not done yet; the next attempt reads the order back. */
            it->outcome = SYNC_TRANSIENT;
            snprintf(it->error, sizeof it->error, "%s: %.200s", code, msg ? msg : "");
        } else {
            it->outcome = SYNC_PERMANENT;
            snprintf(it->error, sizeof it->error, "%s: %.200s", code ? code : "refused",
                     msg ? msg : "(no message)");
            /* Refused without a read-back first: this may be our own shipment, already there
             * (libcurl sends a request again by itself when a reused connection drops before
             * the answer). Read the order back before believing it. */
            if (!c->read_back) {
                if (read_back(c->u, b, c->index, true))
                    return;
                it->outcome = SYNC_TRANSIENT; /* read back at the next attempt */
            }
        }
    } else {
        it->outcome = outcome;
        snprintf(it->error, sizeof it->error, "%s", c->error);
    }
    push_next(c->u, b, c->index + 1);
}

/* Starts the fulfil call of row i; false when it could not be started. */
static bool send_fulfil(struct upstream *u, struct push_batch *b, int i, const struct fulfil *f,
                        bool read_back)
{
    struct iop_param prm[5] = {{"out_ref", f->order_id},
                               {"send_type", f->send_type},
                               {"logistics_no", f->logistics_no},
                               {"service_name", f->service},
                               {"tracking_website", f->website}};
    struct ae_call *c =
        call_start(u, CALL_PUSH, METHOD_FULFIL, prm, f->website[0] ? 5 : 4, on_fulfilled, b, i);
    if (!c)
        return false;
    snprintf(c->ref, sizeof c->ref, "%s", f->logistics_no);
    c->read_back = read_back;
    return true;
}

/* The outbox row's attempts so far (0 when it cannot be read: then nothing was sent). */
static int64_t row_attempts(struct upstream *u, int64_t id)
{
    sqlite3_stmt *s = store_stmt(u->store, "SELECT attempts FROM outbox WHERE id = ?1");
    int64_t n = 0;
    if (!s)
        return 1; /* unknown: read back, the safe side */
    sqlite3_bind_int64(s, 1, id);
    if (sqlite3_step(s) == SQLITE_ROW)
        n = sqlite3_column_int64(s, 0);
    sqlite3_reset(s);
    return n;
}

/* The order's shipments as order.info.get shows them (see the header for the names). */
static const cJSON *logistics_of(const cJSON *data)
{
    const cJSON *l = list_of(data, "logistic_info_list", "global_aeop_tp_logistic_info_dto");
    if (!l)
        l = list_of(data, "logistics_info_list", "global_aeop_tp_logistic_info_dto");
    return l;
}

/* Whether two tracking numbers are the same shipment's: the platform may hand a number back
 * padded or in another case than it was sent. */
static bool same_tracking(const char *a, const char *b)
{
    size_t na, nb;
    while (*a == ' ' || *a == '\t')
        a++;
    while (*b == ' ' || *b == '\t')
        b++;
    for (na = strlen(a); na > 0 && (a[na - 1] == ' ' || a[na - 1] == '\t'); na--)
        ;
    for (nb = strlen(b); nb > 0 && (b[nb - 1] == ' ' || b[nb - 1] == '\t'); nb--)
        ;
    return na == nb && na > 0 && strncasecmp(a, b, na) == 0;
}

/* Whether the replica holds another shipment of this order under tracking number `no` (the
 * other warehouse's part of a split order): ours, not someone else's. */
static bool known_shipment(struct upstream *u, const char *order_id, const char *no)
{
    sqlite3_stmt *s = store_stmt(u->store, "SELECT s.tracking_no FROM shipments s"
                                           " JOIN orders o ON o.id = s.order_ref"
                                           " WHERE o.order_id = ?1 AND s.tracking_no IS NOT NULL");
    bool known = false;
    if (!s)
        return false; /* unknown: someone else's, the safe side (held) */
    sqlite3_bind_text(s, 1, order_id, -1, SQLITE_STATIC);
    while (!known && sqlite3_step(s) == SQLITE_ROW) {
        const char *t = (const char *)sqlite3_column_text(s, 0);
        known = t && same_tracking(t, no);
    }
    sqlite3_reset(s);
    return known;
}

/* Starts reading back the order of row i (its payload was read already); false when it could
 * not be started. */
static bool read_back(struct upstream *u, struct push_batch *b, int i, bool after_refusal)
{
    struct fulfil f;
    char err[8];
    if (fulfil_read(&b->items[i], &f, err, sizeof err) != 0)
        return false;
    char q[64];
    snprintf(q, sizeof q, "{\"order_id\":%s}", f.order_id);
    struct iop_param prm = {"param1", q};
    struct ae_call *c = call_start(u, CALL_PUSH, METHOD_ORDER_INFO, &prm, 1, on_read_back, b, i);
    if (c)
        c->read_back = after_refusal;
    return c != NULL;
}

/* The read-back of an order before a fulfil is sent again: done, held, or sent again. */
static void on_read_back(struct ae_call *c, int outcome, const cJSON *resp)
{
    struct push_batch *b = c->owner;
    struct upstream *u = c->u;
    struct push_item *it = &b->items[c->index];
    struct fulfil f;
    if (c->req.retry_after_s > b->retry_after_s)
        b->retry_after_s = c->req.retry_after_s;
    char refusal[sizeof it->error];
    snprintf(refusal, sizeof refusal, "%s", it->error);
    if (fulfil_read(it, &f, it->error, sizeof it->error) != 0) {
        it->outcome = SYNC_PERMANENT;
        push_next(u, b, c->index + 1);
        return;
    }
    snprintf(it->error, sizeof it->error, "%s", c->read_back ? refusal : "");
    const cJSON *res = member(resp, "result");
    if (outcome != SYNC_OK) {
        it->outcome = outcome;
        snprintf(it->error, sizeof it->error, "reading order %s back: %.200s", f.order_id,
                 c->error);
        push_next(u, b, c->index + 1);
        return;
    }
    const cJSON *data = member(res, "data");
    const char *code = jid(res, "error_code");
    if (code || !cJSON_IsObject(data)) {
        bool gone = code && !strcmp(code, "ORDER_NOT_FOUND");
        it->outcome = gone ? SYNC_PERMANENT : SYNC_TRANSIENT;
        snprintf(it->error, sizeof it->error, "reading order %s back: %s", f.order_id,
                 code ? code : "an answer without the order");
        push_next(u, b, c->index + 1);
        return;
    }
    const cJSON *list = logistics_of(data), *e;
    char other[TALLY_MAX_ID_LEN + 1] = "";
    bool ours = false;
    cJSON_ArrayForEach(e, list)
    {
        const char *no = json_str(e, "logistics_no");
        if (!no)
            continue;
        if (same_tracking(no, f.logistics_no))
            ours = true;
        else if (!other[0] && !known_shipment(u, f.order_id, no))
            /* someone else's (a number tally cannot read is someone else's too) */
            snprintf(other, sizeof other, "%s", mp_id_ok(no, strlen(no)) ? no : "(unreadable)");
    }
    const char *status = jid(data, "order_status");
    int chk;
    bool open = status && (!strcmp(status, "WAIT_SELLER_SEND_GOODS") ||
                           !strcmp(status, "SELLER_PART_SEND_GOODS"));
    /* Part shipped, and the answer shows no shipments at all (a block left out or masked):
     * whether ours is among them cannot be told. */
    bool unseen =
        cJSON_GetArraySize(list) == 0 && status && !strcmp(status, "SELLER_PART_SEND_GOODS");
    if (ours) {
        /* An earlier attempt of this row landed (its answer was lost): done, once. */
        it->outcome = SYNC_OK;
        log_info("%s: %s: order %s already carries %s: the earlier attempt landed", u->name,
                 it->key, f.order_id, f.logistics_no);
    } else if (other[0] && (!open || !strcmp(f.send_type, "all"))) {
        it->outcome = SYNC_PERMANENT;
        snprintf(it->error, sizeof it->error,
                 "order %.23s: the marketplace has tracking %.48s, not %.48s (%.24s); shipped by"
                 " someone else? check it before anything is sent again",
                 f.order_id, other, f.logistics_no, status ? status : "status unknown");
    } else if (c->read_back) {
        it->outcome = SYNC_PERMANENT; /* refused, and not there: the refusal stands */
    } else if (unseen) {
        it->outcome = SYNC_PERMANENT;
        snprintf(it->error, sizeof it->error,
                 "order %s is partly shipped at the marketplace but its answer lists no"
                 " shipments: whether %s landed is unknown; check the order before anything"
                 " is sent again",
                 f.order_id, f.logistics_no);
    } else if (!open) {
        it->outcome = SYNC_PERMANENT;
        snprintf(it->error, sizeof it->error,
                 "order %s is %s at the marketplace without a shipment under %s: check the"
                 " order before anything is sent again",
                 f.order_id, status ? status : "of unknown status", f.logistics_no);
    } else if ((chk = fulfil_service(u, &f, it->error, sizeof it->error)) != 0) {
        it->outcome = chk < 0 ? SYNC_PERMANENT : SYNC_TRANSIENT;
    } else if (send_fulfil(u, b, c->index, &f, true)) {
        return; /* not there: sent again */
    } else {
        it->outcome = SYNC_TRANSIENT;
        snprintf(it->error, sizeof it->error, "could not start a request");
    }
    push_next(u, b, c->index + 1);
}

/* Sends the rows from i on, one call at a time (in order), then reports the batch. A row that
 * may have reached the platform before is read back first (see the header). */
static void push_next(struct upstream *u, struct push_batch *b, int i)
{
    for (; i < b->n; i++) {
        struct push_item *it = &b->items[i];
        struct fulfil f;
        if (strcmp(it->kind, "fulfil") != 0) {
            it->outcome = SYNC_PERMANENT;
            snprintf(it->error, sizeof it->error, "the marketplace takes no %.16s rows", it->kind);
            continue;
        }
        if (fulfil_read(it, &f, it->error, sizeof it->error) != 0) {
            it->outcome = SYNC_PERMANENT;
            continue;
        }
        /* Checked before anything is sent: the carrier's service key and the number's rule.
         * A row an earlier attempt may have landed (attempts > 0: an answer lost) is read back
         * first even when the check fails now (the mapping or the list changed since): the
         * marketplace may have the shipment; on_read_back checks again before a re-send. */
        int chk = fulfil_service(u, &f, it->error, sizeof it->error);
        bool tried = row_attempts(u, it->outbox_id) > 0;
        if (chk < 0 && !tried) {
            it->outcome = SYNC_PERMANENT; /* held with the reason, never sent as it is */
            continue;
        }
        if (chk > 0) {
            if (call_start(u, CALL_PUSH, METHOD_LOGISTICS, NULL, 0, on_services_for_push, b, i))
                return;
            it->outcome = SYNC_TRANSIENT;
            snprintf(it->error, sizeof it->error, "could not start a request");
            continue;
        }
        it->error[0] = 0;
        if (tried) {
            if (read_back(u, b, i, false))
                return;
        } else if (send_fulfil(u, b, i, &f, false)) {
            return;
        }
        it->outcome = SYNC_TRANSIENT;
        snprintf(it->error, sizeof it->error, "could not start a request");
    }
    push_finish(b);
}

static void ae_push(struct upstream *u, struct push_batch *b)
{
    push_next(u, b, 0);
}

/* ---- set-up ---- */

static int ae_init(struct upstream *u, char *err, size_t errlen)
{
    if (!u->mp || !u->mp->gateway[0] || !u->mp->app_key[0]) {
        snprintf(err, errlen, "[marketplace] needs gateway and app_key");
        return -1;
    }
    struct ae *a = calloc(1, sizeof *a);
    if (!a) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    if (secret_read(u->mp->app_secret_file, a->secret, sizeof a->secret, err, errlen) != 0 ||
        secret_read(u->mp->access_token_file, a->token, sizeof a->token, err, errlen) != 0) {
        explicit_bzero(a, sizeof *a);
        free(a);
        return -1;
    }
    a->sign = u->mp->sign_md5 ? IOP_SIGN_MD5 : IOP_SIGN_SHA256;
    u->conn = a;
    return 0;
}

/*
 * Called by sync_stop() after http_close(): requests still in flight will never complete.
 * Pages not yet handed over are ours to free. Push and publish batches are the engine's: they
 * are reported back as transient, which the stopping engine answers by freeing them (their
 * rows stay 'inflight' / dirty and go again after the restart).
 */
/* The secret files changed (or `tally sync` asks after refused credentials): read them again. */
static int ae_reload(struct upstream *u, char *err, size_t errlen)
{
    struct ae *a = u->conn;
    char secret[sizeof a->secret], token[sizeof a->token];
    int r = -1;
    if (a && secret_read(u->mp->app_secret_file, secret, sizeof secret, err, errlen) == 0 &&
        secret_read(u->mp->access_token_file, token, sizeof token, err, errlen) == 0) {
        memcpy(a->secret, secret, sizeof secret);
        memcpy(a->token, token, sizeof token);
        r = 0;
    }
    explicit_bzero(secret, sizeof secret);
    explicit_bzero(token, sizeof token);
    return r;
}

static void ae_free(struct upstream *u)
{
    struct ae *a = u->conn;
    if (!a)
        return;
    while (a->calls) {
        struct ae_call *c = (struct ae_call *)a->calls;
        call_link_remove(&a->calls, &c->node);
        if (c->kind == CALL_PUSH) {
            struct push_batch *b = c->owner;
            b->outcome = SYNC_TRANSIENT;
            snprintf(b->error, sizeof b->error, "stopped");
            sync_push_done(b);
        } else if (c->kind == CALL_PUBLISH) {
            struct ae_pub *s = c->owner;
            s->b->outcome = SYNC_TRANSIENT;
            snprintf(s->b->error, sizeof s->b->error, "stopped");
            publish_finish(s);
        } else if (c->kind == CALL_SERVICES) {
            svc_page_free(c->owner);
        }
        call_free(c);
    }
    while (a->pulls) {
        struct ae_pull *p = (struct ae_pull *)a->pulls;
        call_link_remove(&a->pulls, &p->node);
        free_pull(p);
    }
    for (int i = 0; i < 2; i++)
        if (a->carry[i])
            free_pull(a->carry[i]);
    if (a->rcpt)
        rcpt_free(a->rcpt); /* its calls are gone: never handed on */
    explicit_bzero(a, sizeof *a);
    free(a);
    u->conn = NULL;
}

const struct connector_ops conn_aliexpress_ops = {
    .kind = "aliexpress",
    .nstreams = 4,
    .streams = ae_streams,
    .push_limit = 1, /* order.fulfill takes one shipment */
    .init = ae_init,
    .pull = ae_pull,
    .push = ae_push,
    .free = ae_free,
    .publish = ae_publish,
    .publish_limit = PUBLISH_PRODUCTS, /* SKUs a batch: never more products than a call takes */
    .reload = ae_reload,
};
