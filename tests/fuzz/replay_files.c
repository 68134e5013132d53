/*
 * fuzz_replay_files: runs a fuzz target (any LLVMFuzzerTestOneInput) without libFuzzer over
 * every file of the corpus directories (or files) named, once each, in name order: the seeds
 * and the regression input of every crash found. A crash, leak or sanitizer report fails it.
 *   fuzz_replay_<target> DIR|FILE...
 */
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int run_file(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        perror(path);
        return -1;
    }
    size_t cap = 4096, len = 0;
    uint8_t *buf = malloc(cap);
    size_t n;
    while (buf && (n = fread(buf + len, 1, cap - len, f)) > 0) {
        len += n;
        if (len == cap) {
            uint8_t *b = realloc(buf, cap *= 2);
            if (!b) {
                free(buf);
                buf = NULL;
            }
            buf = b;
        }
    }
    fclose(f);
    if (!buf) {
        fprintf(stderr, "%s: out of memory\n", path);
        return -1;
    }
    LLVMFuzzerTestOneInput(buf, len);
    free(buf);
    return 0;
}

static int by_name(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

int main(int argc, char **argv)
{
    long files = 0;
    if (argc < 2) {
        fprintf(stderr, "usage: %s DIR|FILE...\n", argv[0]);
        return 2;
    }
    for (int i = 1; i < argc; i++) {
        struct stat stt;
        if (stat(argv[i], &stt) != 0) {
            perror(argv[i]);
            return 1;
        }
        if (!S_ISDIR(stt.st_mode)) {
            if (run_file(argv[i]) != 0)
                return 1;
            files++;
            continue;
        }
        DIR *dir = opendir(argv[i]);
        if (!dir) {
            perror(argv[i]);
            return 1;
        }
        char **names = NULL;
        size_t nn = 0;
        struct dirent *de;
        while ((de = readdir(dir)) != NULL) {
            if (de->d_name[0] == '.')
                continue;
            char **more = realloc(names, (nn + 1) * sizeof *names);
            if (!more)
                return 1;
            names = more;
            size_t len = strlen(argv[i]) + strlen(de->d_name) + 2;
            names[nn] = malloc(len);
            if (!names[nn])
                return 1;
            snprintf(names[nn++], len, "%s/%s", argv[i], de->d_name);
        }
        closedir(dir);
        qsort(names, nn, sizeof *names, by_name);
        for (size_t k = 0; k < nn; k++) {
            if (stat(names[k], &stt) == 0 && S_ISREG(stt.st_mode)) {
                if (run_file(names[k]) != 0)
                    return 1;
                files++;
            }
            free(names[k]);
        }
        free(names);
    }
    if (files == 0) {
        fprintf(stderr, "no corpus files: a replay of nothing proves nothing\n");
        return 1;
    }
    printf("%s: %ld corpus files replayed, no crash\n", argv[0], files);
    return 0;
}
