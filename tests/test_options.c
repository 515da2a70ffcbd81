/* SPDX-License-Identifier: MIT */
/*
 * test_options.c - configuration that never surprises: one precedence
 * rule (a program's own configuration is exactly what it gets; the
 * environment configures programs that leave it to the library, or that
 * ask with rcl_config_from_env()), reports that name the variable and its
 * value, and extensible structures. Also the version at run time.
 */
#include "helpers.h"

#include <stdatomic.h>

static void clear_env(void)
{
    static const char *const names[] = {
        "RECLAIM_LIMIT", "RECLAIM_RESERVE", "RECLAIM_MIN_PCT", "RECLAIM_LOW_PCT",
        "RECLAIM_HIGH_PCT", "RECLAIM_BACKGROUND", "RECLAIM_PRESSURE",
        "RECLAIM_LOCKDEP", "RECLAIM_STALL_MS", "RECLAIM_STATS", "RECLAIM_DIRECT_US",
        "RECLAIM_FOOTPRINT",
    };
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
        unsetenv(names[i]);
}

static int options_teardown(void **state)
{
    clear_env();
    return test_teardown(state);
}

/* rcl_config_default() gives the defaults, whatever the environment says. */
TEST_WITH(defaults_ignore_the_environment, test_setup, options_teardown)
{
    struct rcl_config cfg;
    setenv("RECLAIM_LIMIT", "3M", 1);
    setenv("RECLAIM_LOW_PCT", "1", 1);
    rcl_config_default(&cfg);
    assert_int_equal(cfg.limit, 0);
    assert_int_equal(cfg.low_pct, 5);
    assert_int_equal(test_report_count(), 0);
}

/* A NULL where the configuration should go is the caller's bug, reported
 * as every NULL object is, and nothing else is done. */
TEST_WITH(defaults_into_no_configuration_are_reported, test_setup, options_teardown)
{
    rcl_config_default(NULL);
    assert_int_equal(test_report_count(), 1);
    assert_last_report_has("rcl_config_default(NULL): NULL configuration; nothing written");
}

/* A correct program's rcl_init() succeeds, and gets what it asked for,
 * even with an environment that would make its configuration impossible
 * (low below min). */
TEST_WITH(own_configuration_wins_over_the_environment, test_setup, options_teardown)
{
    rcl_shutdown();
    setenv("RECLAIM_LOW_PCT", "1", 1);
    setenv("RECLAIM_LIMIT", "3M", 1);
    struct rcl_config cfg = test_config(8 * MiB);
    assert_int_equal(rcl_init(&cfg), 0);
    assert_int_equal(rcl_limit(), 8 * MiB);
    struct rcl_stats st;
    rcl_stats_get(&st);
    assert_int_equal(st.wmark_low, 8 * MiB * 5 / 100);
}

/* A program asks for the environment explicitly, after its own choices. */
TEST_WITH(from_env_applies_the_variables_set, test_setup, options_teardown)
{
    struct rcl_config cfg = test_config(8 * MiB);
    setenv("RECLAIM_LIMIT", "3M", 1);
    setenv("RECLAIM_STALL_MS", "250", 1);
    setenv("RECLAIM_LOCKDEP", "verbose", 1);
    setenv("RECLAIM_BACKGROUND", "on", 1);
    assert_int_equal(rcl_config_from_env(&cfg), 0);
    assert_int_equal(cfg.limit, 3 * MiB);
    assert_int_equal(cfg.stall_ms, 250);
    assert_int_equal(cfg.lockdep, RCL_LOCKDEP_VERBOSE);
    assert_int_equal(cfg.background, 1);
    assert_int_equal(cfg.pressure, 0);   /* not set: left as the program had it */
    assert_int_equal(test_report_count(), 0);
}

/* A bad value is named with its value, ignored, and the rest applies. */
TEST_WITH(a_bad_variable_is_named_and_the_rest_applies, test_setup, options_teardown)
{
    struct rcl_config cfg;
    rcl_config_default(&cfg);
    setenv("RECLAIM_HIGH_PCT", "150", 1);
    setenv("RECLAIM_LIMIT", "5M", 1);
    setenv("RECLAIM_PRESSURE", "maybe", 1);
    assert_int_equal(rcl_config_from_env(&cfg), -EINVAL);
    assert_int_equal(cfg.limit, 5 * MiB);
    assert_int_equal(cfg.high_pct, 10);
    assert_int_equal(cfg.pressure, 1);
    assert_int_equal(test_report_count(), 1);
    assert_last_report_has("RECLAIM_HIGH_PCT=\"150\"");
    assert_last_report_has("RECLAIM_PRESSURE=\"maybe\"");
    assert_null(strstr(test_report_last(), "RECLAIM_LIMIT"));
}

/* A size is digits and a suffix: strtoull() would take " -1" as the
 * largest size there is. */
TEST_WITH(a_size_with_a_blank_or_a_sign_is_refused, test_setup, options_teardown)
{
    static const char *const bad[] = { " -1", "-1", "+5M", " 5M" };
    struct rcl_config cfg;

    for (unsigned i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        rcl_config_default(&cfg);
        setenv("RECLAIM_LIMIT", bad[i], 1);
        assert_int_equal(rcl_config_from_env(&cfg), -EINVAL);
        assert_int_equal(cfg.limit, 0);
        assert_last_report_has("RECLAIM_LIMIT");
    }
}

/* Every config option's variable, set to a value none takes, longer than
 * a report quotes. */
static const char *const config_vars[] = {
    "RECLAIM_LIMIT", "RECLAIM_RESERVE", "RECLAIM_MIN_PCT", "RECLAIM_LOW_PCT",
    "RECLAIM_HIGH_PCT", "RECLAIM_BACKGROUND", "RECLAIM_PRESSURE", "RECLAIM_LOCKDEP",
    "RECLAIM_STALL_MS", "RECLAIM_FOOTPRINT", "RECLAIM_DIRECT_US",
};
#define LONG_BAD_VALUE "not-a-value-any-option-takes-and-longer-than-the-64-bytes-a-report-quotes"

static void set_every_config_var_bad(unsigned from)
{
    for (unsigned i = from; i < sizeof(config_vars) / sizeof(config_vars[0]); i++)
        setenv(config_vars[i], LONG_BAD_VALUE, 1);
}

/* The variable and the first 64 bytes of its value, as the report quotes them. */
static void assert_report_names(const char *report, const char *name)
{
    char quoted[128];
    snprintf(quoted, sizeof(quoted), "%s=\"%.64s\"", name, LONG_BAD_VALUE);
    if (!strstr(report, quoted))
        fail_msg("%s not in the report: %s", quoted, report);
}

/* The one report of a refused environment names each variable it ignored,
 * however many there are. */
TEST_WITH(a_report_of_every_variable_ignored_names_each_of_them, test_setup, options_teardown)
{
    struct rcl_config cfg;

    set_every_config_var_bad(0);
    rcl_config_default(&cfg);
    assert_int_equal(rcl_config_from_env(&cfg), -EINVAL);
    assert_int_equal(test_report_count(), 1);
    for (unsigned i = 0; i < sizeof(config_vars) / sizeof(config_vars[0]); i++)
        assert_report_names(test_report_last(), config_vars[i]);
    assert_last_report_has("; the rest of the RECLAIM_* environment applies");
}

/* A first use holds its reports back until the library has started: the
 * refusal of the environment reaches the report function whole. */
TEST_WITH(a_first_use_reports_every_variable_ignored_whole, test_setup, options_teardown)
{
    rcl_shutdown();
    set_every_config_var_bad(0);
    setenv("RECLAIM_BACKGROUND", "0", 1);   /* no thread of the library's */
    setenv("RECLAIM_PRESSURE", "0", 1);
    void *p = rcl_alloc(64, RCL_DEFAULT);
    assert_non_null(p);
    rcl_free(p);
    assert_int_equal(test_report_count(), 1);
    for (unsigned i = 0; i < sizeof(config_vars) / sizeof(config_vars[0]); i++)
        if (strcmp(config_vars[i], "RECLAIM_BACKGROUND") && strcmp(config_vars[i], "RECLAIM_PRESSURE"))
            assert_report_names(test_report_last(), config_vars[i]);
    assert_last_report_has("; the rest of the RECLAIM_* environment applies");
}

/* A percentage, milliseconds or microseconds is a plain number: a size's
 * suffix on one is trailing junk, not a multiplier. */
TEST_WITH(a_number_with_a_size_suffix_is_refused, test_setup, options_teardown)
{
    static const struct { const char *name, *value; } bad[] = {
        { "RECLAIM_STALL_MS", "5k" }, { "RECLAIM_DIRECT_US", "1K" },
        { "RECLAIM_MIN_PCT", "1m" }, { "RECLAIM_STALL_MS", "2KiB" },
    };
    struct rcl_config cfg;

    for (unsigned i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        rcl_config_default(&cfg);
        setenv(bad[i].name, bad[i].value, 1);
        assert_int_equal(rcl_config_from_env(&cfg), -EINVAL);
        assert_int_equal(cfg.stall_ms, 10000);
        assert_int_equal(cfg.direct_us, 0);
        assert_int_equal(cfg.min_pct, 2);
        assert_last_report_has(bad[i].name);
        unsetenv(bad[i].name);
    }
}

/* A size's suffix may be written as a binary unit or with a B: KiB and
 * MB are the same multiples of 1024 as K and M. */
TEST_WITH(a_size_takes_its_suffix_with_an_i_or_a_b, test_setup, options_teardown)
{
    struct rcl_config cfg;

    rcl_config_default(&cfg);
    setenv("RECLAIM_LIMIT", "3MiB", 1);
    setenv("RECLAIM_RESERVE", "64KB", 1);
    assert_int_equal(rcl_config_from_env(&cfg), 0);
    assert_int_equal(cfg.limit, 3 * MiB);
    assert_int_equal(cfg.reserve, 64 * KiB);
    assert_int_equal(test_report_count(), 0);
}

/* A size its suffix would carry past the largest size is out of range,
 * not the few bytes left after the shift wraps. */
TEST_WITH(a_size_past_the_largest_is_refused, test_setup, options_teardown)
{
    struct rcl_config cfg;

    rcl_config_default(&cfg);
    setenv("RECLAIM_LIMIT", "16777217T", 1);   /* 2^24 + 1 TiB: 2^40 past 2^64 */
    assert_int_equal(rcl_config_from_env(&cfg), -EINVAL);
    assert_int_equal(cfg.limit, 0);
    assert_last_report_has("RECLAIM_LIMIT=\"16777217T\"");
}

/* A number's range is inclusive at both ends and no wider: 99 is the
 * largest headroom percentage, 100 is refused. */
TEST_WITH(a_number_one_past_its_range_is_refused, test_setup, options_teardown)
{
    struct rcl_config cfg;

    rcl_config_default(&cfg);
    setenv("RECLAIM_HIGH_PCT", "99", 1);
    assert_int_equal(rcl_config_from_env(&cfg), 0);
    assert_int_equal(cfg.high_pct, 99);
    setenv("RECLAIM_HIGH_PCT", "100", 1);
    assert_int_equal(rcl_config_from_env(&cfg), -EINVAL);
    assert_int_equal(cfg.high_pct, 99);
    assert_last_report_has("RECLAIM_HIGH_PCT=\"100\"");
}

/* RECLAIM_DIRECT_US=0 is "no bound", not the field's 0 (the default). */
TEST_WITH(direct_us_of_0_in_the_environment_means_no_bound, test_setup, options_teardown)
{
    struct rcl_config cfg;

    rcl_config_default(&cfg);
    setenv("RECLAIM_DIRECT_US", "0", 1);
    assert_int_equal(rcl_config_from_env(&cfg), 0);
    assert_int_equal(cfg.direct_us, RCL_DIRECT_UNBOUNDED);
}

/* RECLAIM_LOCKDEP=2 is another spelling of verbose. */
TEST_WITH(lockdep_2_in_the_environment_means_verbose, test_setup, options_teardown)
{
    struct rcl_config cfg;

    rcl_config_default(&cfg);
    setenv("RECLAIM_LOCKDEP", "2", 1);
    assert_int_equal(rcl_config_from_env(&cfg), 0);
    assert_int_equal(cfg.lockdep, RCL_LOCKDEP_VERBOSE);
}

TEST_WITH(from_env_into_no_configuration_is_refused_and_reported, test_setup, options_teardown)
{
    assert_int_equal(rcl_config_from_env(NULL), -EINVAL);
    assert_int_equal(test_report_count(), 1);
    assert_last_report_has("rcl_config_from_env(NULL)");
}

/* rcl_init(NULL) is first use: defaults plus the environment. */
TEST_WITH(init_null_reads_the_environment, test_setup, options_teardown)
{
    rcl_shutdown();
    setenv("RECLAIM_LIMIT", "6M", 1);
    setenv("RECLAIM_BACKGROUND", "0", 1);
    setenv("RECLAIM_PRESSURE", "0", 1);
    assert_int_equal(rcl_init(NULL), 0);
    assert_int_equal(rcl_limit(), 6 * MiB);
}

/* rcl_init(NULL) on a running library is refused with nothing applied: it
 * says nothing of the environment it does not apply (the start that read
 * it reported a bad variable once), and the budget stays as it was. */
TEST_WITH(init_null_on_a_running_library_reports_no_variable, test_setup, options_teardown)
{
    size_t limit = rcl_limit();

    setenv("RECLAIM_LIMIT", "lots", 1);
    setenv("RECLAIM_STALL_MS", "5k", 1);
    assert_int_equal(rcl_init(NULL), -EBUSY);
    assert_int_equal(test_report_count(), 0);
    assert_int_equal(rcl_limit(), limit);
}

/* First use with an impossible environment: reported, and the library runs
 * on the defaults rather than not at all. */
TEST_WITH(impossible_environment_falls_back_to_defaults, test_setup, options_teardown)
{
    rcl_shutdown();
    setenv("RECLAIM_LOW_PCT", "1", 1);       /* below min: cannot work */
    setenv("RECLAIM_PRESSURE", "0", 1);
    setenv("RECLAIM_BACKGROUND", "0", 1);
    void *p = rcl_alloc(64, RCL_DEFAULT);
    assert_non_null(p);
    rcl_free(p);
    assert_reports_have("using defaults");
    struct rcl_stats st;
    rcl_stats_get(&st);
    assert_int_equal(st.wmark_low, st.limit * 5 / 100);
}

/* A report function that allocates from the library, as a daemon's logger
 * may: each allocation it made and whether it succeeded. */
static atomic_int report_allocs, report_allocs_ok;

static void allocating_report(const char *report, void *arg)
{
    void *copy = rcl_alloc(strlen(report) + 300, RCL_DEFAULT);   /* past the stash's 256 B */

    atomic_fetch_add(&report_allocs, 1);
    if (copy) {
        atomic_fetch_add(&report_allocs_ok, 1);
        rcl_free(copy);
    }
    test_report_catch(report, arg);
}

/* The reports of a first use with a bad variable reach a report function
 * that allocates: they go out once the library has started, not while
 * the first use holds the lock that starting it takes. */
TEST_WITH(a_report_function_that_allocates_hears_a_bad_environment, test_setup,
          options_teardown)
{
    rcl_shutdown();
    setenv("RECLAIM_MIN_PCT", "bogus", 1);
    setenv("RECLAIM_PRESSURE", "0", 1);
    setenv("RECLAIM_BACKGROUND", "0", 1);
    atomic_store(&report_allocs, 0);
    atomic_store(&report_allocs_ok, 0);
    rcl_set_report_fn(allocating_report, NULL);
    void *p = rcl_alloc(64, RCL_DEFAULT);
    rcl_set_report_fn(test_report_catch, NULL);
    assert_non_null(p);
    rcl_free(p);
    assert_last_report_has("RECLAIM_MIN_PCT=\"bogus\"");
    assert_int_equal(atomic_load(&report_allocs), 1);
    assert_int_equal(atomic_load(&report_allocs_ok), 1);
}

/* rcl_init()'s refusal of a configuration reaches a report function that
 * allocates. Its allocation is a first use, which starts the library on
 * the defaults and the environment, as any first use does: rcl_init()
 * then finds it started. */
TEST_WITH(a_report_function_that_allocates_hears_a_refused_configuration, test_setup,
          options_teardown)
{
    rcl_shutdown();
    setenv("RECLAIM_PRESSURE", "0", 1);
    setenv("RECLAIM_BACKGROUND", "0", 1);
    struct rcl_config cfg = test_config(8 * MiB);
    cfg.low_pct = cfg.min_pct;
    atomic_store(&report_allocs, 0);
    atomic_store(&report_allocs_ok, 0);
    rcl_set_report_fn(allocating_report, NULL);
    assert_int_equal(rcl_init(&cfg), -EINVAL);
    rcl_set_report_fn(test_report_catch, NULL);
    assert_last_report_has("watermarks");
    assert_int_equal(atomic_load(&report_allocs_ok), 1);
    cfg.low_pct = 5;
    assert_int_equal(rcl_init(&cfg), -EBUSY);
}

/* Reserved words must be zero: a configuration from a later header (or an
 * uninitialised one) is refused, not misread. */
TEST_WITH(nonzero_reserved_config_words_are_refused, test_setup, options_teardown)
{
    rcl_shutdown();
    struct rcl_config cfg = test_config(8 * MiB);
    cfg.rcl_reserved[3] = 1;
    assert_int_equal(rcl_init(&cfg), -EINVAL);
    assert_last_report_has("reserved");
    cfg.rcl_reserved[3] = 0;
    assert_int_equal(rcl_init(&cfg), 0);
}

/* More shrinkers than struct rcl_stats carries: rcl_stats_shrinkers()
 * fills a caller-sized array and says how many there are. */
TEST_WITH(every_shrinker_is_listed_beyond_the_fixed_array, test_setup, options_teardown)
{
    enum { N = RCL_STATS_MAX_SHRINKERS + 8 };
    struct test_counter *sh[N];
    char name[32];
    for (int i = 0; i < N; i++) {
        snprintf(name, sizeof(name), "cache-%d", i);
        sh[i] = test_counter_new(name, 0, NULL);
    }
    assert_int_equal(rcl_stats_shrinkers(NULL, 0), N);
    struct rcl_shrinker_stats *all = calloc(N, sizeof(*all));
    assert_int_equal(rcl_stats_shrinkers(all, N), N);
    assert_string_equal(all[N - 1].name, "cache-39");
    assert_int_equal(all[N - 1].rcl_reserved[0], 0);
    struct rcl_shrinker_stats two[2];
    assert_int_equal(rcl_stats_shrinkers(two, 2), N);
    assert_string_equal(two[1].name, "cache-1");
    struct rcl_stats st;
    rcl_stats_get(&st);
    assert_int_equal(st.nr_shrinkers, N);
    assert_string_equal(st.shrinkers[RCL_STATS_MAX_SHRINKERS - 1].name, "cache-31");
    for (int i = 0; i < N; i++)
        test_counter_free(sh[i]);
    free(all);
}

/* The text form lists every shrinker, not only the first 32. */
TEST_WITH(stats_print_lists_every_shrinker, test_setup, options_teardown)
{
    enum { N = RCL_STATS_MAX_SHRINKERS + 2 };
    struct test_counter *sh[N];
    char name[32];
    for (int i = 0; i < N; i++) {
        snprintf(name, sizeof(name), "pool-%d", i);
        sh[i] = test_counter_new(name, 0, NULL);
    }
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    assert_int_equal(rcl_stats_print(f, 1), 0);
    fclose(f);
    assert_non_null(strstr(buf, "\"pool-33\""));
    free(buf);
    for (int i = 0; i < N; i++)
        test_counter_free(sh[i]);
}

/* A stream whose first write registers one more shrinker, as another
 * thread may while the statistics are printed; it keeps what it is given
 * in a memory stream. */
struct registering_stream {
    FILE *mem;
    struct test_counter *late;
};

static ssize_t registering_write(void *cookie, const char *buf, size_t size)
{
    struct registering_stream *rs = cookie;
    if (!rs->late)
        rs->late = test_counter_new("late", 0, NULL);
    return (ssize_t)fwrite(buf, 1, size, rs->mem);
}

enum { PRINTED_BEFORE = RCL_STATS_MAX_SHRINKERS + 2 };

/* Prints the statistics, with PRINTED_BEFORE shrinkers registered and one
 * more registered at the stream's first write; returns the text. */
static char *print_while_one_is_registered(int json, struct test_counter **late)
{
    struct test_counter *sh[PRINTED_BEFORE];
    struct registering_stream rs = { 0 };
    char name[32], *buf = NULL;
    size_t len = 0;

    for (int i = 0; i < PRINTED_BEFORE; i++) {
        snprintf(name, sizeof(name), "pool-%d", i);
        sh[i] = test_counter_new(name, 0, NULL);
    }
    rs.mem = open_memstream(&buf, &len);
    FILE *f = fopencookie(&rs, "w", (cookie_io_functions_t){ .write = registering_write });
    assert_non_null(f);
    setvbuf(f, NULL, _IONBF, 0);            /* each fprintf a write */
    assert_int_equal(rcl_stats_print(f, json), 0);
    fclose(f);
    fclose(rs.mem);
    for (int i = 0; i < PRINTED_BEFORE; i++)
        test_counter_free(sh[i]);
    *late = rs.late;
    return buf;
}

static unsigned occurrences(const char *text, const char *what)
{
    unsigned n = 0;
    for (const char *p = text; (p = strstr(p, what)); p += strlen(what))
        n++;
    return n;
}

/* The JSON form's count of shrinkers is the length of the list it gives,
 * one reading of both: a shrinker registered while it is printed is in
 * both or in neither. (The count came from the statistics read first, the
 * list, beyond the fixed array's 32, from a read made later.) */
TEST_WITH(stats_json_counts_the_shrinkers_it_lists, test_setup, options_teardown)
{
    struct test_counter *late;
    char *buf = print_while_one_is_registered(1, &late);
    unsigned nr;
    const char *at = strstr(buf, "\"nr_shrinkers\":");

    assert_non_null(at);
    assert_int_equal(sscanf(at, "\"nr_shrinkers\":%u", &nr), 1);
    assert_int_equal(nr, occurrences(buf, "{\"name\":"));
    free(buf);
    test_counter_free(late);
}

/* The same for the text form. */
TEST_WITH(stats_text_counts_the_shrinkers_it_lists, test_setup, options_teardown)
{
    struct test_counter *late;
    char *buf = print_while_one_is_registered(0, &late);
    unsigned nr;
    const char *at = strstr(buf, "  shrinkers: ");

    assert_non_null(at);
    assert_int_equal(sscanf(at, "  shrinkers: %u", &nr), 1);
    assert_int_equal(nr, occurrences(at, " calls "));
    free(buf);
    test_counter_free(late);
}

/* The library says which version it is, in the header's terms. */
TEST_WITH(version_matches_the_header, test_setup, options_teardown)
{
    char want[32];
    snprintf(want, sizeof(want), "%d.%d.%d", RCL_VERSION_MAJOR, RCL_VERSION_MINOR,
             RCL_VERSION_PATCH);
    assert_string_equal(rcl_version(), want);
    assert_string_equal(rcl_version(), RCL_VERSION_STRING);
    assert_int_equal(rcl_version_number(), RCL_VERSION_NUMBER);
}

TEST_MAIN();
