/*
 * tally-gen: deterministic demo and test data for `tally import`.
 *
 *   tally-gen --out DIR [--skus N] [--warehouses K] [--orders M] [--seed S]
 *
 * Writes DIR/warehouses.csv, catalog.csv, stock.csv and orders.csv with the field names of the
 * import method (proto/PROTOCOL.md). The same arguments always give the same bytes: times are
 * derived from a fixed epoch, never from the clock.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static uint64_t rng;

static uint64_t next(void)
{
    uint64_t z = (rng += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static unsigned pick(unsigned n)
{
    return (unsigned)(next() % n);
}

struct wh {
    const char *code, *name, *country;
};

static const struct wh warehouses[] = {
    {"ES-MAD", "Madrid overseas warehouse", "ES"}, {"FR-PAR", "Paris overseas warehouse", "FR"},
    {"PL-WAW", "Warsaw overseas warehouse", "PL"}, {"US-LAX", "Los Angeles warehouse", "US"},
    {"DE-BER", "Berlin overseas warehouse", "DE"}, {"BR-SAO", "Sao Paulo warehouse", "BR"},
    {"RU-MOW", "Moscow overseas warehouse", "RU"}, {"NL-AMS", "Amsterdam overseas warehouse", "NL"},
};

struct product_kind {
    const char *prefix, *title;
    int price_min, price_max; /* cents */
    int weight_g;
    int sized; /* variants by size too */
};

static const struct product_kind kinds[] = {
    {"EB", "Wireless Earbuds Bluetooth 5.3", 899, 3499, 60, 0},
    {"PC", "Shockproof Phone Case", 199, 1299, 40, 0},
    {"LS", "LED Strip Lights RGB 5m", 699, 2499, 220, 0},
    {"YM", "Non-slip Yoga Mat 6mm", 1299, 3999, 900, 0},
    {"KS", "Digital Kitchen Scale 5kg", 599, 1899, 350, 0},
    {"TS", "Cotton Oversized T-Shirt", 499, 1999, 180, 1},
    {"HD", "Zip Hoodie Fleece", 1499, 4499, 520, 1},
    {"SW", "Smart Watch Fitness Tracker", 1599, 5999, 90, 0},
    {"CB", "USB-C Fast Charging Cable 2m", 149, 899, 45, 0},
    {"BP", "Waterproof Travel Backpack", 1999, 5999, 780, 0},
};

static const char *const colours[] = {"BLK", "WHT", "RED", "BLU", "GRN", "PNK"};
static const char *const colour_names[] = {"black", "white", "red", "blue", "green", "pink"};
static const char *const sizes[] = {"S", "M", "L", "XL"};

struct place {
    const char *country, *city, *postcode_fmt, *street;
};

/* Postcode formats of the city: '#' is a random digit, everything else is kept. */
static const struct place places[] = {
    {"ES", "Madrid", "280##", "Calle de Alcala"},
    {"ES", "Valencia", "460##", "Avenida del Puerto"},
    {"FR", "Lyon", "6900#", "Rue de la Republique"},
    {"FR", "Paris", "750##", "Boulevard Voltaire"},
    {"PL", "Warszawa", "00-###", "ul. Marszalkowska"},
    {"PL", "Krakow", "31-###", "ul. Dluga"},
    {"US", "Austin", "787##", "Congress Ave"},
    {"US", "Portland", "972##", "SE Division St"},
    {"BR", "Sao Paulo", "01###-###", "Rua Augusta"},
    {"NL", "Utrecht", "35## AB", "Oudegracht"},
    {"DE", "Hamburg", "20###", "Reeperbahn"},
    {"IT", "Milano", "201##", "Via Torino"},
};

static const char *const first_names[] = {"Lucia", "Pierre", "Anna", "James", "Maria", "Joao",
                                          "Sven",  "Giulia", "Jan",  "Emma",  "Pablo", "Zofia"};
static const char *const last_names[] = {"Garcia",   "Martin", "Kowalska", "Smith", "Silva",
                                         "de Vries", "Muller", "Rossi",    "Nowak", "Dubois"};

static void postcode(const char *fmt, char *out, size_t cap)
{
    size_t i = 0;
    for (; fmt[i] && i + 1 < cap; i++)
        out[i] = fmt[i] == '#' ? (char)('0' + pick(10)) : fmt[i];
    out[i] = 0;
}

static FILE *open_out(const char *dir, const char *name)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "w");
    if (!f) {
        fprintf(stderr, "tally-gen: %s: %s\n", path, strerror(errno));
        exit(1);
    }
    return f;
}

static void close_out(FILE *f)
{
    if (fclose(f) != 0) {
        fprintf(stderr, "tally-gen: write failed: %s\n", strerror(errno));
        exit(1);
    }
}

static long parse_count(const char *s, const char *what, long min, long max)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || *end || end == s || v < min || v > max) {
        fprintf(stderr, "tally-gen: %s must be a number from %ld to %ld\n", what, min, max);
        exit(2);
    }
    return v;
}

static void usage(FILE *f)
{
    fprintf(f, "Usage: tally-gen --out DIR [--skus N] [--warehouses K] [--orders M] [--seed S]\n"
               "\n"
               "Writes warehouses.csv, catalog.csv, stock.csv and orders.csv into DIR for\n"
               "`tally import`. Defaults: 300 SKUs, 4 warehouses, 40 orders, seed 1.\n"
               "The output depends only on the arguments.\n");
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {
        {"out", required_argument, NULL, 'o'},
        {"skus", required_argument, NULL, 's'},
        {"warehouses", required_argument, NULL, 'w'},
        {"orders", required_argument, NULL, 'n'},
        {"seed", required_argument, NULL, 'r'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    const char *out = NULL;
    long nskus = 300, nwh = 4, norders = 40, seed = 1;
    int opt;
    while ((opt = getopt_long(argc, argv, "o:s:w:n:r:h", opts, NULL)) != -1) {
        switch (opt) {
        case 'o':
            out = optarg;
            break;
        case 's':
            nskus = parse_count(optarg, "--skus", 1, 10000000);
            break;
        case 'w':
            nwh = parse_count(optarg, "--warehouses", 1, 8);
            break;
        case 'n':
            norders = parse_count(optarg, "--orders", 0, 10000000);
            break;
        case 'r':
            seed = parse_count(optarg, "--seed", 0, 2147483647L);
            break;
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
    }
    if (!out || optind < argc) {
        usage(stderr);
        return 2;
    }
    if (mkdir(out, 0755) != 0 && errno != EEXIST) {
        fprintf(stderr, "tally-gen: %s: %s\n", out, strerror(errno));
        return 1;
    }
    rng = (uint64_t)seed * 0x2545F4914F6CDD1Dull + 1;
    const int64_t epoch = 1795000000 + (int64_t)(seed % 1000) * 86400; /* fixed, per seed */

    FILE *f = open_out(out, "warehouses.csv");
    fprintf(f, "code,name,country,serves_marketplace\n");
    for (long i = 0; i < nwh; i++)
        fprintf(f, "%s,%s,%s,true\n", warehouses[i].code, warehouses[i].name,
                warehouses[i].country);
    close_out(f);

    /* Catalog and stock together: SKU i belongs to product i / variants. */
    FILE *cat = open_out(out, "catalog.csv"), *stk = open_out(out, "stock.csv");
    fprintf(cat, "sku,product_id,title,product_title,price_minor,currency,weight_g,attributes\n");
    fprintf(stk, "sku,warehouse,on_hand,safety,threshold\n");
    char(*codes)[40] = malloc((size_t)nskus * sizeof *codes);
    int *prices = malloc((size_t)nskus * sizeof *prices);
    if (!codes || !prices) {
        fprintf(stderr, "tally-gen: out of memory\n");
        return 1;
    }
    long made = 0;
    for (long p = 0; made < nskus; p++) {
        const struct product_kind *k = &kinds[pick(sizeof kinds / sizeof kinds[0])];
        int variants = 1 + (int)pick(k->sized ? 8 : 4);
        unsigned c0 = pick(6);
        int base = k->price_min + (int)pick((unsigned)(k->price_max - k->price_min));
        for (int v = 0; v < variants && made < nskus; v++, made++) {
            unsigned c = (c0 + (unsigned)v / (k->sized ? 4u : 1u)) % 6;
            const char *size = k->sized ? sizes[v % 4] : NULL;
            if (size)
                snprintf(codes[made], sizeof codes[made], "%s-%06ld-%s-%s", k->prefix, 1000 + p,
                         colours[c], size);
            else
                snprintf(codes[made], sizeof codes[made], "%s-%06ld-%s", k->prefix, 1000 + p,
                         colours[c]);
            prices[made] = base + (size && v % 4 == 3 ? 200 : 0);
            fprintf(cat, "%s,P%ld,%s %s%s%s,%s,%d,USD,%d,color=%s%s%s\n", codes[made], 1000 + p,
                    k->title, colour_names[c], size ? " " : "", size ? size : "", k->title,
                    prices[made], k->weight_g, colour_names[c], size ? ";size=" : "",
                    size ? size : "");
            for (long w = 0; w < nwh; w++) {
                if (pick(10) == 0)
                    continue; /* not every SKU is in every warehouse */
                unsigned r = pick(100);
                long on_hand = r < 8 ? 0 : r < 25 ? 1 + (long)pick(6) : 10 + (long)pick(240);
                fprintf(stk, "%s,%s,%ld,%u,%u\n", codes[made], warehouses[w].code, on_hand, pick(4),
                        5 + pick(16));
            }
        }
    }
    close_out(cat);
    close_out(stk);

    f = open_out(out, "orders.csv");
    fprintf(f, "order_id,status,created_at,ship_by,country,currency,sku,qty,price_minor,"
               "service,buyer_name,address,city,postcode,phone\n");
    static const char *const statuses[] = {"WAIT_SELLER_SEND_GOODS",
                                           "WAIT_SELLER_SEND_GOODS",
                                           "WAIT_SELLER_SEND_GOODS",
                                           "WAIT_SELLER_SEND_GOODS",
                                           "PLACE_ORDER_SUCCESS",
                                           "WAIT_BUYER_ACCEPT_GOODS",
                                           "FINISH"};
    static const char *const services[] = {"CAINIAO_STANDARD", "AliExpress Selection Standard",
                                           "CAINIAO_PREMIUM", "DHL"};
    for (long o = 0; o < norders; o++) {
        const struct place *pl = &places[pick(sizeof places / sizeof places[0])];
        const char *status = statuses[pick(sizeof statuses / sizeof statuses[0])];
        int64_t created = epoch - 3 * 86400 + (int64_t)pick(3 * 86400);
        int64_t ship_by = created + (3 + (int64_t)pick(5)) * 86400;
        char pc[16];
        postcode(pl->postcode_fmt, pc, sizeof pc);
        /* Everything about the order is drawn once; each line repeats it. */
        const char *service = services[pick(sizeof services / sizeof services[0])];
        const char *first_name = first_names[pick(sizeof first_names / sizeof first_names[0])];
        const char *last_name = last_names[pick(sizeof last_names / sizeof last_names[0])];
        unsigned number = 1 + pick(180), phone_cc = 30 + pick(20), phone = pick(1000000000);
        int lines = 1 + (int)pick(3);
        long first = (long)pick((unsigned)nskus);
        for (int l = 0; l < lines; l++) {
            long s = (first + l * 7) % nskus;
            if (l > 0 && s == first)
                break;
            fprintf(f,
                    "%" PRId64 ",%s,%" PRId64 ",%" PRId64 ",%s,USD,%s,%u,%d,%s,%s %s,"
                    "\"%u %s\",%s,%s,+%u%09u\n",
                    (int64_t)8100000000000000LL + seed * 100000 + o, status, created, ship_by,
                    pl->country, codes[s], 1 + pick(3), prices[s], service, first_name, last_name,
                    number, pl->street, pl->city, pc, phone_cc, phone);
        }
    }
    close_out(f);
    free(codes);
    free(prices);
    return 0;
}
