/*
 * imap_thread.h - the threading algorithms of RFC 5256 (THREAD=
 * ORDEREDSUBJECT and THREAD=REFERENCES) and its base-subject extraction,
 * as pure functions over an array of messages: no store, no session, so
 * the unit test links this file alone.
 *
 * govmail-imapd workers.  Every header value is untrusted: ids are taken
 * only from <...> tokens, at most IMAP_THREAD_REFS_MAX references per
 * message are used, links that would close a loop are refused, and trees
 * are walked with explicit stacks (a chain as long as the mailbox must not
 * recurse).
 */
#ifndef GOVMAIL_IMAP_THREAD_H
#define GOVMAIL_IMAP_THREAD_H

#include <stddef.h>
#include <stdint.h>

#include "buf.h"

/*
 * References of one message used for threading: the last (nearest) ones
 * of its References header.  Each unknown id costs a placeholder node, so
 * a mailbox of hostile messages with thousands of ids each must not cost
 * the worker more than this per message.
 */
#define IMAP_THREAD_REFS_MAX 64
/*
 * Steps spent walking up parent links to refuse loops, per run.  Real
 * threads cost about one step per message; a mailbox of crafted headers
 * could make it quadratic, so past this budget such links are refused
 * (the messages then start threads of their own).
 */
#define IMAP_THREAD_WALK_MAX 20000000
/* Longest message id taken, bytes including < and > (RFC 5322 allows
 * 998-byte lines; longer tokens are ignored). */
#define IMAP_THREAD_ID_MAX 998

struct imap_thread_msg {
	uint32_t id;		/* what is printed: a UID or sequence number */
	int64_t date;		/* sent date: Date:, else INTERNALDATE */
	const char *message_id;	/* raw header values, NULL when absent */
	const char *references;
	const char *in_reply_to;
	const char *subject;	/* decoded to UTF-8, NULL when absent */
};

enum imap_thread_algo {
	IMAP_THREAD_ORDEREDSUBJECT,
	IMAP_THREAD_REFERENCES,
};

/*
 * Thread msgs[0..n) (given in ascending sequence order, which breaks ties
 * of equal sent dates) and append the threads in RFC 5256 syntax to out:
 * "(1 2)(3 (4)(5))((6)(7))" -- a thread whose root is a missing message
 * (a placeholder kept by REFERENCES) has no number of its own.  Appends
 * nothing for n == 0.  Never fails (memory: xmalloc).
 */
void imap_thread_run(enum imap_thread_algo algo,
    const struct imap_thread_msg *msgs, size_t n, struct buf *out);

/*
 * RFC 5256 section 2.1 base subject of subject (NULL counts as ""), upper-
 * cased (ASCII; the i;unicode-casemap approximation used for SORT too), in
 * a fresh string the caller frees.  *is_reply_r (may be NULL) is set to 1
 * when a "Re:"/"Fw:"/"Fwd:" leader, a "(fwd)" trailer or a "[fwd: ...]"
 * wrapper was removed, else 0.
 */
char *imap_base_subject(const char *subject, int *is_reply_r);

#endif
