/*
 * store_util.h - fixture shared by the store's unit tests: a fresh
 * environment in a mkdtemp folder per test, fast Argon2id parameters, and
 * valid identifiers built with lib/ident.
 */
#ifndef STORE_UTIL_H
#define STORE_UTIL_H

#include <sys/stat.h>
#include <sys/types.h>

#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"
#include "ident.h"
#include "mailbox.h"

struct fx {
	char dir[256];
	char path[300];
	struct config *cfg;
	struct store *st;
};

static int
fx_rm_cb(const char *p, const struct stat *sb, int flag, struct FTW *ftw)
{
	(void)sb;
	(void)flag;
	(void)ftw;
	return remove(p);
}

static inline void
fx_rmtree(const char *dir)
{
	(void)nftw(dir, fx_rm_cb, 16, FTW_DEPTH | FTW_PHYS);
}

/* A fresh folder and config; the store is not opened yet. */
static inline struct fx *
fx_new_cfg(void)
{
	struct fx *f = calloc(1, sizeof(*f));
	const char *tmp = getenv("TMPDIR"), *err;

	if (f == NULL)
		abort();
	snprintf(f->dir, sizeof(f->dir), "%s/govmail-store-XXXXXX",
	    tmp != NULL && tmp[0] != '\0' ? tmp : "/tmp");
	if (mkdtemp(f->dir) == NULL)
		abort();
	snprintf(f->path, sizeof(f->path), "%s/store", f->dir);
	f->cfg = config_defaults();
	if (config_set(f->cfg, "store", "path", f->path, &err) != 0 ||
	    config_set(f->cfg, "store", "password_opslimit", "1", &err) != 0 ||
	    config_set(f->cfg, "store", "password_memlimit", "8K", &err) != 0 ||
	    config_set(f->cfg, "store", "cache_size", "4M", &err) != 0 ||
	    config_set(f->cfg, "store", "max_processes", "64", &err) != 0) {
		fprintf(stderr, "config_set: %s\n", err);
		abort();
	}
	return f;
}

static inline void
fx_open(struct fx *f)
{
	const char *err = NULL;

	if (store_open(f->cfg, STORE_OPEN_CREATE, &f->st, &err) != 0) {
		fprintf(stderr, "store_open: %s\n", err ? err : "?");
		abort();
	}
}

static inline struct fx *
fx_new(void)
{
	struct fx *f = fx_new_cfg();

	fx_open(f);
	return f;
}

static inline void
fx_free(struct fx *f)
{
	if (f == NULL)
		return;
	store_close(f->st);
	config_free(f->cfg);
	fx_rmtree(f->dir);
	free(f);
}

/* A valid USCC or resident ID from 17 leading characters. */
static inline void
fx_uscc(const char *first17, char out[IDENT_USCC_LEN + 1])
{
	memcpy(out, first17, 17);
	out[17] = ident_uscc_check_char(first17);
	out[18] = '\0';
}

static inline void
fx_resident(const char *first17, char out[IDENT_RESIDENT_ID_LEN + 1])
{
	memcpy(out, first17, 17);
	out[17] = ident_resident_id_check_char(first17);
	out[18] = '\0';
}

/* Add a citizen account; returns the store result. */
static inline int
fx_citizen(struct fx *f, const char *address)
{
	struct store_account_spec sp;

	memset(&sp, 0, sizeof(sp));
	sp.address = address;
	sp.class = STORE_CLASS_CITIZEN;
	sp.password = "secret";
	return store_account_add(f->st, &sp, NULL);
}

static const char fx_msg[] =
    "From: Water Company <bills@water.example>\r\n"
    "To: citizen@city.example\r\n"
    "Subject: Your water bill\r\n"
    "Message-ID: <bill-1@water.example>\r\n"
    "Date: Mon, 2 Nov 2026 10:00:00 +0800\r\n"
    "MIME-Version: 1.0\r\n"
    "Content-Type: text/plain; charset=utf-8\r\n"
    "\r\n"
    "Amount due: 42.00\r\n";

#endif
