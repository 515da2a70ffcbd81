/* SPDX-License-Identifier: MIT */
/*
 * options_doc - prints the library's table of RECLAIM_* variables
 * (src/options.c) as the README's list (--markdown) or reclaim(7)'s
 * (--scdoc). tools/check-options.sh compares them with the documents and,
 * with --update, writes them in, and fails the repository checks when
 * they differ. Exit status: 0, or 2 on a usage error.
 */
#include <stdio.h>
#include <string.h>

#include "../../src/internal.h"

static void usage(FILE *f)
{
    fprintf(f, "usage: options_doc --markdown | --scdoc\n"
               "Prints the RECLAIM_* table as the README's list or reclaim(7)'s.\n");
}

int main(int argc, char **argv)
{
    int md;

    if (argc == 2 && !strcmp(argv[1], "--help")) {
        usage(stdout);
        return 0;
    }
    if (argc != 2 || (strcmp(argv[1], "--markdown") && strcmp(argv[1], "--scdoc"))) {
        if (argc >= 2)
            fprintf(stderr, "options_doc: unknown argument '%s'\n", argv[1]);
        usage(stderr);
        return 2;
    }
    md = !strcmp(argv[1], "--markdown");
    for (unsigned i = 0; i < rcl__nr_options; i++) {
        const struct rcl__option *o = &rcl__options[i];
        const char *scope = o->offset == (size_t)-1 ? "every program" : "environment-configured programs";
        if (md)
            printf("| `%s` | %s | %s | %s |\n", o->name, o->def, scope, o->help);
        else
            printf("*%s*\n\t%s. Default: %s; applies to %s.\n\n", o->name, o->help, o->def, scope);
    }
    return 0;
}
