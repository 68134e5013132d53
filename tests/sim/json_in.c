#include "json_in.h"

#include <string.h>

bool jin_i64(const cJSON *item, int64_t *out)
{
    if (!cJSON_IsNumber(item))
        return false;
    double d = item->valuedouble;
    if (!(d <= (double)JIN_MAX_EXACT && d >= -(double)JIN_MAX_EXACT) || d != (double)(int64_t)d)
        return false; /* NaN fails the range test */
    *out = (int64_t)d;
    return true;
}

bool jin_parse_digits(const char *s, int64_t *out)
{
    size_t n = s ? strlen(s) : 0;
    if (n == 0 || n > 18)
        return false;
    int64_t v = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return false;
        v = v * 10 + (s[i] - '0');
    }
    *out = v;
    return true;
}

bool jin_id(const cJSON *item, int64_t *out)
{
    if (cJSON_IsString(item))
        return jin_parse_digits(item->valuestring, out);
    return jin_i64(item, out);
}

const char *jin_str(const cJSON *obj, const char *key)
{
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(obj, key);
    return cJSON_IsString(it) ? it->valuestring : NULL;
}
