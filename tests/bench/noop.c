/* A program that does nothing, linked statically like the `tally` client: the floor of a
 * whole-process figure on this machine (proc_time.c). */
int main(void)
{
    return 0;
}
