/*
 * tally-gen: deterministic demo and test data for `tally import`.
 *
 *   tally-gen --out DIR [--skus N] [--warehouses K] [--orders M] [--seed S]
 *
 * Writes DIR/warehouses.csv, catalog.csv, stock.csv and orders.csv (created with DIR if
 * missing). Each file's header row names the fields of its kind in the import method
 * (proto/PROTOCOL.md), so `tally import KIND DIR/KIND.csv` reads it as it is; import them in
 * that order, since stock and orders name SKUs and warehouses. CSV per RFC 4180: a field holding
 * a comma, a quote or a line break is quoted, quotes doubled; records end with LF.
 *
 * Determinism: the bytes depend only on the arguments. Times come from an epoch derived from the
 * seed, never from the clock. Each file draws from its own random stream and each SKU's stock
 * from a stream of its own, so changing --orders leaves catalog.csv and stock.csv unchanged,
 * more --warehouses only adds stock rows, and more --skus only extends the catalog.
 *
 * What the data looks like:
 * - products P1001, P1002... of ~40 kinds sold cross-border (phone cases, LED strips, earbuds,
 *   yoga mats, kitchen scales...), each in 1-3 colours x 2-4 consecutive sizes, models,
 *   lengths... (2-5 colours where colour is the only axis): about four SKUs a product. SKU codes
 * like EB-1001-BLK-ANC, attributes like color=black;size=M. Prices in US cents ending in 99; 92% of
 * SKUs carry a marketplace SKU id.
 * - warehouses ES-MAD, FR-PAR, PL-WAW, US-LAX, then DE-BER, BR-SAO, RU-MOW, NL-AMS. RU-MOW
 *   supplies a separate storefront and does not serve the marketplace.
 * - stock: the first warehouse lists every SKU, the others 93% of them. Safety stock 0-3,
 *   threshold 5-20; 6% of rows are at zero and 14% more at or below their threshold, so
 *   `tally stock list --low` has rows.
 * - orders: spread evenly over the 3 days before the epoch, oldest first; ship_by 3-7 days
 *   after creation; 1-3 lines of distinct SKUs; mostly WAIT_SELLER_SEND_GOODS; buyers in
 *   ES FR PL US BR NL DE IT with local names, addresses, postcodes and phone numbers; USD.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define MAX_SKUS 10000000u
#define MAX_WAREHOUSES 8u
#define MAX_ORDERS 10000000u
#define DAY 86400

#define EXIT_IO 1
#define EXIT_USAGE 2

#define countof(a) (sizeof(a) / sizeof((a)[0]))

/* ------------------------------------------------------------------------------------------ */
/* Random numbers: splitmix64, one independent stream per purpose                             */

struct rng {
    uint64_t s;
};

static uint64_t mix64(uint64_t z)
{
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static uint64_t rng_next(struct rng *r)
{
    return mix64(r->s += 0x9E3779B97F4A7C15ull);
}

/* A value in [0, n), n > 0. The modulo bias is below 2^-40 for the small n used here. */
static uint32_t rng_below(struct rng *r, uint32_t n)
{
    return (uint32_t)(rng_next(r) % n);
}

static uint32_t rng_range(struct rng *r, uint32_t lo, uint32_t hi)
{
    return lo + rng_below(r, hi - lo + 1);
}

enum stream { STREAM_EPOCH = 1, STREAM_CATALOG, STREAM_STOCK, STREAM_ORDERS };

/* Stream `index` of kind `stream` for this seed; streams do not overlap in practice. */
static struct rng rng_stream(uint64_t seed, enum stream stream, uint64_t index)
{
    struct rng r = {mix64(mix64(seed ^ ((uint64_t)stream << 56)) + index)};
    return r;
}

/* ------------------------------------------------------------------------------------------ */
/* Products                                                                                   */

enum colour {
    C_END, /* ends a kind's colour list */
    C_BLK,
    C_WHT,
    C_GRY,
    C_RED,
    C_BLU,
    C_NVY,
    C_GRN,
    C_PNK,
    C_PUR,
    C_BEI,
    C_BRN,
    C_CLR,
    C_GLD,
    C_SLV,
    C_RGD,
    C_RGB,
    C_WWH,
    C_CWH,
    C_MIX,
    NCOLOURS
};

static const struct {
    const char *code, *name, *title;
} colours[NCOLOURS] = {
    [C_BLK] = {"BLK", "black", "Black"},
    [C_WHT] = {"WHT", "white", "White"},
    [C_GRY] = {"GRY", "grey", "Grey"},
    [C_RED] = {"RED", "red", "Red"},
    [C_BLU] = {"BLU", "blue", "Blue"},
    [C_NVY] = {"NVY", "navy", "Navy"},
    [C_GRN] = {"GRN", "green", "Green"},
    [C_PNK] = {"PNK", "pink", "Pink"},
    [C_PUR] = {"PUR", "purple", "Purple"},
    [C_BEI] = {"BEI", "beige", "Beige"},
    [C_BRN] = {"BRN", "brown", "Brown"},
    [C_CLR] = {"CLR", "clear", "Clear"},
    [C_GLD] = {"GLD", "gold", "Gold"},
    [C_SLV] = {"SLV", "silver", "Silver"},
    [C_RGD] = {"RGD", "rose gold", "Rose Gold"},
    [C_RGB] = {"RGB", "RGB", "RGB"},
    [C_WWH] = {"WWH", "warm white", "Warm White"},
    [C_CWH] = {"CWH", "cool white", "Cool White"},
    [C_MIX] = {"MIX", "mixed", "Mixed Colours"},
};

/* One value of a kind's second axis: the code in the SKU, the text in titles and attributes. */
struct variant {
    const char *code, *label;
};

#define VARIANTS(name, ...) static const struct variant name[] = {__VA_ARGS__, {NULL, NULL}}

VARIANTS(apparel_sizes, {"XS", "XS"}, {"S", "S"}, {"M", "M"}, {"L", "L"}, {"XL", "XL"},
         {"XXL", "XXL"});
VARIANTS(shoe_sizes, {"39", "EU 39"}, {"40", "EU 40"}, {"41", "EU 41"}, {"42", "EU 42"},
         {"43", "EU 43"}, {"44", "EU 44"}, {"45", "EU 45"});
VARIANTS(phone_models, {"IP15", "iPhone 15"}, {"IP15P", "iPhone 15 Pro"},
         {"IP15PM", "iPhone 15 Pro Max"}, {"IP16", "iPhone 16"}, {"IP16P", "iPhone 16 Pro"},
         {"S24", "Galaxy S24"}, {"S24U", "Galaxy S24 Ultra"}, {"RN13", "Redmi Note 13"});
VARIANTS(strip_lengths, {"5M", "5 m"}, {"10M", "10 m"}, {"15M", "15 m"}, {"20M", "20 m"},
         {"30M", "30 m"});
VARIANTS(cable_lengths, {"1M", "1 m"}, {"2M", "2 m"}, {"3M", "3 m"});
VARIANTS(plugs, {"EU", "EU plug"}, {"UK", "UK plug"}, {"US", "US plug"}, {"AU", "AU plug"});
VARIANTS(scale_capacities, {"3KG", "3 kg"}, {"5KG", "5 kg"}, {"10KG", "10 kg"});
VARIANTS(battery_capacities, {"10K", "10000 mAh"}, {"20K", "20000 mAh"}, {"30K", "30000 mAh"});
VARIANTS(bottle_sizes, {"500ML", "500 ml"}, {"750ML", "750 ml"}, {"1L", "1 l"});
VARIANTS(mat_thicknesses, {"6MM", "6 mm"}, {"8MM", "8 mm"}, {"10MM", "10 mm"});
VARIANTS(earbud_editions, {"STD", "Standard"}, {"ANC", "ANC"}, {"PRO", "Pro ANC"});
VARIANTS(key_switches, {"RED", "red switch"}, {"BRN", "brown switch"}, {"BLU", "blue switch"});
VARIANTS(watch_straps, {"SIL", "silicone"}, {"MSH", "mesh"}, {"LTH", "leather"});
VARIANTS(dashcam_cards, {"NOSD", "no card"}, {"64G", "64 GB card"}, {"128G", "128 GB card"});
VARIANTS(box_sizes, {"S", "S"}, {"M", "M"}, {"L", "L"});
VARIANTS(liner_sizes, {"16CM", "16 cm"}, {"20CM", "20 cm"}, {"23CM", "23 cm"});

#define MAX_KIND_COLOURS 8

struct product_kind {
    const char *prefix; /* of the SKU codes */
    const char *title;
    const char *axis;               /* attribute name of the second axis; NULL: colours only */
    const struct variant *variants; /* the axis' values in order; a product takes a run of them */
    bool priced;                    /* later values cost and weigh more (longer, bigger) */
    enum colour colours[MAX_KIND_COLOURS];
    uint32_t dollars_lo, dollars_hi; /* base price range; prices end in .99 */
    uint32_t grams_lo, grams_hi;
};

/* KIND(prefix, title, axis, variants, priced, dollars lo-hi, grams lo-hi, colours...) */
#define KIND(p, t, axis, v, priced, lo, hi, glo, ghi, ...)                                         \
    {                                                                                              \
        p, t, axis, v, priced, {__VA_ARGS__}, lo, hi, glo, ghi                                     \
    }

static const struct product_kind kinds[] = {
    KIND("EB", "Wireless Earbuds Bluetooth 5.3 with Charging Case, 40H Playtime", "edition",
         earbud_editions, true, 9, 35, 45, 70, C_BLK, C_WHT, C_BLU, C_PNK),
    KIND("PC", "Shockproof Clear Phone Case with Camera Protection", "model", phone_models, false,
         2, 9, 25, 45, C_CLR, C_BLK, C_PNK, C_BLU, C_PUR),
    KIND("GP", "Tempered Glass Screen Protector, 3 Pack", "model", phone_models, false, 2, 6, 20,
         40, C_CLR),
    KIND("LS", "RGB LED Strip Lights with Bluetooth App Control and 24-Key Remote", "length",
         strip_lengths, true, 7, 25, 150, 300, C_RGB, C_WWH, C_CWH),
    KIND("YM", "Non-Slip TPE Yoga Mat 183 x 61 cm with Carry Strap", "thickness", mat_thicknesses,
         true, 13, 38, 700, 1300, C_PUR, C_BLU, C_PNK, C_GRN, C_GRY, C_BLK),
    KIND("KS", "Digital Kitchen Scale 0.1 g Precision, Stainless Steel Platform", "capacity",
         scale_capacities, true, 6, 19, 300, 600, C_BLK, C_WHT, C_SLV),
    KIND("SW", "Smart Watch 1.85\" AMOLED, Heart Rate, SpO2, IP68 Waterproof", "strap",
         watch_straps, true, 16, 60, 50, 90, C_BLK, C_SLV, C_GLD, C_RGD, C_PNK),
    KIND("TS", "Men's Oversized Cotton T-Shirt, Summer Casual Short Sleeve", "size", apparel_sizes,
         false, 5, 20, 160, 240, C_BLK, C_WHT, C_GRY, C_NVY, C_BEI, C_GRN),
    KIND("HD", "Women's Fleece Hoodie with Kangaroo Pocket", "size", apparel_sizes, false, 15, 45,
         450, 650, C_BLK, C_GRY, C_PNK, C_BEI, C_PUR),
    KIND("LG", "High Waist Yoga Leggings with Pockets, Squat Proof", "size", apparel_sizes, false,
         8, 25, 180, 260, C_BLK, C_NVY, C_GRY, C_PUR, C_BRN),
    KIND("DR", "Women's Floral Midi Dress, V-Neck, Short Sleeve", "size", apparel_sizes, false, 12,
         35, 200, 320, C_RED, C_BLU, C_GRN, C_BEI, C_BLK),
    KIND("SN", "Men's Breathable Running Shoes, Lightweight Sneakers", "size", shoe_sizes, false,
         18, 55, 550, 800, C_BLK, C_WHT, C_GRY, C_BLU),
    KIND("CB", "USB C to USB C Cable 100W PD Fast Charging, Nylon Braided", "length", cable_lengths,
         true, 2, 9, 30, 70, C_BLK, C_WHT, C_GRY),
    KIND("PB", "Power Bank 22.5W Fast Charging with LED Display", "capacity", battery_capacities,
         true, 12, 40, 200, 450, C_BLK, C_WHT, C_BLU),
    KIND("CH", "65W GaN USB C Charger, 3 Ports, Foldable Plug", "plug", plugs, false, 13, 35, 100,
         150, C_BLK, C_WHT),
    KIND("BP", "Waterproof 15.6\" Laptop Backpack with USB Charging Port", NULL, NULL, false, 20,
         60, 700, 1100, C_BLK, C_GRY, C_NVY, C_BLU),
    KIND("SG", "Polarized Sunglasses UV400, Retro Square Frame", NULL, NULL, false, 4, 15, 25, 40,
         C_BLK, C_BRN, C_GLD, C_SLV),
    KIND("WB", "Insulated Stainless Steel Water Bottle, Leak-Proof Lid", "capacity", bottle_sizes,
         true, 8, 22, 280, 480, C_BLK, C_WHT, C_BLU, C_PNK, C_GRN),
    KIND("RB", "Resistance Bands Set with Handles, Door Anchor and Carry Bag", NULL, NULL, false, 9,
         25, 500, 900, C_MIX, C_BLK),
    KIND("CM", "Magnetic Car Phone Holder, 360° Rotation, Air Vent Mount", NULL, NULL, false, 4, 14,
         60, 120, C_BLK, C_SLV),
    KIND("DC", "Dash Cam 4K Front and Rear with WiFi and Night Vision", "storage", dashcam_cards,
         true, 30, 90, 150, 300, C_BLK),
    KIND("HC", "Cordless Hair Clipper for Men, USB Rechargeable", NULL, NULL, false, 11, 35, 250,
         400, C_BLK, C_GLD, C_SLV),
    KIND("KB", "Mechanical Gaming Keyboard 87 Keys, Hot-Swappable, RGB Backlit", "switch",
         key_switches, false, 25, 70, 700, 1000, C_BLK, C_WHT, C_PNK),
    KIND("MS", "Wireless Mouse 2.4G + Bluetooth, Silent Click, Rechargeable", NULL, NULL, false, 6,
         18, 60, 100, C_BLK, C_WHT, C_PNK, C_GRY),
    KIND("BS", "Portable Bluetooth Speaker IPX7 Waterproof, 20W Stereo", NULL, NULL, false, 15, 45,
         400, 700, C_BLK, C_BLU, C_RED, C_GRN),
    KIND("SB", "Foldable Fabric Storage Box with Lid, Set of 3", "size", box_sizes, true, 9, 25,
         600, 1200, C_GRY, C_BEI, C_NVY),
    KIND("DL", "LED Desk Lamp with Wireless Charger, Dimmable, Eye-Caring", "plug", plugs, false,
         18, 45, 800, 1200, C_BLK, C_WHT),
    KIND("AL", "Reusable Silicone Air Fryer Liner", "size", liner_sizes, true, 3, 10, 90, 200,
         C_RED, C_BLK, C_GRY),
    KIND("GC", "Wireless Game Controller for Switch / PC / Android", NULL, NULL, false, 14, 35, 200,
         280, C_BLK, C_WHT, C_BLU, C_RED),
    KIND("TA", "Universal Travel Adapter with 4 USB Ports and USB C", NULL, NULL, false, 12, 28,
         150, 250, C_BLK, C_WHT),
    KIND("WL", "Men's RFID Blocking Slim Leather Wallet", NULL, NULL, false, 6, 20, 60, 120, C_BLK,
         C_BRN, C_NVY),
    KIND("SP", "WiFi Smart Plug with Energy Monitor, Works with Alexa and Google Home", "plug",
         plugs, false, 6, 15, 80, 120, C_WHT),
    KIND("DH", "No-Pull Dog Harness, Reflective, Adjustable", "size", apparel_sizes, false, 7, 22,
         120, 300, C_BLK, C_RED, C_BLU, C_PNK, C_GRN),
    KIND("CL", "Rechargeable LED Camping Lantern, 3 Light Modes, 1000 lm", NULL, NULL, false, 9, 25,
         250, 450, C_BLK, C_GRN),
    KIND("TP", "Selfie Stick Tripod with Bluetooth Remote, 1.5 m", NULL, NULL, false, 8, 24, 200,
         350, C_BLK, C_WHT),
    KIND("ET", "Sonic Electric Toothbrush with 8 Brush Heads", NULL, NULL, false, 12, 35, 200, 400,
         C_BLK, C_WHT, C_PNK, C_BLU),
    KIND("HS", "Ceramic Hair Straightener, Fast Heating, 2-in-1 Curler", "plug", plugs, false, 12,
         35, 300, 500, C_BLK, C_PNK, C_PUR),
};

/* Words a seller puts in front of a title; most titles have none. */
static const char *const title_leads[] = {"",     "",          "",          "",
                                          "New ", "Upgraded ", "Hot Sale ", "Premium "};

#define FIRST_PRODUCT 1001u

/*
 * What later files need of a SKU, kept for all SKUs (12 bytes each): the code is rebuilt from
 * it rather than stored.
 */
struct sku {
    uint32_t product; /* 0-based; the product id is P(FIRST_PRODUCT + product) */
    uint32_t price_minor;
    uint8_t kind, colour, variant;
};

static size_t count_variants(const struct variant *v)
{
    size_t n = 0;
    while (v && v[n].code)
        n++;
    return n;
}

static size_t count_colours(const struct product_kind *k)
{
    size_t n = 0;
    while (n < MAX_KIND_COLOURS && k->colours[n] != C_END)
        n++;
    return n;
}

static void sku_code(const struct sku *s, char *buf, size_t cap)
{
    const struct product_kind *k = &kinds[s->kind];
    unsigned product = FIRST_PRODUCT + s->product;
    if (k->axis)
        snprintf(buf, cap, "%s-%u-%s-%s", k->prefix, product, colours[s->colour].code,
                 k->variants[s->variant].code);
    else
        snprintf(buf, cap, "%s-%u-%s", k->prefix, product, colours[s->colour].code);
}

/* ------------------------------------------------------------------------------------------ */
/* Warehouses                                                                                 */

static const struct {
    const char *code, *name, *country;
    bool serves_marketplace;
} warehouses[MAX_WAREHOUSES] = {
    {"ES-MAD", "Madrid", "ES", true},  {"FR-PAR", "Paris", "FR", true},
    {"PL-WAW", "Warsaw", "PL", true},  {"US-LAX", "Los Angeles", "US", true},
    {"DE-BER", "Berlin", "DE", true},  {"BR-SAO", "São Paulo", "BR", true},
    {"RU-MOW", "Moscow", "RU", false}, {"NL-AMS", "Amsterdam", "NL", true},
};

/* ------------------------------------------------------------------------------------------ */
/* Buyers                                                                                     */

enum country_style { ES, FR, PL, US, BR, NL, DE, IT };

struct city {
    const char *name;
    const char *area;                  /* phone area code, where the number format has one */
    uint32_t postcode_lo, postcode_hi; /* as a number; formatted per country */
};

struct country {
    const char *code;
    uint32_t weight; /* share of orders, out of 100 */
    enum country_style style;
    const char *first[8], *last[8], *street[6];
    struct city city[4]; /* the first is the largest: 40, 25, 20, 15 % of the country's orders */
};

static const struct country countries[] = {
    {"ES",
     22,
     ES,
     {"Lucía", "Hugo", "Martina", "Mateo", "Sofía", "Pablo", "Carmen", "Javier"},
     {"García", "Fernández", "López", "Martínez", "Sánchez", "Pérez", "Gómez", "Ruiz"},
     {"Calle Mayor", "Calle de Alcalá", "Gran Vía", "Calle de Serrano", "Avenida de América",
      "Paseo de la Castellana"},
     {{"Madrid", NULL, 28001, 28055},
      {"Barcelona", NULL, 8001, 8042},
      {"Valencia", NULL, 46001, 46026},
      {"Sevilla", NULL, 41001, 41020}}},
    {"FR",
     18,
     FR,
     {"Camille", "Louis", "Léa", "Gabriel", "Manon", "Hugo", "Chloé", "Théo"},
     {"Martin", "Bernard", "Dubois", "Thomas", "Robert", "Richard", "Petit", "Durand"},
     {"rue de la République", "avenue Jean Jaurès", "boulevard Voltaire", "rue Victor Hugo",
      "rue du Faubourg Saint-Antoine", "place de la Mairie"},
     {{"Paris", NULL, 75001, 75020},
      {"Lyon", NULL, 69001, 69009},
      {"Marseille", NULL, 13001, 13016},
      {"Lille", NULL, 59000, 59800}}},
    {"PL",
     16,
     PL,
     {"Zuzanna", "Jakub", "Julia", "Antoni", "Maja", "Szymon", "Zofia", "Łukasz"},
     {"Nowak", "Wójcik", "Kowalczyk", "Mazur", "Krawczyk", "Kaczmarek", "Zając", "Król"},
     {"Marszałkowska", "Długa", "Mickiewicza", "Słowackiego", "Kościuszki", "Polna"},
     {{"Warszawa", NULL, 1, 4999},
      {"Kraków", NULL, 30001, 31999},
      {"Wrocław", NULL, 50001, 54999},
      {"Gdańsk", NULL, 80001, 80999}}},
    {"US",
     16,
     US,
     {"James", "Olivia", "Michael", "Emma", "David", "Ava", "Daniel", "Sophia"},
     {"Smith", "Johnson", "Williams", "Brown", "Jones", "Miller", "Davis", "Garcia"},
     {"Maple Ave", "Oak St", "Sunset Blvd", "Main St", "Elm St", "Washington Ave"},
     {{"Los Angeles, CA", "213", 90001, 90089},
      {"New York, NY", "212", 10001, 10282},
      {"Houston, TX", "713", 77001, 77099},
      {"Chicago, IL", "312", 60601, 60661}}},
    {"BR",
     10,
     BR,
     {"Miguel", "Helena", "Arthur", "Alice", "Gael", "Laura", "Heitor", "Valentina"},
     {"Silva", "Santos", "Oliveira", "Souza", "Rodrigues", "Ferreira", "Alves", "Pereira"},
     {"Rua Augusta", "Avenida Paulista", "Rua das Flores", "Rua XV de Novembro", "Avenida Brasil",
      "Rua da Consolação"},
     {{"São Paulo", "11", 1000000, 5999999},
      {"Rio de Janeiro", "21", 20000000, 23799999},
      {"Belo Horizonte", "31", 30000000, 31999999},
      {"Curitiba", "41", 80000000, 82999999}}},
    {"NL",
     7,
     NL,
     {"Noah", "Emma", "Sem", "Julia", "Liam", "Mila", "Lucas", "Tess"},
     {"de Jong", "Jansen", "de Vries", "van den Berg", "van Dijk", "Bakker", "Visser", "Smit"},
     {"Keizersgracht", "Prinsengracht", "Damrak", "Coolsingel", "Oudegracht", "Lange Voorhout"},
     {{"Amsterdam", NULL, 1011, 1109},
      {"Rotterdam", NULL, 3011, 3089},
      {"Utrecht", NULL, 3511, 3585},
      {"Den Haag", NULL, 2491, 2597}}},
    {"DE",
     7,
     DE,
     {"Mia", "Noah", "Emilia", "Leon", "Hannah", "Paul", "Lena", "Felix"},
     {"Müller", "Schmidt", "Schneider", "Fischer", "Weber", "Meyer", "Wagner", "Becker"},
     {"Hauptstraße", "Bahnhofstraße", "Schillerstraße", "Gartenstraße", "Friedrichstraße",
      "Goethestraße"},
     {{"Berlin", NULL, 10115, 14199},
      {"Hamburg", NULL, 20095, 22769},
      {"München", NULL, 80331, 81929},
      {"Köln", NULL, 50667, 51149}}},
    {"IT",
     4,
     IT,
     {"Sofia", "Leonardo", "Giulia", "Francesco", "Aurora", "Alessandro", "Ginevra", "Lorenzo"},
     {"Rossi", "Russo", "Ferrari", "Esposito", "Bianchi", "Romano", "Colombo", "Ricci"},
     {"Via Roma", "Via Garibaldi", "Corso Vittorio Emanuele II", "Via Dante", "Via Mazzini",
      "Via Torino"},
     {{"Roma", NULL, 118, 199},
      {"Milano", NULL, 20121, 20162},
      {"Napoli", NULL, 80121, 80147},
      {"Torino", NULL, 10121, 10156}}},
};

struct buyer {
    const struct country *country;
    char name[128], address[160], city[64], postcode[16], phone[32];
};

static const struct country *pick_country(struct rng *r)
{
    uint32_t x = rng_below(r, 100);
    for (size_t i = 0; i < countof(countries); i++) {
        if (x < countries[i].weight)
            return &countries[i];
        x -= countries[i].weight;
    }
    return &countries[0];
}

static const struct city *pick_city(struct rng *r, const struct country *c)
{
    uint32_t x = rng_below(r, 100);
    return &c->city[x < 40 ? 0 : x < 65 ? 1 : x < 85 ? 2 : 3];
}

static void buyer_name(struct rng *r, struct buyer *b)
{
    const struct country *c = b->country;
    const char *first = c->first[rng_below(r, 8)], *last = c->last[rng_below(r, 8)];
    const char *second = c->last[rng_below(r, 8)];
    bool two_surnames = c->style == ES || (c->style == BR && rng_below(r, 2));
    if (two_surnames && second != last)
        snprintf(b->name, sizeof b->name, "%s %s %s", first, last, second);
    else
        snprintf(b->name, sizeof b->name, "%s %s", first, last);
}

static void buyer_address(struct rng *r, struct buyer *b)
{
    const char *street = b->country->street[rng_below(r, 6)];
    uint32_t n = rng_range(r, 1, 180), flat = rng_range(r, 1, 40), floor = rng_range(r, 1, 9);
    bool has_flat = rng_below(r, 100) < 40;
    char *a = b->address;
    size_t cap = sizeof b->address;
    switch (b->country->style) {
    case ES:
        snprintf(a, cap, "%s %u, %uº %c", street, n, floor, "ABCD"[flat % 4]);
        break;
    case FR:
        snprintf(a, cap, "%u %s", n, street);
        break;
    case PL:
        if (has_flat)
            snprintf(a, cap, "ul. %s %u/%u", street, n, flat);
        else
            snprintf(a, cap, "ul. %s %u", street, n);
        break;
    case US:
        if (has_flat)
            snprintf(a, cap, "%u %s, Apt %u", 100 + n * 37, street, flat);
        else
            snprintf(a, cap, "%u %s", 100 + n * 37, street);
        break;
    case BR:
        if (has_flat)
            snprintf(a, cap, "%s, %u - Apto %u%02u", street, n * 7, floor, flat);
        else
            snprintf(a, cap, "%s, %u", street, n * 7);
        break;
    case NL:
        if (has_flat)
            snprintf(a, cap, "%s %u-%u", street, n, floor);
        else
            snprintf(a, cap, "%s %u", street, n);
        break;
    case DE:
        snprintf(a, cap, "%s %u", street, n);
        break;
    case IT:
        snprintf(a, cap, "%s, %u", street, n);
        break;
    }
}

static void buyer_postcode(struct rng *r, struct buyer *b, const struct city *city)
{
    uint32_t n = rng_range(r, city->postcode_lo, city->postcode_hi);
    char *p = b->postcode;
    size_t cap = sizeof b->postcode;
    switch (b->country->style) {
    case PL:
        snprintf(p, cap, "%02u-%03u", n / 1000, n % 1000);
        break;
    case BR:
        snprintf(p, cap, "%05u-%03u", n / 1000, n % 1000);
        break;
    case NL: {
        static const char letters[] = "ABCEGHJKLMNPRTVWXZ"; /* the letters Dutch postcodes use */
        /* Two statements: the order in which function arguments are evaluated is unspecified,
         * and the same seed must give the same bytes with every compiler. */
        char first = letters[rng_below(r, sizeof letters - 1)];
        char second = letters[rng_below(r, sizeof letters - 1)];
        snprintf(p, cap, "%04u %c%c", n, first, second);
        break;
    }
    default:
        snprintf(p, cap, "%05u", n);
        break;
    }
}

static void buyer_phone(struct rng *r, struct buyer *b, const struct city *city)
{
    uint32_t a = rng_below(r, 100), m = rng_below(r, 1000), n = rng_below(r, 10000);
    char *p = b->phone;
    size_t cap = sizeof b->phone;
    switch (b->country->style) {
    case ES:
        snprintf(p, cap, "+34 6%02u %03u %03u", a, m, n % 1000);
        break;
    case FR:
        snprintf(p, cap, "+33 6 %02u %02u %02u %02u", a, m % 100, n / 100, n % 100);
        break;
    case PL:
        snprintf(p, cap, "+48 %u%02u %03u %03u", 5 + a % 4, a, m, n % 1000);
        break;
    case US: /* 555-0100 to 555-0199 are reserved for fiction */
        snprintf(p, cap, "+1 %s 555 01%02u", city->area, a);
        break;
    case BR:
        snprintf(p, cap, "+55 %s 9%04u-%04u", city->area, m * 10 + a % 10, n);
        break;
    case NL:
        snprintf(p, cap, "+31 6 %04u%04u", m * 10 + a % 10, n);
        break;
    case DE:
        snprintf(p, cap, "+49 15%u %04u%04u", 1 + a % 9, m * 10 + a / 10, n);
        break;
    case IT:
        snprintf(p, cap, "+39 3%02u %03u %04u", a, m, n);
        break;
    }
}

static void make_buyer(struct rng *r, struct buyer *b)
{
    b->country = pick_country(r);
    const struct city *city = pick_city(r, b->country);
    snprintf(b->city, sizeof b->city, "%s", city->name);
    buyer_name(r, b);
    buyer_address(r, b);
    buyer_postcode(r, b, city);
    buyer_phone(r, b, city);
}

/* ------------------------------------------------------------------------------------------ */
/* CSV output: a file written through its own buffer, renamed into place when complete        */

struct out {
    FILE *f;
    char path[4096], tmp[4096];
    int err; /* errno of the first failure, 0 while all is well */
    bool in_row;
    size_t n;
    char buf[1 << 16];
};

static void out_flush(struct out *o)
{
    if (o->n && !o->err && fwrite(o->buf, 1, o->n, o->f) != o->n)
        o->err = errno ? errno : EIO;
    o->n = 0;
}

static void out_bytes(struct out *o, const char *s, size_t n)
{
    if (n > sizeof o->buf - o->n)
        out_flush(o);
    if (n > sizeof o->buf) {
        if (!o->err && fwrite(s, 1, n, o->f) != n)
            o->err = errno ? errno : EIO;
        return;
    }
    memcpy(o->buf + o->n, s, n);
    o->n += n;
}

static void out_sep(struct out *o)
{
    if (o->in_row)
        out_bytes(o, ",", 1);
    o->in_row = true;
}

/* A text cell, quoted per RFC 4180 when it holds a comma, a quote or a line break. */
static void out_str(struct out *o, const char *s)
{
    out_sep(o);
    size_t n = strlen(s);
    if (strcspn(s, ",\"\r\n") == n) {
        out_bytes(o, s, n);
        return;
    }
    out_bytes(o, "\"", 1);
    for (const char *q; (q = strchr(s, '"')) != NULL; s = q + 1) {
        out_bytes(o, s, (size_t)(q - s) + 1);
        out_bytes(o, "\"", 1);
    }
    out_bytes(o, s, strlen(s));
    out_bytes(o, "\"", 1);
}

static void out_u64(struct out *o, uint64_t v)
{
    char tmp[24], *p = tmp + sizeof tmp;
    do
        *--p = (char)('0' + v % 10);
    while ((v /= 10) != 0);
    out_sep(o);
    out_bytes(o, p, (size_t)(tmp + sizeof tmp - p));
}

static void out_bool(struct out *o, bool v)
{
    out_str(o, v ? "true" : "false");
}

static void out_end_row(struct out *o)
{
    out_bytes(o, "\n", 1);
    o->in_row = false;
}

/* The header row: the column names, given as one comma-separated string. */
static void out_header(struct out *o, const char *columns)
{
    out_bytes(o, columns, strlen(columns));
    out_end_row(o);
}

/* Opens DIR/.NAME.tmp; out_close renames it to DIR/NAME, so a failed run leaves no half file. */
static int out_open(struct out *o, const char *dir, const char *name)
{
    o->err = 0;
    o->n = 0;
    o->in_row = false;
    if ((size_t)snprintf(o->path, sizeof o->path, "%s/%s", dir, name) >= sizeof o->path ||
        (size_t)snprintf(o->tmp, sizeof o->tmp, "%s/.%s.tmp", dir, name) >= sizeof o->tmp) {
        o->err = ENAMETOOLONG;
        return -1;
    }
    o->f = fopen(o->tmp, "w");
    if (!o->f) {
        o->err = errno;
        return -1;
    }
    return 0;
}

static int out_close(struct out *o)
{
    out_flush(o);
    if (fclose(o->f) != 0 && !o->err)
        o->err = errno;
    o->f = NULL;
    if (!o->err && rename(o->tmp, o->path) != 0)
        o->err = errno;
    if (o->err)
        unlink(o->tmp);
    return o->err ? -1 : 0;
}

/* ------------------------------------------------------------------------------------------ */
/* The four files                                                                             */

struct gen {
    const char *dir;
    uint64_t seed;
    uint32_t nskus, nwarehouses, norders;
    int64_t epoch;
    struct sku *skus; /* nskus, filled by write_catalog */
    uint32_t nproducts;
    uint64_t stock_rows, stock_zero, stock_low, order_lines;
    struct out out;
};

/* A fixed "now" per seed: a minute in October 2026, so every seed gives a different day. */
static int64_t epoch_for_seed(uint64_t seed)
{
    struct rng r = rng_stream(seed, STREAM_EPOCH, 0);
    const int64_t oct_2026 = 1790812800; /* 2026-10-01T00:00:00Z */
    return oct_2026 + (int64_t)rng_below(&r, 31 * 24 * 60) * 60;
}

static void write_warehouses(struct gen *g)
{
    struct out *o = &g->out;
    out_header(o, "code,name,country,serves_marketplace");
    for (uint32_t i = 0; i < g->nwarehouses; i++) {
        out_str(o, warehouses[i].code);
        out_str(o, warehouses[i].name);
        out_str(o, warehouses[i].country);
        out_bool(o, warehouses[i].serves_marketplace);
        out_end_row(o);
    }
}

/* One product's colours: 1-3 (2-5 when colour is the only axis) distinct ones of the kind's,
 * in the kind's order. */
static size_t pick_colours(struct rng *r, const struct product_kind *k, uint8_t *out)
{
    size_t avail = count_colours(k), max = k->axis ? 3 : 5, min = k->axis ? 1 : 2;
    if (max > avail)
        max = avail;
    if (min > max)
        min = max;
    size_t n = rng_range(r, (uint32_t)min, (uint32_t)max);
    bool taken[MAX_KIND_COLOURS] = {false};
    for (size_t i = 0; i < n; i++) {
        size_t j = rng_below(r, (uint32_t)(avail - i));
        size_t c = 0;
        while (taken[c] || j > 0) { /* to the j-th colour not taken yet */
            if (!taken[c])
                j--;
            c++;
        }
        taken[c] = true;
    }
    size_t m = 0;
    for (size_t c = 0; c < avail; c++)
        if (taken[c])
            out[m++] = (uint8_t)k->colours[c];
    return m;
}

static void write_sku_row(struct gen *g, struct rng *r, uint32_t index, const char *product_title,
                          uint32_t grams)
{
    struct out *o = &g->out;
    const struct sku *s = &g->skus[index];
    const struct product_kind *k = &kinds[s->kind];
    char code[64], title[512], id[16], attrs[160];
    sku_code(s, code, sizeof code);
    snprintf(id, sizeof id, "P%u", FIRST_PRODUCT + s->product);
    if (k->axis) {
        snprintf(title, sizeof title, "%s - %s / %s", product_title, colours[s->colour].title,
                 k->variants[s->variant].label);
        snprintf(attrs, sizeof attrs, "color=%s;%s=%s", colours[s->colour].name, k->axis,
                 k->variants[s->variant].label);
    } else {
        snprintf(title, sizeof title, "%s - %s", product_title, colours[s->colour].title);
        snprintf(attrs, sizeof attrs, "color=%s", colours[s->colour].name);
    }
    /* Marketplace SKU ids: 17 digits, increasing with the SKU, so never repeated. A few SKUs
     * have none yet (not published). */
    uint64_t mp_sku_id = 12000000000000000ull + (uint64_t)index * 7919 + rng_below(r, 7919);
    bool published = rng_below(r, 100) >= 8;

    out_str(o, code);
    out_str(o, id);
    out_str(o, title);
    out_str(o, product_title);
    out_u64(o, s->price_minor);
    out_str(o, "USD");
    out_u64(o, grams);
    if (published)
        out_u64(o, mp_sku_id);
    else
        out_str(o, "");
    out_str(o, attrs);
    out_end_row(o);
}

static void write_catalog(struct gen *g)
{
    struct rng r = rng_stream(g->seed, STREAM_CATALOG, 0);
    out_header(&g->out,
               "sku,product_id,title,product_title,price_minor,currency,weight_g,mp_sku_id,"
               "attributes");
    uint32_t made = 0, p;
    for (p = 0; made < g->nskus; p++) {
        uint8_t kind = (uint8_t)rng_below(&r, countof(kinds));
        const struct product_kind *k = &kinds[kind];
        uint8_t cols[MAX_KIND_COLOURS];
        size_t ncols = pick_colours(&r, k, cols);
        size_t nvar = 1, first = 0, avail = count_variants(k->variants);
        if (k->axis) {
            nvar = rng_range(&r, 2, avail < 4 ? (uint32_t)avail : 4);
            first = rng_below(&r, (uint32_t)(avail - nvar + 1));
        }
        uint32_t dollars = rng_range(&r, k->dollars_lo, k->dollars_hi);
        uint32_t step = dollars / 4 ? dollars / 4 : 1;
        uint32_t grams = rng_range(&r, k->grams_lo, k->grams_hi);
        char product_title[256];
        snprintf(product_title, sizeof product_title, "%s%s",
                 title_leads[rng_below(&r, countof(title_leads))], k->title);
        for (size_t c = 0; c < ncols && made < g->nskus; c++) {
            for (size_t v = 0; v < nvar && made < g->nskus; v++, made++) {
                uint32_t up = k->priced ? (uint32_t)v : 0;
                g->skus[made] = (struct sku){
                    .product = p,
                    .price_minor = (dollars + up * step) * 100 - 1,
                    .kind = kind,
                    .colour = cols[c],
                    .variant = (uint8_t)(first + v),
                };
                write_sku_row(g, &r, made, product_title, grams + up * grams / 4);
            }
        }
    }
    g->nproducts = p;
}

/*
 * Every SKU draws its rows from a stream of its own, and every warehouse takes the same number
 * of draws whether or not it lists the SKU, so the rows of the first K warehouses do not depend
 * on how many there are.
 */
static void write_stock(struct gen *g)
{
    struct out *o = &g->out;
    out_header(o, "sku,warehouse,on_hand,safety,threshold");
    for (uint32_t i = 0; i < g->nskus; i++) {
        struct rng r = rng_stream(g->seed, STREAM_STOCK, i);
        char code[64];
        sku_code(&g->skus[i], code, sizeof code);
        for (uint32_t w = 0; w < g->nwarehouses; w++) {
            uint32_t listed = rng_below(&r, 100), safety = rng_below(&r, 4);
            uint32_t threshold = rng_range(&r, 5, 20), level = rng_below(&r, 100);
            uint32_t amount = rng_below(&r, 1000);
            if (w > 0 && listed < 7)
                continue;
            uint64_t on_hand;
            if (level < 6)
                on_hand = 0;
            else if (level < 20) /* available (on_hand - safety) in 1..threshold: low */
                on_hand = safety + 1 + amount % threshold;
            else /* mostly tens, a few hundreds */
                on_hand = safety + threshold + 1 + (uint64_t)amount * amount * 480 / 1000000;
            g->stock_rows++;
            g->stock_zero += on_hand == 0;
            g->stock_low += on_hand <= (uint64_t)safety + threshold;
            out_str(o, code);
            out_str(o, warehouses[w].code);
            out_u64(o, on_hand);
            out_u64(o, safety);
            out_u64(o, threshold);
            out_end_row(o);
        }
    }
}

static const char *order_status(struct rng *r, int64_t age)
{
    uint32_t x = rng_below(r, 100);
    if (x < 8)
        return "PLACE_ORDER_SUCCESS"; /* placed, payment still being verified */
    if (x < 80 || age < 6 * 3600)     /* nothing ships within hours of the order */
        return "WAIT_SELLER_SEND_GOODS";
    if (x < 93 || age < 36 * 3600)
        return "WAIT_BUYER_ACCEPT_GOODS";
    return "FINISH";
}

static const char *order_service(struct rng *r)
{
    uint32_t x = rng_below(r, 100);
    return x < 65 ? "CAINIAO_STANDARD" : x < 85 ? "CAINIAO_PREMIUM" : "CAINIAO_ECONOMY";
}

static void write_orders(struct gen *g)
{
    struct out *o = &g->out;
    struct rng r = rng_stream(g->seed, STREAM_ORDERS, 0);
    out_header(o, "order_id,status,created_at,ship_by,country,currency,sku,qty,price_minor,"
                  "service,buyer_name,address,city,postcode,phone");
    /* AliExpress-like 16-digit ids: a per-seed base, then increasing with the order. */
    const uint64_t id_base = 8100000000000000ull + rng_next(&r) % 80000000000000ull;
    const uint64_t span = 3 * DAY, slot = span / (g->norders ? g->norders : 1);
    const int64_t start = g->epoch - (int64_t)span;
    for (uint32_t n = 0; n < g->norders; n++) {
        uint64_t order_id = id_base + (uint64_t)n * 1000003 + rng_below(&r, 1000003);
        int64_t created = start + (int64_t)((uint64_t)n * span / g->norders) +
                          (slot > 1 ? (int64_t)rng_below(&r, (uint32_t)slot) : 0);
        int64_t ship_by = created + (int64_t)rng_range(&r, 3, 7) * DAY;
        const char *status = order_status(&r, g->epoch - created);
        const char *service = order_service(&r);
        struct buyer b;
        make_buyer(&r, &b);
        uint32_t x = rng_below(&r, 100), nlines = x < 60 ? 1 : x < 88 ? 2 : 3;
        if (nlines > g->nskus)
            nlines = g->nskus;
        uint32_t discount = rng_below(&r, 100) < 25 ? 5 * rng_range(&r, 2, 6) : 0; /* percent */
        uint32_t lines[3];
        for (uint32_t l = 0; l < nlines; l++) {
            bool repeated;
            do { /* distinct SKUs: (order_id, sku) is the row's key */
                lines[l] = rng_below(&r, g->nskus);
                repeated = false;
                for (uint32_t k = 0; k < l; k++)
                    repeated |= lines[k] == lines[l];
            } while (repeated);
            uint32_t q = rng_below(&r, 100), qty = q < 78 ? 1 : q < 94 ? 2 : 3;
            const struct sku *s = &g->skus[lines[l]];
            char code[64];
            sku_code(s, code, sizeof code);
            out_u64(o, order_id);
            out_str(o, status);
            out_u64(o, (uint64_t)created);
            out_u64(o, (uint64_t)ship_by);
            out_str(o, b.country->code);
            out_str(o, "USD");
            out_str(o, code);
            out_u64(o, qty);
            out_u64(o, (uint64_t)s->price_minor * (100 - discount) / 100);
            out_str(o, service);
            out_str(o, b.name);
            out_str(o, b.address);
            out_str(o, b.city);
            out_str(o, b.postcode);
            out_str(o, b.phone);
            out_end_row(o);
            g->order_lines++;
        }
    }
}

static int write_file(struct gen *g, const char *name, void (*write)(struct gen *))
{
    if (out_open(&g->out, g->dir, name) != 0) {
        fprintf(stderr, "tally-gen: %s: %s\n", g->out.tmp, strerror(g->out.err));
        return -1;
    }
    write(g);
    if (out_close(&g->out) != 0) {
        fprintf(stderr, "tally-gen: %s: %s\n", g->out.path, strerror(g->out.err));
        return -1;
    }
    return 0;
}

/* ------------------------------------------------------------------------------------------ */
/* Command line                                                                               */

static void usage(FILE *f)
{
    fprintf(f,
            "Usage: tally-gen --out DIR [--skus N] [--warehouses K] [--orders M] [--seed S]\n"
            "\n"
            "Writes deterministic demo data for `tally import` into DIR (created if missing):\n"
            "warehouses.csv, catalog.csv, stock.csv and orders.csv. The same arguments always\n"
            "give the same bytes; times are relative to a fixed epoch derived from the seed.\n"
            "\n"
            "  --out DIR         where to write the four files (required)\n"
            "  --skus N          SKUs, about four per product (1-%u, default 300)\n"
            "  --warehouses K    warehouses ES-MAD FR-PAR PL-WAW US-LAX DE-BER BR-SAO RU-MOW\n"
            "                    NL-AMS, the first K of them (1-%u, default 4)\n"
            "  --orders M        orders of 1-3 lines, over the 3 days before the epoch\n"
            "                    (0-%u, default 40)\n"
            "  --seed S          random seed (0-18446744073709551615, default 1)\n"
            "  -h, --help        show this help\n"
            "\n"
            "Import in this order: tally import warehouses DIR/warehouses.csv, then catalog,\n"
            "stock and orders.\n",
            MAX_SKUS, MAX_WAREHOUSES, MAX_ORDERS);
}

static int usage_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int usage_error(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("tally-gen: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputs("\nTry 'tally-gen --help'.\n", stderr);
    va_end(ap);
    return EXIT_USAGE;
}

/* Decimal digits only (no sign, no spaces), within [min, max]. */
static bool parse_u64(const char *s, uint64_t min, uint64_t max, uint64_t *out)
{
    if (*s < '0' || *s > '9')
        return false;
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || *end || v < min || v > max)
        return false;
    *out = v;
    return true;
}

/* mkdir -p: creates dir and its missing parents. */
static int make_dirs(const char *dir)
{
    char path[4096];
    if (snprintf(path, sizeof path, "%s", dir) >= (int)sizeof path) {
        errno = ENAMETOOLONG;
        return -1;
    }
    for (char *p = path + 1;; p++) {
        bool last = *p == '\0';
        if (*p != '/' && !last)
            continue;
        *p = '\0';
        struct stat st;
        if (mkdir(path, 0777) != 0 && errno != EEXIST)
            return -1;
        if (stat(path, &st) != 0)
            return -1;
        if (!S_ISDIR(st.st_mode)) {
            errno = ENOTDIR;
            return -1;
        }
        if (last)
            return 0;
        *p = '/';
    }
}

struct options {
    const char *out;
    uint64_t skus, warehouses, orders, seed;
};

/* Returns -1 to go on, or the exit status (0 after --help). */
static int parse_args(int argc, char **argv, struct options *opt)
{
    static const struct option longopts[] = {
        {"out", required_argument, NULL, 'o'},
        {"skus", required_argument, NULL, 's'},
        {"warehouses", required_argument, NULL, 'w'},
        {"orders", required_argument, NULL, 'n'},
        {"seed", required_argument, NULL, 'r'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    *opt = (struct options){.skus = 300, .warehouses = 4, .orders = 40, .seed = 1};
    int c;
    opterr = 0;
    while ((c = getopt_long(argc, argv, ":h", longopts, NULL)) != -1) {
        switch (c) {
        case 'o':
            if (!*optarg)
                return usage_error("--out needs a directory");
            opt->out = optarg;
            break;
        case 's':
            if (!parse_u64(optarg, 1, MAX_SKUS, &opt->skus))
                return usage_error("--skus must be a number from 1 to %u, not '%s'", MAX_SKUS,
                                   optarg);
            break;
        case 'w':
            if (!parse_u64(optarg, 1, MAX_WAREHOUSES, &opt->warehouses))
                return usage_error("--warehouses must be a number from 1 to %u, not '%s'",
                                   MAX_WAREHOUSES, optarg);
            break;
        case 'n':
            if (!parse_u64(optarg, 0, MAX_ORDERS, &opt->orders))
                return usage_error("--orders must be a number from 0 to %u, not '%s'", MAX_ORDERS,
                                   optarg);
            break;
        case 'r':
            if (!parse_u64(optarg, 0, UINT64_MAX, &opt->seed))
                return usage_error("--seed must be a number from 0 to 18446744073709551615, "
                                   "not '%s'",
                                   optarg);
            break;
        case 'h':
            usage(stdout);
            return 0;
        case ':':
            return usage_error("%s needs a value", argv[optind - 1]);
        default:
            return usage_error("unknown option '%s'", argv[optind - 1]);
        }
    }
    if (optind < argc)
        return usage_error("unexpected argument '%s'", argv[optind]);
    if (!opt->out)
        return usage_error("--out DIR is required");
    return -1;
}

static void print_summary(const struct gen *g)
{
    char when[32];
    time_t t = (time_t)g->epoch;
    struct tm tm;
    strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%SZ", gmtime_r(&t, &tm));
    printf("tally-gen: seed %" PRIu64 ", epoch %" PRId64 " (%s)\n", g->seed, g->epoch, when);
    printf("  %s/warehouses.csv  %" PRIu32 " warehouses\n", g->dir, g->nwarehouses);
    printf("  %s/catalog.csv     %" PRIu32 " SKUs of %" PRIu32 " products\n", g->dir, g->nskus,
           g->nproducts);
    printf("  %s/stock.csv       %" PRIu64 " rows (%" PRIu64
           " at or below their threshold, %" PRIu64 " of them at 0)\n",
           g->dir, g->stock_rows, g->stock_low, g->stock_zero);
    printf("  %s/orders.csv      %" PRIu32 " orders, %" PRIu64 " lines, created in the 3 days "
           "before the epoch\n",
           g->dir, g->norders, g->order_lines);
}

int main(int argc, char **argv)
{
    struct options opt;
    int rc = parse_args(argc, argv, &opt);
    if (rc >= 0)
        return rc;
    if (make_dirs(opt.out) != 0) {
        fprintf(stderr, "tally-gen: %s: %s\n", opt.out, strerror(errno));
        return EXIT_IO;
    }
    struct gen *g = calloc(1, sizeof *g);
    if (!g || !(g->skus = calloc(opt.skus, sizeof *g->skus))) {
        fprintf(stderr, "tally-gen: out of memory\n");
        free(g);
        return EXIT_IO;
    }
    g->dir = opt.out;
    g->seed = opt.seed;
    g->nskus = (uint32_t)opt.skus;
    g->nwarehouses = (uint32_t)opt.warehouses;
    g->norders = (uint32_t)opt.orders;
    g->epoch = epoch_for_seed(opt.seed);

    rc = write_file(g, "warehouses.csv", write_warehouses) ||
                 write_file(g, "catalog.csv", write_catalog) ||
                 write_file(g, "stock.csv", write_stock) ||
                 write_file(g, "orders.csv", write_orders)
             ? EXIT_IO
             : 0;
    if (rc == 0)
        print_summary(g);
    free(g->skus);
    free(g);
    return rc;
}
