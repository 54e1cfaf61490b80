/*
 * config_keys.c - every key govmail.conf may hold, with type, default and
 * the line govmail.conf(5) shows.  A test checks that each key here is
 * documented in doc/govmail.conf.5.  Parts add their rows to their own
 * section's block; keep each block in the order the man page shows.
 */
#include "autoconf.h"

#include <stddef.h>

#include "config.h"

const struct config_key config_keys[] = {
	/* ---- [store]: the Berkeley DB environment (mailbox/) ---- */
	{ "store", "path", CONFIG_PATH, "/var/lib/govmail/store",
	  "folder of the Berkeley DB environment holding all mail" },
	{ "store", "cache_size", CONFIG_SIZE, "64M",
	  "Berkeley DB memory pool size" },
	{ "store", "key_file", CONFIG_PATH, "",
	  "32-byte store key (mode 0600) for encryption at rest; empty: off" },
	{ "store", "id_key_file", CONFIG_PATH, "",
	  "key for the keyed hash of resident ID numbers; empty: id.key in the store folder, made on first use" },
	{ "store", "max_processes", CONFIG_UINT, "512",
	  "most processes and threads using the environment at once (failchk table)" },
	{ "store", "checkpoint_interval", CONFIG_DURATION, "60s",
	  "how often store_maintain() checkpoints and removes old logs" },
	{ "store", "password_opslimit", CONFIG_UINT, "2",
	  "Argon2id passes for new password hashes (crypto_pwhash opslimit)" },
	{ "store", "password_memlimit", CONFIG_SIZE, "64M",
	  "Argon2id memory for new password hashes (crypto_pwhash memlimit)" },
	{ "store", "auth_cache_ttl", CONFIG_DURATION, "300s",
	  "how long a successful password check is remembered in memory; 0: never" },
	{ "store", "log_level", CONFIG_STR, "info",
	  "err, warn, info or debug" },

	/* ---- [limits]: sizes and counts every part enforces ---- */
	{ "limits", "quota_bytes", CONFIG_SIZE, "1G",
	  "default mailbox quota of a new account, bytes" },
	{ "limits", "quota_messages", CONFIG_UINT, "100000",
	  "default quota of a new account, messages" },
	{ "limits", "message_size", CONFIG_SIZE, "50M",
	  "largest message accepted by delivery, submission and APPEND" },
	{ "limits", "auth_failures", CONFIG_UINT, "10",
	  "failed logins per client address (IPv6: per /64) within auth_failure_window before AUTH is refused, per worker; 0: no limit" },
	{ "limits", "auth_failure_window", CONFIG_DURATION, "15m",
	  "how long failed logins count against an address" },

	/* ---- [smtpd]: govmail-smtpd (smtpd/) ---- */
	{ "smtpd", "hostname", CONFIG_STR, "",
	  "name in the greeting and in Received: headers; empty: the system host name" },
	{ "smtpd", "listen_smtp", CONFIG_STR, "*:25",
	  "addresses for inbound SMTP with STARTTLS (HOST:PORT, space-separated; *: all); empty: none" },
	{ "smtpd", "listen_submission", CONFIG_STR, "*:587",
	  "addresses for submission (RFC 6409): AUTH after STARTTLS; empty: none" },
	{ "smtpd", "listen_submissions", CONFIG_STR, "*:465",
	  "addresses for submission over implicit TLS (RFC 8314); empty: none" },
	{ "smtpd", "workers", CONFIG_UINT, "0",
	  "worker processes; 0: one per CPU" },
	{ "smtpd", "threads", CONFIG_UINT, "2",
	  "helper threads per worker for password checks and deliveries (1..32)" },
	{ "smtpd", "user", CONFIG_STR, "govmail",
	  "unprivileged user the workers run as when started by root" },
	{ "smtpd", "pid_file", CONFIG_PATH, "",
	  "file the parent writes its process id to; empty: none" },
	{ "smtpd", "max_recipients", CONFIG_UINT, "1000",
	  "RCPT commands accepted per message (RFC 5321 requires at least 100)" },
	{ "smtpd", "max_errors", CONFIG_UINT, "10",
	  "refused commands per session before it is disconnected; 0: no limit" },
	{ "smtpd", "command_timeout", CONFIG_DURATION, "5m",
	  "idle time allowed between commands or data bytes (RFC 5321 4.5.3.2)" },
	{ "smtpd", "session_timeout", CONFIG_DURATION, "1h",
	  "longest session, whatever it does" },
	{ "smtpd", "rate_messages", CONFIG_UINT, "100",
	  "messages per minute one authenticated account may submit, per worker; 0: no limit" },
	{ "smtpd", "rate_ip_messages", CONFIG_UINT, "300",
	  "messages per minute accepted from one client address, per worker; 0: no limit" },
	{ "smtpd", "plaintext_auth_loopback", CONFIG_BOOL, "no",
	  "allow AUTH PLAIN/LOGIN without TLS from loopback addresses (development only)" },

	/* ---- [imapd]: govmail-imapd (imapd/) ---- */
	{ "imapd", "listen_imap", CONFIG_STR, "127.0.0.1:143",
	  "addresses (host:port, space-separated) for IMAP with STARTTLS; empty: none" },
	{ "imapd", "listen_imaps", CONFIG_STR, "127.0.0.1:993",
	  "addresses (host:port, space-separated) for IMAP over implicit TLS; empty: none" },
	{ "imapd", "workers", CONFIG_UINT, "0",
	  "worker processes of govmail-imapd; 0: one per CPU" },
	{ "imapd", "pid_file", CONFIG_PATH, "",
	  "file govmail-imapd writes its pid into; empty: none" },
	{ "imapd", "plaintext_loopback", CONFIG_BOOL, "no",
	  "allow LOGIN and AUTHENTICATE without TLS from loopback clients (development)" },
	{ "imapd", "login_timeout", CONFIG_DURATION, "60s",
	  "idle time before an unauthenticated connection is closed" },
	{ "imapd", "idle_timeout", CONFIG_DURATION, "30m",
	  "idle time before an authenticated connection is closed (RFC 3501: at least 30 minutes)" },
	{ "imapd", "auth_threads", CONFIG_UINT, "2",
	  "helper threads per worker for password checks (Argon2id)" },

	/* ---- [ca]: the certificate authority (ca/, govmail-ca) ---- */
	{ "ca", "dir", CONFIG_PATH, "/var/lib/govmail/ca",
	  "folder of the certificate authority: keys, certificates, certificate database, audit log" },
	{ "ca", "base_url", CONFIG_STR, "http://127.0.0.1:2080",
	  "http URL of the PKI repository written into certificates (CRL DP, AIA)" },
	{ "ca", "listen", CONFIG_STR, "127.0.0.1:2080",
	  "address and port govmail-ca serve listens on" },
	{ "ca", "threads", CONFIG_UINT, "2",
	  "threads of govmail-ca serve's HTTP thread pool" },
	{ "ca", "validity_days", CONFIG_UINT, "730",
	  "default validity of an end-entity certificate, days (at most 824)" },
	{ "ca", "key_type", CONFIG_STR, "p256",
	  "key made by issue --generate: p256, p384, rsa2048 or rsa3072" },
	{ "ca", "crl_days", CONFIG_UINT, "7",
	  "days from a CRL's thisUpdate to its nextUpdate (1..7)" },
	{ "ca", "name", CONFIG_STR, "govmail",
	  "name of the CA in its certificates' subjects" },
	{ "ca", "passphrase_file", CONFIG_PATH, "",
	  "file holding the passphrase of the CA keys; empty: --passphrase-file or a prompt" },

	/* ---- [tls]: certificates and protocol settings (lib/tls.c) ---- */
	{ "tls", "cert_file", CONFIG_PATH, "",
	  "PEM file holding the server certificate followed by its chain" },
	{ "tls", "key_file", CONFIG_PATH, "",
	  "unencrypted PEM private key of cert_file, mode 0600" },
	{ "tls", "ca_file", CONFIG_PATH, "",
	  "trust anchors (PEM) for outbound TLS; empty: the system store" },
	{ "tls", "min_version", CONFIG_STR, "1.2",
	  "lowest TLS version accepted: 1.2 or 1.3" },
	{ "tls", "ciphers", CONFIG_STR, "ECDHE+AESGCM:ECDHE+CHACHA20",
	  "TLS 1.2 cipher list, OpenSSL syntax" },
	{ "tls", "ciphersuites", CONFIG_STR, "TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256",
	  "TLS 1.3 cipher suites, OpenSSL syntax" },

	{ NULL, NULL, CONFIG_STR, NULL, NULL },
};
