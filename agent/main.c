/* kiln-agent entry point: the SMTP engine's command line. */
#include <stdio.h>
#include <string.h>

int main(int argc, char **argv)
{
    if (argc > 1 && !strcmp(argv[1], "--version")) {
        printf("kiln-agent %s\n", KILN_VERSION);
        return 0;
    }
    fprintf(stderr, "usage: kiln-agent --version\n");
    return 2;
}
