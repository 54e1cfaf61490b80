/*
 * bench_store.h - what the benchmark programs that fill a scratch store
 * share (smtp_accounts, imap_fill): open it from a configuration file, add
 * the domain, add citizen accounts with the benchmark password, and run the
 * work in several processes at once, so that their commits share log
 * flushes.  Every failure is fatal (log_fatalx): these run on scratch
 * stores from the benchmark scripts only.
 */
#ifndef GOVMAIL_BENCH_STORE_H
#define GOVMAIL_BENCH_STORE_H

#include <stdint.h>

#include "mailbox.h"

/* The password of every benchmark account. */
#define BENCH_PASSWORD "bench-password"

/* The store of the configuration file conf, created if missing. */
struct store *bench_store_open(const char *conf);
/* Add domain to the store of conf (present already is fine). */
void bench_domain_add(const char *conf, const char *domain);
/* Add the citizen account address (present already is fine). */
void bench_account_add(struct store *st, const char *address);
/*
 * Run fn(p, ctx) in nprocs child processes, p = 0 .. nprocs-1, and wait
 * for them all; fatal if one fails.
 */
void bench_parallel(unsigned nprocs, void (*fn)(unsigned p, void *ctx),
    void *ctx);

#endif
