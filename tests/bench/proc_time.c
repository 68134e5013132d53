/*
 * proc_time N COMMAND [ARG...]: runs COMMAND N times, one after another, with its output to
 * /dev/null, and prints the median wall time of one run (from the spawn to its exit) in
 * milliseconds, 3 decimals. The whole-process figures of the benchmarks (`tally stock`,
 * `tally status`) and their floor (a program that does nothing) are timed by it the same way:
 * from a shell, a fork of the shell itself would be inside every interval.
 */
#include <fcntl.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

static int cmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: proc_time N COMMAND [ARG...]\n");
        return 2;
    }
    char *end;
    long n = strtol(argv[1], &end, 10);
    if (*end || n < 1 || n > 10000) {
        fprintf(stderr, "proc_time: N must be 1-10000\n");
        return 2;
    }
    double *ms = calloc((size_t)n, sizeof *ms);
    if (!ms)
        return 1;
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
    posix_spawn_file_actions_addopen(&fa, 2, "/dev/null", O_WRONLY, 0);
    for (long i = 0; i < n; i++) {
        struct timespec t0, t1;
        pid_t pid;
        int st;
        clock_gettime(CLOCK_MONOTONIC, &t0);
        int e = posix_spawn(&pid, argv[2], &fa, NULL, argv + 2, environ);
        if (e != 0) {
            fprintf(stderr, "proc_time: cannot run %s\n", argv[2]);
            return 1;
        }
        if (waitpid(pid, &st, 0) != pid)
            return 1;
        clock_gettime(CLOCK_MONOTONIC, &t1);
        if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
            fprintf(stderr, "proc_time: %s failed (status %d)\n", argv[2], st);
            return 1;
        }
        ms[i] = (double)(t1.tv_sec - t0.tv_sec) * 1e3 + (double)(t1.tv_nsec - t0.tv_nsec) / 1e6;
    }
    qsort(ms, (size_t)n, sizeof *ms, cmp);
    printf("%.3f\n", n % 2 ? ms[n / 2] : (ms[n / 2 - 1] + ms[n / 2]) / 2);
    free(ms);
    return 0;
}
