/*
 * test_imap_thread.c - unit tests for imapd/imap_thread.c: RFC 5256 base
 * subjects, THREAD=ORDEREDSUBJECT and THREAD=REFERENCES (the id table,
 * placeholders for missing parents, loops refused, pruning, subject
 * merging, date order), table-driven with hand-made mailboxes; a reference
 * chain as long as a big mailbox (no recursion), the reference cap and the
 * loop-check budget at N and N+1.
 */
#include "autoconf.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "buf.h"
#include "imap_thread.h"
#include "xmalloc.h"

/* ---- base subject ---- */

static const struct {
	const char *in;
	const char *base;
	int reply;
} subjects[] = {
	{ NULL, "", 0 },
	{ "", "", 0 },
	{ "hello", "HELLO", 0 },
	{ "Re: hello", "HELLO", 1 },
	{ "RE:  Re: [list] hello (fwd)", "HELLO", 1 },
	{ "[list] Re: hello", "HELLO", 1 },
	{ "[list] hello", "HELLO", 0 },
	{ "[x]", "[X]", 0 },
	{ "[fwd: Re: x]", "X", 1 },
	{ "Fw: a", "A", 1 },
	{ "Fwd[2]: a", "A", 1 },
	{ "re [3] : a", "A", 1 },
	{ "Re:", "", 1 },
	{ "  spaced \t  out  ", "SPACED OUT", 0 },
	{ "Reply to you", "REPLY TO YOU", 0 },
	{ "Re hello", "RE HELLO", 0 },
	{ "hello (fwd) (fwd)", "HELLO", 1 },
	{ "hello (FWD)", "HELLO", 1 },
	{ "Re: Fwd: [a] [b] Re: x", "X", 1 },
	{ "中文 Re: x", "中文 RE: X", 0 },
};

static void
test_base_subject(void **state)
{
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(subjects) / sizeof(subjects[0]); i++) {
		int reply = -1;
		char *b = imap_base_subject(subjects[i].in, &reply);

		if (strcmp(b, subjects[i].base) != 0 ||
		    reply != subjects[i].reply)
			fail_msg("case %zu %s: got \"%s\" reply %d", i,
			    subjects[i].in != NULL ? subjects[i].in : "NULL",
			    b, reply);
		free(b);
	}
}

/* ---- threading tables ---- */

#define M_MAX 8

struct tmsg {
	uint32_t id;
	int64_t date;
	const char *mid, *refs, *irt, *subj;
};

static const struct tcase {
	const char *name;
	enum imap_thread_algo algo;
	struct tmsg m[M_MAX];
	const char *want;
} cases[] = {
	/* ---- REFERENCES ---- */
	{ "chain", IMAP_THREAD_REFERENCES, {
	    { 1, 1, "<a@x>", NULL, NULL, "s" },
	    { 2, 2, "<b@x>", "<a@x>", NULL, "Re: s" },
	    { 3, 3, "<c@x>", "<a@x> <b@x>", NULL, "Re: s" } },
	  "(1 2 3)" },
	{ "siblings by date", IMAP_THREAD_REFERENCES, {
	    { 1, 1, "<a@x>", NULL, NULL, "s" },
	    { 2, 9, "<b@x>", NULL, "<a@x>", "Re: s" },
	    { 3, 5, "<c@x>", NULL, "<a@x>", "Re: s" } },
	  "(1 (3)(2))" },
	{ "missing parent: placeholder root", IMAP_THREAD_REFERENCES, {
	    { 2, 2, "<b@x>", "<gone@x>", NULL, "Re: s" },
	    { 3, 3, "<c@x>", "<gone@x>", NULL, "Re: s" } },
	  "((2)(3))" },
	{ "missing parent, one child: promoted", IMAP_THREAD_REFERENCES, {
	    { 1, 1, "<b@x>", "<gone@x>", NULL, "Re: s" } },
	  "(1)" },
	{ "missing middle: pruned", IMAP_THREAD_REFERENCES, {
	    { 1, 1, "<a@x>", NULL, NULL, "s" },
	    { 3, 3, "<c@x>", "<a@x> <gone@x>", NULL, "Re: s" } },
	  "(1 3)" },
	{ "missing middle with two children", IMAP_THREAD_REFERENCES, {
	    { 1, 1, "<a@x>", NULL, NULL, "s" },
	    { 3, 3, "<c@x>", "<a@x> <gone@x>", NULL, "Re: s" },
	    { 4, 2, "<d@x>", "<a@x> <gone@x>", NULL, "Re: s" } },
	  "(1 (4)(3))" },
	{ "loop refused", IMAP_THREAD_REFERENCES, {
	    { 1, 1, "<a@x>", "<b@x>", NULL, "p" },
	    { 2, 2, "<b@x>", "<a@x>", NULL, "q" } },
	  "(2 1)" },
	/*
	 * b -> c is linked, c -> b would close a loop; a goes under b.  c's
	 * own header (no references) then makes it a root again (step 1C).
	 */
	{ "loop inside References", IMAP_THREAD_REFERENCES, {
	    { 1, 1, "<a@x>", "<b@x> <c@x> <b@x>", NULL, "p" },
	    { 2, 2, "<b@x>", NULL, NULL, "q" },
	    { 3, 3, "<c@x>", NULL, NULL, "r" } },
	  "(2 1)(3)" },
	{ "loop inside References, parents known", IMAP_THREAD_REFERENCES, {
	    { 1, 1, "<b@x>", NULL, NULL, "q" },
	    { 2, 2, "<c@x>", "<b@x>", NULL, "r" },
	    { 3, 3, "<a@x>", "<b@x> <c@x> <b@x>", NULL, "p" } },
	  "(1 (2)(3))" },
	{ "self reference", IMAP_THREAD_REFERENCES, {
	    { 1, 1, "<a@x>", "<a@x>", "<a@x>", "s" } },
	  "(1)" },
	{ "duplicate Message-ID", IMAP_THREAD_REFERENCES, {
	    { 1, 1, "<a@x>", NULL, NULL, "one" },
	    { 2, 2, "<a@x>", NULL, NULL, "two" },
	    { 3, 3, "<c@x>", NULL, "<a@x>", "three" } },
	  "(1 3)(2)" },
	{ "no Message-ID", IMAP_THREAD_REFERENCES, {
	    { 1, 1, NULL, NULL, NULL, "one" },
	    { 2, 2, "", "<gone@x>", NULL, "two" } },
	  "(1)(2)" },
	{ "References before In-Reply-To", IMAP_THREAD_REFERENCES, {
	    { 1, 1, "<a@x>", NULL, NULL, "one" },
	    { 2, 2, "<b@x>", NULL, NULL, "two" },
	    { 3, 3, "<c@x>", "<a@x>", "<b@x>", "three" } },
	  "(1 3)(2)" },
	{ "garbage References: In-Reply-To", IMAP_THREAD_REFERENCES, {
	    { 1, 1, "<a@x>", NULL, NULL, "one" },
	    { 2, 2, "<b@x>", "foo <> <broken bar", "x <a@x> y", "two" } },
	  "(1 2)" },
	/* c's References put d under a; d's own header moves it under b. */
	{ "the message's own References win", IMAP_THREAD_REFERENCES, {
	    { 1, 1, "<a@x>", NULL, NULL, "one" },
	    { 2, 2, "<b@x>", NULL, NULL, "two" },
	    { 3, 3, "<c@x>", "<a@x> <d@x>", NULL, "three" },
	    { 4, 4, "<d@x>", "<b@x>", NULL, "four" } },
	  "(1)(2 4 3)" },
	{ "subject merge: Re: x under x", IMAP_THREAD_REFERENCES, {
	    { 1, 1, "<a@x>", NULL, NULL, "x" },
	    { 2, 2, "<b@x>", NULL, NULL, "Re: x" } },
	  "(1 2)" },
	{ "subject merge misordered", IMAP_THREAD_REFERENCES, {
	    { 1, 1, "<a@x>", NULL, NULL, "Re: x" },
	    { 2, 2, "<b@x>", NULL, NULL, "x" } },
	  "(2 1)" },
	{ "subject merge: two originals are siblings", IMAP_THREAD_REFERENCES, {
	    { 1, 1, "<a@x>", NULL, NULL, "x" },
	    { 2, 2, "<b@x>", NULL, NULL, "X" } },
	  "((1)(2))" },
	{ "subject merge: two replies are siblings", IMAP_THREAD_REFERENCES, {
	    { 1, 1, "<a@x>", NULL, NULL, "Re: x" },
	    { 2, 2, "<b@x>", NULL, NULL, "Fwd: x" },
	    { 3, 3, "<c@x>", NULL, NULL, "Re: x" } },
	  "((1)(2)(3))" },
	{ "subject merge into a placeholder root", IMAP_THREAD_REFERENCES, {
	    { 2, 2, "<b@x>", "<gone@x>", NULL, "y" },
	    { 3, 3, "<c@x>", "<gone@x>", NULL, "Re: y" },
	    { 4, 4, "<d@x>", NULL, NULL, "y" } },
	  "((2)(3)(4))" },
	{ "two placeholder roots merge", IMAP_THREAD_REFERENCES, {
	    { 1, 1, "<a@x>", "<g1@x>", NULL, "y" },
	    { 2, 2, "<b@x>", "<g1@x>", NULL, "y" },
	    { 3, 3, "<c@x>", "<g2@x>", NULL, "Re: y" },
	    { 4, 4, "<d@x>", "<g2@x>", NULL, "Re: y" } },
	  "((1)(2)(3)(4))" },
	{ "empty subjects are not merged", IMAP_THREAD_REFERENCES, {
	    { 1, 1, "<a@x>", NULL, NULL, "" },
	    { 2, 2, "<b@x>", NULL, NULL, "Re:" } },
	  "(1)(2)" },
	{ "subject merge of a forwarded one", IMAP_THREAD_REFERENCES, {
	    { 1, 1, "<a@x>", NULL, NULL, "x" },
	    { 2, 2, "<b@x>", NULL, NULL, "[fwd: x]" } },
	  "(1 2)" },
	{ "roots by date, ties by sequence", IMAP_THREAD_REFERENCES, {
	    { 1, 30, "<a@x>", NULL, NULL, "p" },
	    { 2, 10, "<b@x>", NULL, NULL, "q" },
	    { 3, 20, "<c@x>", NULL, NULL, "r" },
	    { 4, 20, "<d@x>", NULL, NULL, "s" } },
	  "(2)(3)(4)(1)" },
	{ "a placeholder sorts by its first child", IMAP_THREAD_REFERENCES, {
	    { 1, 50, "<a@x>", NULL, NULL, "p" },
	    { 2, 60, "<b@x>", "<gone@x>", NULL, "q" },
	    { 3, 40, "<c@x>", "<gone@x>", NULL, "q" } },
	  "((3)(2))(1)" },
	{ "deep thread with a fork", IMAP_THREAD_REFERENCES, {
	    { 1, 1, "<a@x>", NULL, NULL, "s" },
	    { 2, 2, "<b@x>", "<a@x>", NULL, "s" },
	    { 3, 3, "<c@x>", "<a@x> <b@x>", NULL, "s" },
	    { 4, 4, "<d@x>", "<a@x> <b@x>", NULL, "s" },
	    { 5, 5, "<e@x>", "<a@x> <b@x> <d@x>", NULL, "s" } },
	  "(1 2 (3)(4 5))" },
	/* ---- ORDEREDSUBJECT ---- */
	{ "orderedsubject", IMAP_THREAD_ORDEREDSUBJECT, {
	    { 1, 1, NULL, NULL, NULL, "a" },
	    { 2, 2, NULL, NULL, NULL, "Re: a" },
	    { 3, 3, NULL, NULL, NULL, "b" },
	    { 4, 4, NULL, NULL, NULL, "A" },
	    { 5, 5, NULL, NULL, NULL, "Fwd: a" } },
	  "(1 (2)(4)(5))(3)" },
	{ "orderedsubject: two members", IMAP_THREAD_ORDEREDSUBJECT, {
	    { 1, 1, NULL, NULL, NULL, "a" },
	    { 2, 2, NULL, NULL, NULL, "Re: a" } },
	  "(1 2)" },
	{ "orderedsubject: earliest is the parent", IMAP_THREAD_ORDEREDSUBJECT, {
	    { 1, 5, NULL, NULL, NULL, "a" },
	    { 2, 1, NULL, NULL, NULL, "re: a" },
	    { 3, 3, NULL, NULL, NULL, "b" } },
	  "(2 1)(3)" },
	{ "orderedsubject ignores references", IMAP_THREAD_ORDEREDSUBJECT, {
	    { 1, 1, "<a@x>", NULL, NULL, "a" },
	    { 2, 2, "<b@x>", "<a@x>", NULL, "b" } },
	  "(1)(2)" },
	{ "orderedsubject: empty subjects thread", IMAP_THREAD_ORDEREDSUBJECT, {
	    { 1, 1, NULL, NULL, NULL, NULL },
	    { 2, 2, NULL, NULL, NULL, "" } },
	  "(1 2)" },
};

static void
test_thread_table(void **state)
{
	size_t i, k;

	(void)state;
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct imap_thread_msg msgs[M_MAX];
		struct buf out;
		size_t n = 0;

		memset(msgs, 0, sizeof(msgs));
		for (k = 0; k < M_MAX && cases[i].m[k].id != 0; k++) {
			msgs[k].id = cases[i].m[k].id;
			msgs[k].date = cases[i].m[k].date;
			msgs[k].message_id = cases[i].m[k].mid;
			msgs[k].references = cases[i].m[k].refs;
			msgs[k].in_reply_to = cases[i].m[k].irt;
			msgs[k].subject = cases[i].m[k].subj;
			n++;
		}
		buf_init(&out, BUF_UNBOUNDED);
		imap_thread_run(cases[i].algo, msgs, n, &out);
		if (strcmp(buf_str(&out) != NULL ? buf_str(&out) : "",
		    cases[i].want) != 0)
			fail_msg("%s: got %s want %s", cases[i].name,
			    buf_str(&out), cases[i].want);
		buf_free(&out);
	}
}

static void
test_thread_empty(void **state)
{
	struct buf out;

	(void)state;
	buf_init(&out, BUF_UNBOUNDED);
	imap_thread_run(IMAP_THREAD_REFERENCES, NULL, 0, &out);
	imap_thread_run(IMAP_THREAD_ORDEREDSUBJECT, NULL, 0, &out);
	assert_int_equal(out.len, 0);
	buf_free(&out);
}

/* A chain as long as a big mailbox: no recursion anywhere. */
#define LONG_CHAIN 20000

static void
test_thread_long_chain(void **state)
{
	struct imap_thread_msg *m = xcalloc(LONG_CHAIN, sizeof(*m));
	char **ids = xcalloc(LONG_CHAIN, sizeof(char *));
	struct buf out, want;
	size_t i;

	(void)state;
	buf_init(&want, BUF_UNBOUNDED);
	(void)buf_append_byte(&want, '(');
	for (i = 0; i < LONG_CHAIN; i++) {
		ids[i] = xasprintf("<m%zu@x>", i);
		m[i].id = (uint32_t)i + 1;
		m[i].date = (int64_t)i;
		m[i].message_id = ids[i];
		m[i].in_reply_to = i > 0 ? ids[i - 1] : NULL;
		m[i].subject = "Re: long";
		(void)buf_printf(&want, i > 0 ? " %zu" : "%zu", i + 1);
	}
	(void)buf_append_byte(&want, ')');
	buf_init(&out, BUF_UNBOUNDED);
	imap_thread_run(IMAP_THREAD_REFERENCES, m, LONG_CHAIN, &out);
	assert_int_equal(out.len, want.len);
	assert_memory_equal(out.data, want.data, want.len);
	/* Reversed arrival: every message names its parent before it comes. */
	buf_reset(&out);
	for (i = 0; i < LONG_CHAIN / 2; i++) {
		struct imap_thread_msg t = m[i];

		m[i] = m[LONG_CHAIN - 1 - i];
		m[LONG_CHAIN - 1 - i] = t;
	}
	imap_thread_run(IMAP_THREAD_REFERENCES, m, LONG_CHAIN, &out);
	assert_int_equal(out.len, want.len);
	assert_memory_equal(out.data, want.data, want.len);
	buf_free(&out);
	buf_free(&want);
	for (i = 0; i < LONG_CHAIN; i++)
		free(ids[i]);
	free(ids);
	free(m);
}

/*
 * IMAP_THREAD_REFS_MAX: of a References header with more ids, only the
 * last ones are linked (N-1, N, N+1 ids before the parent).
 */
static void
test_thread_refs_cap(void **state)
{
	int extra;

	(void)state;
	for (extra = -1; extra <= 1; extra++) {
		struct imap_thread_msg m[2];
		struct buf refs, out;
		size_t nrefs = (size_t)(IMAP_THREAD_REFS_MAX + extra), i;
		const char *want;

		/* ids 0 .. nrefs-2 are unknown, the last is message 1. */
		buf_init(&refs, BUF_UNBOUNDED);
		for (i = 0; i + 1 < nrefs; i++)
			(void)buf_printf(&refs, "<g%zu@x> ", i);
		(void)buf_append_str(&refs, "<root@x>");
		memset(m, 0, sizeof(m));
		m[0].id = 1;
		m[0].date = 1;
		m[0].message_id = "<root@x>";
		m[0].subject = "a";
		m[1].id = 2;
		m[1].date = 2;
		m[1].message_id = "<kid@x>";
		m[1].references = buf_str(&refs);
		m[1].subject = "b";
		buf_init(&out, BUF_UNBOUNDED);
		imap_thread_run(IMAP_THREAD_REFERENCES, m, 2, &out);
		/*
		 * Message 1 is the last reference: always the parent.  The
		 * unknown ids form a placeholder chain above it, pruned.
		 */
		want = "(1 2)";
		if (strcmp(buf_str(&out), want) != 0)
			fail_msg("%zu refs: got %s", nrefs, buf_str(&out));
		buf_free(&out);
		buf_free(&refs);
	}
}

/* Hostile headers: every message names every other; output stays valid. */
static void
test_thread_hostile(void **state)
{
	enum { N = 40 };
	struct imap_thread_msg m[N];
	char *ids[N];
	struct buf all, out;
	size_t i, depth = 0, opens = 0, closes = 0;

	(void)state;
	buf_init(&all, BUF_UNBOUNDED);
	for (i = 0; i < N; i++) {
		ids[i] = xasprintf("<h%zu@x>", (i * 7) % N);
		(void)buf_printf(&all, "%s ", ids[i]);
	}
	for (i = 0; i < N; i++) {
		memset(&m[i], 0, sizeof(m[i]));
		m[i].id = (uint32_t)i + 1;
		m[i].date = (int64_t)(i % 5);
		m[i].message_id = ids[i];
		m[i].references = buf_str(&all);
		m[i].in_reply_to = ids[(i + 1) % N];
		m[i].subject = i % 2 ? "Re: h" : "h";
	}
	buf_init(&out, BUF_UNBOUNDED);
	imap_thread_run(IMAP_THREAD_REFERENCES, m, N, &out);
	for (i = 0; i < out.len; i++) {
		if (out.data[i] == '(') {
			opens++;
			depth++;
		} else if (out.data[i] == ')') {
			closes++;
			assert_true(depth > 0);
			depth--;
		}
	}
	assert_int_equal(opens, closes);
	assert_true(opens > 0);
	/* Every message appears exactly once. */
	for (i = 1; i <= N; i++) {
		char needle[16];
		const char *p = (const char *)buf_str(&out);
		size_t hits = 0, len;

		len = (size_t)snprintf(needle, sizeof(needle), "%zu", i);
		while ((p = strstr(p, needle)) != NULL) {
			if ((p == (const char *)out.data || p[-1] == '(' ||
			    p[-1] == ' ') && (p[len] == ')' || p[len] == ' '))
				hits++;
			p += len;
		}
		assert_int_equal(hits, 1);
	}
	buf_free(&out);
	buf_free(&all);
	for (i = 0; i < N; i++)
		free(ids[i]);
}

/*
 * IMAP_THREAD_WALK_MAX: a chain DEEP messages deep, then placeholders with
 * children linked under its end, each link a walk of exactly DEEP steps.
 * With budget / DEEP such links all succeed (one thread); one more is
 * refused (a second thread) -- and the output stays valid.
 */
#define DEEP 5000

static size_t
top_threads(const struct buf *out)
{
	size_t i, depth = 0, n = 0;

	for (i = 0; i < out->len; i++) {
		if (out->data[i] == '(') {
			if (depth++ == 0)
				n++;
		} else if (out->data[i] == ')')
			depth--;
	}
	return n;
}

static void
test_thread_walk_budget(void **state)
{
	size_t walks = IMAP_THREAD_WALK_MAX / DEEP, extra;

	(void)state;
	for (extra = 0; extra <= 1; extra++) {
		size_t nz = walks + extra, n = DEEP + 2 * nz, i, k = 0;
		struct imap_thread_msg *m = xcalloc(n, sizeof(*m));
		char **str = xcalloc(3 * n, sizeof(char *));
		size_t ns = 0;
		struct buf out;

		for (i = 0; i < DEEP; i++, k++) {
			m[k].id = (uint32_t)k + 1;
			m[k].date = (int64_t)k;
			m[k].message_id = str[ns++] = xasprintf("<m%zu@x>", i);
			if (i > 0)
				m[k].in_reply_to = m[k - 1].message_id;
		}
		for (i = 0; i < nz; i++, k++) {
			m[k].id = (uint32_t)k + 1;
			m[k].date = (int64_t)k;
			m[k].message_id = str[ns++] = xasprintf("<k%zu@x>", i);
			m[k].in_reply_to = str[ns++] = xasprintf("<w%zu@x>",
			    i);
		}
		for (i = 0; i < nz; i++, k++) {
			m[k].id = (uint32_t)k + 1;
			m[k].date = (int64_t)k;
			m[k].message_id = str[ns++] = xasprintf("<z%zu@x>", i);
			m[k].references = str[ns++] = xasprintf(
			    "<m%d@x> <w%zu@x>", DEEP - 1, i);
		}
		buf_init(&out, BUF_UNBOUNDED);
		imap_thread_run(IMAP_THREAD_REFERENCES, m, n, &out);
		assert_int_equal(top_threads(&out), 1 + extra);
		buf_free(&out);
		for (i = 0; i < ns; i++)
			free(str[i]);
		free(str);
		free(m);
	}
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_base_subject),
		cmocka_unit_test(test_thread_table),
		cmocka_unit_test(test_thread_empty),
		cmocka_unit_test(test_thread_long_chain),
		cmocka_unit_test(test_thread_refs_cap),
		cmocka_unit_test(test_thread_hostile),
		cmocka_unit_test(test_thread_walk_budget),
	};

	return cmocka_run_group_tests_name("imap_thread", tests, NULL, NULL);
}
