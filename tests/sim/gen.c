#include "gen.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rng.h"
#include "strmap.h"

#define DAY (24 * 3600)
#define MARKETPLACE_STOCK_MAX 999999

/* Stream salts: one independent stream per kind of data. */
enum { STREAM_CATALOG = 1, STREAM_ORDERS = 2, STREAM_ORDER_TIMES = 3 };

static const struct {
    const char *prefix, *name;
} brands[] = {
    {"EB", "Ebrio"}, {"KX", "Kexin"}, {"ZL", "Zelan"},  {"MO", "Movaro"},
    {"TR", "Trevo"}, {"VG", "Vigor"}, {"NX", "Nexa"},   {"LU", "Lumio"},
    {"PA", "Pando"}, {"QI", "Qiyun"}, {"SO", "Solvik"}, {"HY", "Hyla"},
};
#define N_BRANDS (sizeof(brands) / sizeof(brands[0]))

static const char *const nouns[] = {
    "Wireless Earbuds",
    "Phone Case",
    "Smart Watch Band",
    "LED Desk Lamp",
    "Yoga Mat",
    "Running Shoes",
    "Hoodie",
    "T-Shirt",
    "Backpack",
    "Water Bottle",
    "Sunglasses",
    "Phone Holder",
    "USB-C Cable",
    "Power Bank",
    "Kitchen Knife Set",
    "Silicone Baking Mat",
    "Car Seat Cover",
    "Pet Harness",
    "Hair Clipper",
    "Makeup Brush Set",
    "Bike Light",
    "Camping Lantern",
    "Rain Jacket",
    "Wool Socks",
    "Baby Romper",
    "Gaming Mouse",
    "Mechanical Keyboard",
    "Fishing Lure Kit",
    "Garden Hose Nozzle",
    "Wall Clock",
};
static const char *const adjectives[] = {
    "Portable",   "Waterproof",  "Ultra-Thin",   "Premium", "Foldable",   "Magnetic",
    "Breathable", "Lightweight", "Rechargeable", "Vintage", "Minimalist", "Heavy-Duty",
    "Ergonomic",  "Anti-Slip",   "Quick-Dry",    "Soft",
};
#define N_NOUNS (sizeof(nouns) / sizeof(nouns[0]))
#define N_ADJECTIVES (sizeof(adjectives) / sizeof(adjectives[0]))

/* AliExpress-style SKU property values (ids are plausible, see README). */
static const struct {
    const char *code, *name;
    int64_t value_id;
} colours[GEN_N_COLOURS] = {
    {"BLK", "Black", 193},  {"WHT", "White", 29},       {"RED", "Red", 10},
    {"BLU", "Blue", 173},   {"GRN", "Green", 175},      {"GRY", "Gray", 691},
    {"PNK", "Pink", 1052},  {"NAV", "Navy", 200004890}, {"BEI", "Beige", 200001438},
    {"YEL", "Yellow", 366},
};
static const struct {
    const char *name;
    int64_t value_id;
} sizes[GEN_N_SIZES] = {
    {"XS", 100014064}, {"S", 361386}, {"M", 361385}, {"L", 100014065}, {"XL", 4182}, {"XXL", 4183},
};

enum postcode_format { PC_5, PC_PL, PC_BR, PC_NL };

struct city {
    const char *name, *province;
    int lo, hi;
};

static const struct country {
    const char *code, *calling;
    int weight;
    enum postcode_format pc;
    int phone_digits;
    char phone_lead;
    bool number_first;
    struct city cities[4];
    const char *streets[4];
    const char *first[6], *last[6];
} countries[GEN_N_COUNTRIES] = {
    {"ES",
     "34",
     20,
     PC_5,
     9,
     '6',
     false,
     {{"Madrid", "Madrid", 28001, 28055},
      {"Barcelona", "Barcelona", 8001, 8042},
      {"Valencia", "Valencia", 46001, 46026},
      {"Sevilla", "Sevilla", 41001, 41020}},
     {"Calle Mayor", "Calle de Alcalá", "Avenida de la Constitución", "Calle Real"},
     {"Lucía", "Hugo", "Martina", "Pablo", "Sofía", "Javier"},
     {"García", "Martínez", "López", "Sánchez", "Romero", "Navarro"}},
    {"FR",
     "33",
     15,
     PC_5,
     9,
     '6',
     true,
     {{"Paris", "Île-de-France", 75001, 75020},
      {"Lyon", "Auvergne-Rhône-Alpes", 69001, 69009},
      {"Marseille", "Provence-Alpes-Côte d'Azur", 13001, 13016},
      {"Toulouse", "Occitanie", 31000, 31500}},
     {"Rue de la Paix", "Avenue Victor Hugo", "Rue du Commerce", "Boulevard Voltaire"},
     {"Camille", "Louis", "Léa", "Hugo", "Manon", "Julien"},
     {"Martin", "Bernard", "Dubois", "Moreau", "Laurent", "Lefebvre"}},
    {"PL",
     "48",
     15,
     PC_PL,
     9,
     '5',
     false,
     {{"Warszawa", "mazowieckie", 1, 4999},
      {"Kraków", "małopolskie", 30001, 31999},
      {"Gdańsk", "pomorskie", 80001, 80999},
      {"Wrocław", "dolnośląskie", 50001, 54999}},
     {"ul. Marszałkowska", "ul. Długa", "ul. Polna", "ul. Lipowa"},
     {"Zuzanna", "Jakub", "Julia", "Antoni", "Maja", "Piotr"},
     {"Nowak", "Kowalski", "Wiśniewski", "Wójcik", "Kamiński", "Lewandowski"}},
    {"US",
     "1",
     15,
     PC_5,
     10,
     '3',
     true,
     {{"Los Angeles", "CA", 90001, 90089},
      {"New York", "NY", 10001, 10282},
      {"Chicago", "IL", 60601, 60661},
      {"Houston", "TX", 77001, 77099}},
     {"Main St", "Oak Ave", "Maple Dr", "Sunset Blvd"},
     {"Emma", "Liam", "Olivia", "Noah", "Ava", "Ethan"},
     {"Smith", "Johnson", "Williams", "Brown", "Jones", "Miller"}},
    {"BR",
     "55",
     10,
     PC_BR,
     11,
     '1',
     false,
     {{"São Paulo", "SP", 1000, 5999},
      {"Rio de Janeiro", "RJ", 20000, 23799},
      {"Belo Horizonte", "MG", 30000, 31999},
      {"Curitiba", "PR", 80000, 82999}},
     {"Rua das Flores", "Avenida Paulista", "Rua São João", "Rua Augusta"},
     {"Ana", "João", "Maria", "Pedro", "Beatriz", "Lucas"},
     {"Silva", "Santos", "Oliveira", "Souza", "Pereira", "Costa"}},
    {"NL",
     "31",
     8,
     PC_NL,
     9,
     '6',
     false,
     {{"Amsterdam", "Noord-Holland", 1011, 1109},
      {"Rotterdam", "Zuid-Holland", 3011, 3089},
      {"Utrecht", "Utrecht", 3511, 3585},
      {"Den Haag", "Zuid-Holland", 2491, 2599}},
     {"Kerkstraat", "Dorpsstraat", "Stationsweg", "Molenstraat"},
     {"Emma", "Daan", "Julia", "Sem", "Tess", "Lucas"},
     {"de Jong", "Jansen", "de Vries", "van Dijk", "Bakker", "Visser"}},
    {"DE",
     "49",
     10,
     PC_5,
     11,
     '1',
     false,
     {{"Berlin", "Berlin", 10115, 14199},
      {"München", "Bayern", 80331, 81929},
      {"Hamburg", "Hamburg", 20095, 22769},
      {"Köln", "Nordrhein-Westfalen", 50667, 51149}},
     {"Hauptstraße", "Schulstraße", "Bahnhofstraße", "Gartenstraße"},
     {"Mia", "Leon", "Hannah", "Paul", "Lena", "Felix"},
     {"Müller", "Schmidt", "Schneider", "Fischer", "Weber", "Wagner"}},
    {"IT",
     "39",
     7,
     PC_5,
     10,
     '3',
     false,
     {{"Roma", "Lazio", 118, 199},
      {"Milano", "Lombardia", 20121, 20162},
      {"Napoli", "Campania", 80121, 80147},
      {"Torino", "Piemonte", 10121, 10156}},
     {"Via Roma", "Via Garibaldi", "Corso Italia", "Via Dante"},
     {"Giulia", "Francesco", "Sofia", "Alessandro", "Aurora", "Lorenzo"},
     {"Rossi", "Russo", "Ferrari", "Esposito", "Bianchi", "Romano"}},
};

int gen_country(uint64_t *rng)
{
    int total = 0;
    for (int i = 0; i < GEN_N_COUNTRIES; i++)
        total += countries[i].weight;
    int r = (int)rng_below(rng, (uint64_t)total);
    for (int i = 0; i < GEN_N_COUNTRIES; i++) {
        if (r < countries[i].weight)
            return i;
        r -= countries[i].weight;
    }
    return 0;
}

const char *gen_country_code(int country)
{
    return countries[country].code;
}

static void gen_postcode(const struct country *c, const struct city *city, uint64_t *rng, char *out,
                         size_t n)
{
    int v = (int)rng_range(rng, city->lo, city->hi);
    static const char letters[] = "ABCEGHJKLMNPRTVWXZ";
    switch (c->pc) {
    case PC_5:
        snprintf(out, n, "%05d", v);
        break;
    case PC_PL:
        snprintf(out, n, "%02d-%03d", v / 1000, v % 1000);
        break;
    case PC_BR:
        snprintf(out, n, "%05d-%03d", v, (int)rng_below(rng, 1000));
        break;
    case PC_NL:
        snprintf(out, n, "%04d %c%c", v, letters[rng_below(rng, sizeof(letters) - 1)],
                 letters[rng_below(rng, sizeof(letters) - 1)]);
        break;
    }
}

void gen_buyer(uint64_t buyer_seed, int country, struct buyer *b)
{
    const struct country *c = &countries[country];
    uint64_t rng = buyer_seed;
    const struct city *city = &c->cities[rng_below(&rng, 4)];
    snprintf(b->first, sizeof(b->first), "%s", c->first[rng_below(&rng, 6)]);
    snprintf(b->last, sizeof(b->last), "%s", c->last[rng_below(&rng, 6)]);
    snprintf(b->login, sizeof(b->login), "%c%c%010" PRIu64 "%c%c%c%c", c->code[0] + 32,
             c->code[1] + 32, rng_below(&rng, 10000000000ull), (char)('a' + rng_below(&rng, 26)),
             (char)('a' + rng_below(&rng, 26)), (char)('a' + rng_below(&rng, 26)),
             (char)('a' + rng_below(&rng, 26)));
    const char *street = c->streets[rng_below(&rng, 4)];
    int number = (int)rng_range(&rng, 1, 240);
    if (c->number_first)
        snprintf(b->street, sizeof(b->street), "%d %s", number, street);
    else
        snprintf(b->street, sizeof(b->street), "%s %d", street, number);
    snprintf(b->city, sizeof(b->city), "%s", city->name);
    snprintf(b->province, sizeof(b->province), "%s", city->province);
    gen_postcode(c, city, &rng, b->zip, sizeof(b->zip));
    b->phone[0] = c->phone_lead;
    for (int i = 1; i < c->phone_digits && i < (int)sizeof(b->phone) - 1; i++)
        b->phone[i] = (char)('0' + rng_below(&rng, 10));
    b->phone[c->phone_digits] = '\0';
    snprintf(b->country, sizeof(b->country), "%s", c->code);
    snprintf(b->phone_country, sizeof(b->phone_country), "%s", c->calling);
}

void gen_product_title(const struct sim *s, size_t product, char *out, size_t n)
{
    const struct product *p = &s->products[product];
    uint64_t rng = p->title_seed;
    const char *adj = adjectives[rng_below(&rng, N_ADJECTIVES)];
    const char *noun = nouns[rng_below(&rng, N_NOUNS)];
    char model = (char)('A' + rng_below(&rng, 26));
    snprintf(out, n, "%s %s %s %c%d", brands[p->brand].name, adj, noun, model,
             (int)rng_range(&rng, 1, 999));
}

const char *gen_colour_name(int c)
{
    return colours[c].name;
}

int64_t gen_colour_value_id(int c)
{
    return colours[c].value_id;
}

const char *gen_size_name(int sz)
{
    return sizes[sz].name;
}

int64_t gen_size_value_id(int sz)
{
    return sizes[sz].value_id;
}

void gen_sku_standard(const struct sku *k, char *out, size_t n)
{
    out[0] = '\0';
    if (k->colour != SKU_NO_ATTR && k->size != SKU_NO_ATTR)
        snprintf(out, n, "Color:%s Size:%s", colours[k->colour].name, sizes[k->size].name);
    else if (k->colour != SKU_NO_ATTR)
        snprintf(out, n, "Color:%s", colours[k->colour].name);
    else if (k->size != SKU_NO_ATTR)
        snprintf(out, n, "Size:%s", sizes[k->size].name);
}

void gen_tracking(const char *wh_code, uint64_t serial, char carrier[24], char tracking[40])
{
    static const struct {
        const char *country, *carrier, *prefix;
    } posts[] = {
        {"ES", "Correos", "PK"},       {"FR", "La Poste", "LA"},
        {"PL", "Poczta Polska", "RR"}, {"US", "USPS", "LZ"},
        {"BR", "Correios", "QB"},      {"NL", "PostNL", "LS"},
        {"DE", "Deutsche Post", "RX"}, {"IT", "Poste Italiane", "RA"},
    };
    const char *name = "DHL", *prefix = "CP";
    if (strlen(wh_code) < 2)
        wh_code = "CN";
    char cc[3] = {wh_code[0], wh_code[1], '\0'};
    for (size_t i = 0; i < sizeof(posts) / sizeof(posts[0]); i++) {
        if (strncmp(wh_code, posts[i].country, 2) == 0) {
            name = posts[i].carrier;
            prefix = posts[i].prefix;
        }
    }
    uint64_t h = rng_hash_str(wh_code) ^ (serial * 0x9E3779B97F4A7C15ull);
    uint32_t digits = (uint32_t)(rng_next(&h) % 100000000u);
    static const int weights[8] = {8, 6, 4, 2, 3, 5, 9, 7};
    int sum = 0;
    uint32_t d = digits;
    for (int i = 7; i >= 0; i--) {
        sum += (int)(d % 10) * weights[i];
        d /= 10;
    }
    int check = 11 - sum % 11;
    check = check == 10 ? 0 : check == 11 ? 5 : check;
    snprintf(carrier, 24, "%s", name);
    snprintf(tracking, 40, "%s%08" PRIu32 "%d%s", prefix, digits, check, cc);
}

/* --- catalog ------------------------------------------------------------------------------ */

static int variant_count(uint64_t *rng)
{
    static const int weights[6] = {20, 20, 20, 15, 10, 15};
    int r = (int)rng_below(rng, 100);
    for (int i = 0; i < 6; i++) {
        if (r < weights[i])
            return i + 1;
        r -= weights[i];
    }
    return 1;
}

static void pick_colours(uint64_t *rng, int k, uint8_t *out)
{
    uint8_t all[GEN_N_COLOURS];
    for (int i = 0; i < GEN_N_COLOURS; i++)
        all[i] = (uint8_t)i;
    for (int i = 0; i < k; i++) {
        int j = i + (int)rng_below(rng, (uint64_t)(GEN_N_COLOURS - i));
        uint8_t t = all[i];
        all[i] = all[j];
        all[j] = t;
        out[i] = all[i];
    }
}

static void pick_sizes(uint64_t *rng, int k, uint8_t *out)
{
    int start = (int)rng_below(rng, (uint64_t)(GEN_N_SIZES - k + 1));
    for (int i = 0; i < k; i++)
        out[i] = (uint8_t)(start + i);
}

static int add_sku(struct sim *s, size_t product, int brand, int colour, int size, int32_t price)
{
    char code[64];
    int n = snprintf(code, sizeof(code), "%s-%06zu", brands[brand].prefix, product + 1);
    if (colour != SKU_NO_ATTR)
        n += snprintf(code + n, sizeof(code) - (size_t)n, "-%s", colours[colour].code);
    if (size != SKU_NO_ATTR)
        n += snprintf(code + n, sizeof(code) - (size_t)n, "-%s", sizes[size].name);
    struct sku *k = &s->skus[s->n_skus];
    if (strmap_put(s->sku_codes, code, (size_t)n, (uint32_t)s->n_skus, &k->code) != 1)
        return -1;
    k->product = (uint32_t)product;
    k->price_cents = price;
    k->colour = (uint8_t)colour;
    k->size = (uint8_t)size;
    s->n_skus++;
    return 0;
}

static int gen_catalog(struct sim *s, int64_t now)
{
    size_t n = s->cfg.n_skus;
    uint64_t rng = rng_stream(s->cfg.seed, STREAM_CATALOG);
    s->skus = calloc(n, sizeof(*s->skus));
    s->products = calloc(n, sizeof(*s->products)); /* at most one product per SKU */
    s->sku_codes = strmap_new(n);
    if (!s->skus || !s->products || !s->sku_codes)
        return -1;
    while (s->n_skus < n) {
        size_t p = s->n_products++;
        struct product *pr = &s->products[p];
        int nv = variant_count(&rng);
        if ((size_t)nv > n - s->n_skus)
            nv = (int)(n - s->n_skus);
        pr->brand = (uint8_t)rng_below(&rng, N_BRANDS);
        pr->title_seed = (uint32_t)rng_next(&rng);
        pr->offline = rng_below(&rng, 100) < 3;
        pr->created = now - rng_range(&rng, 30 * DAY, 720 * DAY);
        pr->modified = pr->created + rng_range(&rng, 0, now - pr->created);
        pr->first_sku = (uint32_t)s->n_skus;
        pr->n_skus = (uint16_t)nv;
        double u = rng_unit(&rng); /* skewed towards cheap items: 1.99 .. 299.99 */
        int32_t base = 199 + (int32_t)(u * u * u * 29800.0);

        uint8_t cs[GEN_N_COLOURS], ss[GEN_N_SIZES];
        int n_col = 0, n_size = 0;
        int scheme = nv == 1 ? -1 : (int)rng_below(&rng, 3);
        if (scheme == 2 && (nv == 4 || nv == 6)) {
            n_col = 2;
            n_size = nv / 2;
        } else if (scheme == 1) {
            n_size = nv;
        } else if (nv > 1) {
            n_col = nv;
        }
        pick_colours(&rng, n_col, cs);
        pick_sizes(&rng, n_size, ss);
        for (int v = 0; v < nv; v++) {
            int colour = n_col ? cs[n_size ? v / n_size : v] : SKU_NO_ATTR;
            int size = n_size ? ss[v % n_size] : SKU_NO_ATTR;
            int32_t price = base;
            if (size != SKU_NO_ATTR && size >= 4)
                price += (int32_t)rng_range(&rng, 100, 300);
            if (add_sku(s, p, pr->brand, colour, size, price) < 0)
                return -1;
        }
    }
    return 0;
}

/* --- stock -------------------------------------------------------------------------------- */

static int gen_stock(struct sim *s, struct warehouse *w, int64_t now)
{
    uint64_t rng = rng_stream(s->cfg.seed, rng_hash_str(w->code));
    size_t n = s->n_skus;
    w->rows = malloc((n ? n : 1) * sizeof(*w->rows));
    w->vlog_cap = n + n / 4 + 1024;
    w->vlog = malloc(w->vlog_cap * sizeof(*w->vlog));
    if (!w->rows || !w->vlog)
        return -1;
    w->version_base = 1000 * (int64_t)rng_range(&rng, 1, 900);
    w->version = w->version_base;
    for (size_t i = 0; i < n; i++) {
        struct stock_row *r = &w->rows[i];
        uint64_t roll = rng_below(&rng, 100);
        r->on_hand = roll < 15 ? 0 : rng_range(&rng, 1, 60);
        if (roll >= 15 && rng_below(&rng, 10) == 0)
            r->on_hand += rng_range(&rng, 50, 500);
        r->inbound = rng_below(&rng, 10) == 0 ? (int32_t)rng_range(&rng, 1, 100) : 0;
        r->updated_at = (uint32_t)(now - rng_range(&rng, 0, 30 * DAY));
        r->version = ++w->version;
        w->vlog[w->vlog_len++] = (uint32_t)i;
    }
    return 0;
}

static int gen_marketplace_stock(struct sim *s)
{
    size_t n = s->n_skus ? s->n_skus : 1;
    s->mp_stock = malloc(n * sizeof(*s->mp_stock));
    s->mp_ordered = calloc(n, sizeof(*s->mp_ordered));
    /* calloc'd pages stay untouched (no resident memory) until a SKU is published */
    s->pub_count = calloc(n, sizeof(*s->pub_count));
    s->pub_head = calloc(n, sizeof(*s->pub_head));
    s->pub_tail = calloc(n, sizeof(*s->pub_tail));
    if (!s->mp_stock || !s->mp_ordered || !s->pub_count || !s->pub_head || !s->pub_tail)
        return -1;
    for (size_t i = 0; i < s->n_skus; i++) {
        int64_t sum = 0;
        for (size_t w = 0; w < s->n_wh; w++)
            sum += s->wh[w].rows[i].on_hand > 0 ? s->wh[w].rows[i].on_hand : 0;
        s->mp_stock[i] = sum > MARKETPLACE_STOCK_MAX ? MARKETPLACE_STOCK_MAX : sum;
    }
    return 0;
}

/* --- orders ------------------------------------------------------------------------------- */

int gen_order_lines(const struct sim *s, uint64_t *rng, struct order_line *lines)
{
    int r = (int)rng_below(rng, 100);
    int n = r < 60 ? 1 : r < 90 ? 2 : 3;
    if ((size_t)n > s->n_skus)
        n = (int)s->n_skus;
    for (int i = 0; i < n; i++) {
        uint32_t sku;
        bool again;
        do {
            sku = (uint32_t)rng_below(rng, s->n_skus);
            again = false;
            for (int k = 0; k < i; k++)
                again = again || lines[k].sku == sku;
        } while (again);
        int q = (int)rng_below(rng, 100);
        lines[i].sku = sku;
        lines[i].qty = q < 80 ? 1 : q < 95 ? 2 : 3;
        lines[i].unit_price_cents = s->skus[sku].price_cents;
    }
    return n;
}

static int initial_status(uint64_t *rng)
{
    static const struct {
        int status, weight;
    } mix[] = {
        {OS_WAIT_SELLER_SEND_GOODS, 78},
        {OS_PLACE_ORDER_SUCCESS, 5},
        {OS_RISK_CONTROL, 5},
        {OS_IN_CANCEL, 3},
        {OS_WAIT_BUYER_ACCEPT_GOODS, 4},
        {OS_FINISH, 3},
        {OS_SELLER_PART_SEND_GOODS, 1},
        {OS_IN_ISSUE, 1},
    };
    int r = (int)rng_below(rng, 100);
    for (size_t i = 0; i < sizeof(mix) / sizeof(mix[0]); i++) {
        if (r < mix[i].weight)
            return mix[i].status;
        r -= mix[i].weight;
    }
    return OS_WAIT_SELLER_SEND_GOODS;
}

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

static int gen_orders(struct sim *s, int64_t now)
{
    size_t n = s->cfg.n_orders;
    if (n == 0 || s->n_skus == 0)
        return 0;
    int64_t *created = malloc(n * sizeof(*created));
    if (!created)
        return -1;
    uint64_t trng = rng_stream(s->cfg.seed, STREAM_ORDER_TIMES);
    for (size_t i = 0; i < n; i++)
        created[i] = now - rng_range(&trng, 60, 7 * DAY);
    qsort(created, n, sizeof(*created), cmp_i64);

    uint64_t rng = rng_stream(s->cfg.seed, STREAM_ORDERS);
    int rc = 0;
    for (size_t i = 0; i < n && rc == 0; i++) {
        int status = initial_status(&rng);
        struct order *o = order_create(s, &rng, created[i], status, NULL, 0);
        if (!o) {
            rc = -1;
            break;
        }
        if (o->paid)
            o->paid = o->created + rng_range(&rng, 30, 1800);
        if (o->paid > now)
            o->paid = now;
        o->modified = o->paid ? o->paid : o->created;
        bool shipped = status == OS_WAIT_BUYER_ACCEPT_GOODS || status == OS_FINISH ||
                       status == OS_SELLER_PART_SEND_GOODS;
        if (shipped || status == OS_IN_CANCEL || status == OS_IN_ISSUE) {
            o->modified += rng_range(&rng, 3600, 2 * DAY);
            if (o->modified > now)
                o->modified = now;
        }
        if (shipped) {
            char carrier[24], tracking[40];
            gen_tracking(s->cfg.warehouses[0], (uint64_t)o->id, carrier, tracking);
            rc = order_add_fulfilment(o, tracking,
                                      status == OS_SELLER_PART_SEND_GOODS ? "part" : "all", carrier,
                                      NULL, FUL_INITIAL, NULL, o->modified * 1000);
        }
    }
    free(created);
    return rc;
}

int gen_world(struct sim *s, char *err, size_t errlen)
{
    int64_t now = sim_now(s);
    if (gen_catalog(s, now) < 0) {
        snprintf(err, errlen, "out of memory generating %zu SKUs", s->cfg.n_skus);
        return -1;
    }
    for (size_t w = 0; w < s->n_wh; w++) {
        if (gen_stock(s, &s->wh[w], now) < 0) {
            snprintf(err, errlen, "out of memory generating stock of %s", s->wh[w].code);
            return -1;
        }
    }
    if (gen_marketplace_stock(s) < 0 || gen_orders(s, now) < 0) {
        snprintf(err, errlen, "out of memory generating orders");
        return -1;
    }
    return 0;
}
