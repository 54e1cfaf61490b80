/*
 * ctl_cert.c - govmailctl user add --issue-cert: the new account's S/MIME
 * certificate from the built-in CA (libgovca), its key generated here and
 * handed over only inside a PKCS#12 file whose password is printed once.
 *
 * Run by the operator, who must be able to read the CA folder and its
 * passphrase file ([ca] dir, [ca] passphrase_file).  Input: the account
 * data user add has already checked.
 *
 * Nothing half-done: everything that can fail without changing anything
 * (opening the CA with its keys, creating the PKCS#12 file) happens before
 * the account is made; if issuing fails afterwards the certificate is
 * revoked (if it exists), the file removed, and user add deletes the
 * account again.
 */
#include "autoconf.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <sodium.h>

#include "buf.h"
#include "config.h"
#include "ctl.h"
#include "govca.h"
#include "mailbox.h"
#include "xmalloc.h"

/* Largest PKCS#12 accepted from libgovca (a key and a three-level chain). */
#define CTL_P12_MAX (1024 * 1024)

struct ctl_cert {
	struct govca *ca;
	char *path;		/* the PKCS#12 file, created empty */
	int fd;
	int issued;		/* keep the file at the end */
};

/* [ca] passphrase_file's first line, in a secret buffer. */
static int
ctl_cert_passphrase(struct ctl *ctl, struct buf *pass)
{
	const char *file = config_path_get(ctl->cfg, "ca", "passphrase_file");
	uint8_t chunk[256];
	ssize_t n;
	size_t len;
	int fd;

	buf_init(pass, GOVCA_PASSPHRASE_MAX + 2);
	pass->secret = 1;
	if (*file == '\0')
		return ctl_fail(ctl, CTL_EX_CONFIG, "--issue-cert needs "
		    "[ca] passphrase_file in the configuration");
	if ((fd = open(file, O_RDONLY | O_NOCTTY | O_CLOEXEC)) == -1)
		return ctl_fail(ctl, CTL_EX_NOINPUT, "%s: %s", file,
		    strerror(errno));
	for (;;) {
		n = read(fd, chunk, sizeof(chunk));
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		if (buf_append(pass, chunk, (size_t)n) != 0)
			break;	/* longer than a passphrase may be */
		if (memchr(chunk, '\n', (size_t)n) != NULL)
			break;
	}
	sodium_memzero(chunk, sizeof(chunk));
	close(fd);
	if (n < 0)
		return ctl_fail(ctl, CTL_EX_NOINPUT, "%s: %s", file,
		    strerror(errno));
	len = strcspn(buf_str(pass) != NULL ? buf_str(pass) : "", "\r\n");
	if (len > GOVCA_PASSPHRASE_MAX)
		return ctl_fail(ctl, CTL_EX_DATAERR, "%s: passphrase longer "
		    "than %d bytes", file, GOVCA_PASSPHRASE_MAX);
	if (len == 0)
		return ctl_fail(ctl, CTL_EX_DATAERR, "%s: empty passphrase",
		    file);
	buf_truncate(pass, len);
	return CTL_EX_OK;
}

int
ctl_cert_begin(struct ctl *ctl, const char *p12_path,
    struct ctl_cert **cert_r)
{
	struct govca_settings settings;
	struct ctl_cert *cert;
	const char *error = NULL, *dir;
	struct buf pass;
	int rc;

	*cert_r = NULL;
	if ((rc = ctl_config(ctl)) != 0)
		return rc;
	memset(&settings, 0, sizeof(settings));
	settings.base_url = config_str(ctl->cfg, "ca", "base_url");
	settings.validity_days = (unsigned)config_uint(ctl->cfg, "ca",
	    "validity_days");
	settings.crl_days = (unsigned)config_uint(ctl->cfg, "ca", "crl_days");
	settings.name = config_str(ctl->cfg, "ca", "name");
	if (govca_key_type_parse(config_str(ctl->cfg, "ca", "key_type"),
	    &settings.key_type) != 0)
		return ctl_fail(ctl, CTL_EX_CONFIG, "[ca] key_type: p256, "
		    "p384, rsa2048 or rsa3072");
	dir = config_path_get(ctl->cfg, "ca", "dir");

	if ((rc = ctl_cert_passphrase(ctl, &pass)) != 0) {
		buf_free(&pass);
		return rc;
	}
	cert = xcalloc(1, sizeof(*cert));
	cert->fd = -1;
	rc = govca_open(dir, &settings, buf_str(&pass), GOVCA_OPEN_KEYS,
	    &cert->ca, &error);
	buf_free(&pass);
	if (rc != 0) {
		free(cert);
		return ctl_fail(ctl, CTL_EX_UNAVAILABLE, "cannot open the CA "
		    "%s: %s", dir, error != NULL ? error : "failed");
	}
	/* SECURITY: a new file of our own, 0600, never through a link. */
	cert->fd = open(p12_path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW |
	    O_CLOEXEC, 0600);
	if (cert->fd == -1) {
		rc = ctl_fail(ctl, CTL_EX_CANTCREAT, "%s: %s", p12_path,
		    strerror(errno));
		govca_close(cert->ca);
		free(cert);
		return rc;
	}
	cert->path = xstrdup(p12_path);
	*cert_r = cert;
	return CTL_EX_OK;
}

static int
ctl_cert_profile(enum store_class class, enum govca_profile *p_r)
{
	switch (class) {
	case STORE_CLASS_OFFICIAL:
		*p_r = GOVCA_PROFILE_OFFICIAL;
		return 0;
	case STORE_CLASS_DEPARTMENT:
		*p_r = GOVCA_PROFILE_DEPARTMENT;
		return 0;
	case STORE_CLASS_LEGAL_PERSON:
		*p_r = GOVCA_PROFILE_LEGAL_PERSON;
		return 0;
	case STORE_CLASS_CITIZEN:
		*p_r = GOVCA_PROFILE_CITIZEN;
		return 0;
	}
	return -1;
}

static int
ctl_cert_write(int fd, const uint8_t *data, size_t len)
{
	ssize_t n;

	while (len > 0) {
		n = write(fd, data, len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return -1;
		data += n;
		len -= (size_t)n;
	}
	return fsync(fd);
}

int
ctl_cert_issue(struct ctl *ctl, struct ctl_cert *cert,
    const struct store_account_spec *spec)
{
	struct govca_holder holder;
	struct govca_issued iss;
	char password[GOVCA_P12_PASSWORD_LEN + 1];
	const char *error = NULL, *why;
	struct buf p12;
	int rc;

	memset(&holder, 0, sizeof(holder));
	memset(&iss, 0, sizeof(iss));
	holder.address = spec->address;
	if (ctl_cert_profile(spec->class, &holder.profile) != 0)
		return ctl_fail(ctl, CTL_EX_SOFTWARE, "no certificate "
		    "profile for this class");
	holder.display_name = spec->display_name;
	holder.organisation = spec->organisation;
	holder.org_id = spec->org_id;
	holder.title = spec->title;
	holder.legacy_code = spec->legacy_code;
	holder.resident_id = spec->resident_id;
	/* A citizen seen in person gets an individual-validated
	   certificate, the others a mailbox-validated one. */
	holder.unverified = spec->class == STORE_CLASS_CITIZEN &&
	    !spec->identity_verified;

	buf_init(&p12, CTL_P12_MAX);
	p12.secret = 1;
	if (govca_issue_generate(cert->ca, &holder, 0, 0, &p12, password,
	    &iss, &error) != 0) {
		buf_free(&p12);
		return ctl_fail(ctl, CTL_EX_DATAERR, "%s: certificate not "
		    "issued, account not created: %s", spec->address,
		    error != NULL ? error : "failed");
	}
	why = NULL;
	if (ctl_cert_write(cert->fd, p12.data, p12.len) != 0)
		why = strerror(errno);
	else if ((rc = store_account_set_cert(ctl->store, spec->address,
	    iss.serial, &error)) != 0)
		why = error != NULL ? error : store_strerror(rc);
	buf_free(&p12);
	if (why != NULL) {
		/* The key is lost with the file: the certificate must go. */
		(void)govca_revoke(cert->ca, iss.serial,
		    GOVCA_REASON_CESSATION, &error);
		rc = ctl_fail(ctl, CTL_EX_CANTCREAT, "%s: certificate %s "
		    "revoked, account not created: %s", spec->address,
		    iss.serial, why);
		sodium_memzero(password, sizeof(password));
		govca_issued_free(&iss);
		return rc;
	}
	cert->issued = 1;
	printf("serial %s\npkcs12 %s\n", iss.serial, cert->path);
	/* Shown once: nobody keeps a copy. */
	printf("password %s\n", password);
	sodium_memzero(password, sizeof(password));
	govca_issued_free(&iss);
	return CTL_EX_OK;
}

void
ctl_cert_end(struct ctl_cert *cert)
{
	if (cert == NULL)
		return;
	if (cert->fd != -1)
		close(cert->fd);
	if (!cert->issued && cert->path != NULL)
		unlink(cert->path);
	govca_close(cert->ca);
	free(cert->path);
	free(cert);
}
