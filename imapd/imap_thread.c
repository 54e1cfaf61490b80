/*
 * imap_thread.c - RFC 5256 threading (see imap_thread.h): ORDEREDSUBJECT,
 * and REFERENCES with its six steps -- the id table with placeholder
 * (dummy) containers, parent/child links without loops, the root set,
 * pruning, grouping by base subject, sorting siblings by sent date.
 *
 * govmail-imapd workers.  Header values are untrusted: only <...> tokens
 * count as ids, references per message are capped, every traversal uses an
 * explicit stack or walks parent links bounded by the number of nodes.
 */
#include "autoconf.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "buf.h"
#include "imap_thread.h"
#include "xmalloc.h"

#define NONE SIZE_MAX

/* A container: a message, or a placeholder (msg == NONE). */
struct tnode {
	size_t msg;
	size_t parent, child, next;	/* first child, next sibling */
};

struct tctx {
	const struct imap_thread_msg *msgs;
	size_t nmsgs;
	struct tnode *nodes;
	size_t nnodes, cap;
	char **subj;		/* base subject per message */
	int *reply;
	size_t root;		/* the virtual parent of the root set */
	size_t walk_left;	/* loop-check steps left (would_loop) */
};

/* ---- a string table: (bytes, len) -> node, open addressing ---- */

struct tslot {
	const char *key;
	size_t len;
	size_t val;
};

struct ttable {
	struct tslot *slots;
	size_t cap, n;
};

static uint64_t
thash(const char *k, size_t len)
{
	uint64_t h = 1469598103934665603ULL;	/* FNV-1a */
	size_t i;

	for (i = 0; i < len; i++) {
		h ^= (uint8_t)k[i];
		h *= 1099511628211ULL;
	}
	return h;
}

static struct tslot *
ttable_find(struct ttable *t, const char *k, size_t len)
{
	size_t i;

	if (t->cap == 0)
		return NULL;
	i = (size_t)thash(k, len) & (t->cap - 1);
	while (t->slots[i].key != NULL) {
		if (t->slots[i].len == len && memcmp(t->slots[i].key, k,
		    len) == 0)
			return &t->slots[i];
		i = (i + 1) & (t->cap - 1);
	}
	return NULL;
}

static void
ttable_put(struct ttable *t, const char *k, size_t len, size_t val)
{
	size_t i;

	if (2 * (t->n + 1) > t->cap) {
		struct tslot *old = t->slots;
		size_t oldcap = t->cap, j;

		t->cap = t->cap == 0 ? 64 : xmul(t->cap, 2);
		t->slots = xcalloc(t->cap, sizeof(*t->slots));
		t->n = 0;
		for (j = 0; j < oldcap; j++)
			if (old[j].key != NULL)
				ttable_put(t, old[j].key, old[j].len,
				    old[j].val);
		free(old);
	}
	i = (size_t)thash(k, len) & (t->cap - 1);
	while (t->slots[i].key != NULL) {
		if (t->slots[i].len == len && memcmp(t->slots[i].key, k,
		    len) == 0) {
			t->slots[i].val = val;
			return;
		}
		i = (i + 1) & (t->cap - 1);
	}
	t->slots[i].key = k;
	t->slots[i].len = len;
	t->slots[i].val = val;
	t->n++;
}

/* ---- message ids ---- */

struct tid {
	const char *p;
	size_t len;
};

/*
 * The <...> tokens of a header value, at most max of them; with keep_last
 * the last max, else the first.  Returns the count.
 */
static size_t
ids_parse(const char *v, struct tid *out, size_t max, int keep_last)
{
	size_t n = 0;

	if (v == NULL)
		return 0;
	while ((v = strchr(v, '<')) != NULL) {
		const char *close = v + 1;

		while (*close != '\0' && *close != '>' && *close != '<' &&
		    *close != ' ' && *close != '\t' && *close != '\r' &&
		    *close != '\n')
			close++;
		if (*close != '>') {
			v = close;	/* not an id: go on from there */
			continue;
		}
		if (close - v > 1 && (size_t)(close - v + 1) <=
		    IMAP_THREAD_ID_MAX) {
			if (n == max) {
				if (!keep_last)
					break;
				memmove(out, out + 1, (max - 1) * sizeof(*out));
				n--;
			}
			out[n].p = v;
			out[n].len = (size_t)(close - v + 1);
			n++;
		}
		v = close + 1;
	}
	return n;
}

/* ---- containers ---- */

static size_t
node_new(struct tctx *c, size_t msg)
{
	struct tnode *x;

	if (c->nnodes == c->cap) {
		c->cap = c->cap == 0 ? 64 : xmul(c->cap, 2);
		c->nodes = xreallocarray(c->nodes, c->cap, sizeof(*c->nodes));
	}
	x = &c->nodes[c->nnodes];
	x->msg = msg;
	x->parent = x->child = x->next = NONE;
	return c->nnodes++;
}

static void
unlink_node(struct tctx *c, size_t x)
{
	size_t p = c->nodes[x].parent, *pp;

	if (p == NONE)
		return;
	for (pp = &c->nodes[p].child; *pp != NONE; pp = &c->nodes[*pp].next)
		if (*pp == x) {
			*pp = c->nodes[x].next;
			break;
		}
	c->nodes[x].parent = NONE;
	c->nodes[x].next = NONE;
}

/* Make x the first child of p (x must have no parent). */
static void
link_node(struct tctx *c, size_t p, size_t x)
{
	c->nodes[x].parent = p;
	c->nodes[x].next = c->nodes[p].child;
	c->nodes[p].child = x;
}

/*
 * 1 if making x a child of p would close a loop (x is p or above it).  A
 * childless x is above nothing, so the walk up from p is only needed for
 * a container that already has children; it costs at most the depth, and
 * all walks of one run share IMAP_THREAD_WALK_MAX steps: past that, links
 * that would need a walk are refused (only crafted headers get there).
 */
static int
would_loop(struct tctx *c, size_t p, size_t x)
{
	if (p == x)
		return 1;
	if (c->nodes[x].child == NONE)
		return 0;
	for (; p != NONE; p = c->nodes[p].parent) {
		if (c->walk_left == 0)
			return 1;
		c->walk_left--;
		if (p == x)
			return 1;
	}
	return 0;
}

/* The node of an id, a new placeholder if unknown. */
static size_t
node_for_id(struct tctx *c, struct ttable *ids, const struct tid *id)
{
	struct tslot *sl = ttable_find(ids, id->p, id->len);
	size_t x;

	if (sl != NULL)
		return sl->val;
	x = node_new(c, NONE);
	ttable_put(ids, id->p, id->len, x);
	return x;
}

/* Every node under x (x excluded), parents before their descendants. */
static size_t *
preorder(const struct tctx *c, size_t x, size_t *n_r)
{
	size_t *stack = xreallocarray(NULL, c->nnodes + 1, sizeof(size_t));
	size_t *out = xreallocarray(NULL, c->nnodes + 1, sizeof(size_t));
	size_t sp = 0, n = 0, k;

	for (k = c->nodes[x].child; k != NONE; k = c->nodes[k].next)
		stack[sp++] = k;
	while (sp > 0) {
		size_t y = stack[--sp];

		out[n++] = y;
		for (k = c->nodes[y].child; k != NONE; k = c->nodes[k].next)
			stack[sp++] = k;
	}
	free(stack);
	*n_r = n;
	return out;
}

/* The message that stands for x: itself, or a placeholder's first child. */
static size_t
node_msg(const struct tctx *c, size_t x)
{
	size_t steps = 0;

	while (x != NONE && c->nodes[x].msg == NONE && steps++ <= c->nnodes)
		x = c->nodes[x].child;
	return x == NONE ? NONE : c->nodes[x].msg;
}

/* RFC 5256 step 3: drop empty placeholders, promote their children. */
static void
prune(struct tctx *c)
{
	size_t n, i, *order = preorder(c, c->root, &n);

	/* Reversed: every node after its descendants. */
	for (i = n; i > 0; i--) {
		size_t x = order[i - 1], p = c->nodes[x].parent, k, nk = 0;

		if (c->nodes[x].msg != NONE)
			continue;
		for (k = c->nodes[x].child; k != NONE; k = c->nodes[k].next)
			nk++;
		if (nk == 0) {
			unlink_node(c, x);
			continue;
		}
		if (p == c->root && nk > 1)
			continue;	/* a placeholder root of siblings */
		unlink_node(c, x);
		while ((k = c->nodes[x].child) != NONE) {
			unlink_node(c, k);
			link_node(c, p, k);
		}
	}
	free(order);
}

struct skey {
	int64_t date;
	size_t msg;
	size_t node;
};

static int
skey_cmp(const void *pa, const void *pb)
{
	const struct skey *a = pa, *b = pb;

	if (a->date != b->date)
		return a->date < b->date ? -1 : 1;
	return a->msg < b->msg ? -1 : a->msg > b->msg;
}

/* Order x's children by sent date (a placeholder by its first child's). */
static void
sort_children(struct tctx *c, size_t x)
{
	struct skey *v;
	size_t n = 0, k, i;

	for (k = c->nodes[x].child; k != NONE; k = c->nodes[k].next)
		n++;
	if (n < 2)
		return;
	v = xreallocarray(NULL, n, sizeof(*v));
	for (i = 0, k = c->nodes[x].child; k != NONE; k = c->nodes[k].next) {
		size_t m = node_msg(c, k);

		v[i].msg = m;
		v[i].date = m == NONE ? 0 : c->msgs[m].date;
		v[i++].node = k;
	}
	qsort(v, n, sizeof(*v), skey_cmp);
	c->nodes[x].child = v[0].node;
	for (i = 0; i + 1 < n; i++)
		c->nodes[v[i].node].next = v[i + 1].node;
	c->nodes[v[n - 1].node].next = NONE;
	free(v);
}

/* Sort every set of siblings under x, the deepest first. */
static void
sort_all(struct tctx *c, size_t x)
{
	size_t n, i, *order = preorder(c, x, &n);

	for (i = n; i > 0; i--)
		sort_children(c, order[i - 1]);
	sort_children(c, x);
	free(order);
}

/* RFC 5256 step 5: gather the roots that share a base subject. */
static void
group_subjects(struct tctx *c)
{
	struct ttable subj = { NULL, 0, 0 };
	size_t *roots, nroots = 0, k, i;

	for (k = c->nodes[c->root].child; k != NONE; k = c->nodes[k].next)
		nroots++;
	roots = xreallocarray(NULL, nroots + 1, sizeof(size_t));
	for (i = 0, k = c->nodes[c->root].child; k != NONE;
	    k = c->nodes[k].next)
		roots[i++] = k;
	/* B: the table prefers a placeholder, then a non-reply. */
	for (i = 0; i < nroots; i++) {
		size_t r = roots[i], m = node_msg(c, r), t;
		struct tslot *sl;

		if (m == NONE || c->subj[m][0] == '\0')
			continue;
		sl = ttable_find(&subj, c->subj[m], strlen(c->subj[m]));
		if (sl == NULL) {
			ttable_put(&subj, c->subj[m], strlen(c->subj[m]), r);
			continue;
		}
		t = sl->val;
		if ((c->nodes[r].msg == NONE && c->nodes[t].msg != NONE) ||
		    (c->nodes[t].msg != NONE && c->nodes[r].msg != NONE &&
		    c->reply[c->nodes[t].msg] && !c->reply[m]))
			sl->val = r;
	}
	/* C: merge each other root with the table's. */
	for (i = 0; i < nroots; i++) {
		size_t r = roots[i], m, t, tm;
		struct tslot *sl;

		if (c->nodes[r].parent != c->root)
			continue;	/* moved by an earlier merge */
		m = node_msg(c, r);
		if (m == NONE || c->subj[m][0] == '\0')
			continue;
		sl = ttable_find(&subj, c->subj[m], strlen(c->subj[m]));
		if (sl == NULL || sl->val == r)
			continue;
		t = sl->val;
		tm = c->nodes[t].msg;
		if (tm == NONE && c->nodes[r].msg == NONE) {
			/* (i) both placeholders: one takes the children. */
			unlink_node(c, r);
			while ((k = c->nodes[r].child) != NONE) {
				unlink_node(c, k);
				link_node(c, t, k);
			}
		} else if (tm == NONE) {
			/* (ii) a message joins the placeholder's siblings. */
			unlink_node(c, r);
			link_node(c, t, r);
		} else if (c->nodes[r].msg == NONE) {
			unlink_node(c, t);
			link_node(c, r, t);
			sl->val = r;
		} else if (!c->reply[tm] && c->reply[m]) {
			/* (iii) "Re: x" under "x". */
			unlink_node(c, r);
			link_node(c, t, r);
		} else if (c->reply[tm] && !c->reply[m]) {
			/* (iv) misordered: "x" above "Re: x". */
			unlink_node(c, t);
			link_node(c, r, t);
			sl->val = r;
		} else {
			/* (v) siblings under a new placeholder. */
			size_t d = node_new(c, NONE);

			unlink_node(c, t);
			unlink_node(c, r);
			link_node(c, c->root, d);
			link_node(c, d, r);
			link_node(c, d, t);
			sl->val = d;
		}
	}
	free(subj.slots);
	free(roots);
}

static void
thread_references(struct tctx *c)
{
	struct ttable ids = { NULL, 0, 0 };
	struct tid refs[IMAP_THREAD_REFS_MAX];
	size_t i, j, x;

	/* Step 1: the id table and the links. */
	for (i = 0; i < c->nmsgs; i++) {
		const struct imap_thread_msg *m = &c->msgs[i];
		struct tid mid;
		size_t nrefs, me = NONE;
		struct tslot *sl = NULL;

		if (ids_parse(m->message_id, &mid, 1, 0) == 1) {
			sl = ttable_find(&ids, mid.p, mid.len);
			if (sl != NULL && c->nodes[sl->val].msg == NONE) {
				me = sl->val;	/* fill the placeholder */
				c->nodes[me].msg = i;
			} else if (sl == NULL) {
				me = node_new(c, i);
				ttable_put(&ids, mid.p, mid.len, me);
			}
		}
		if (me == NONE)		/* no id, or a duplicate one */
			me = node_new(c, i);
		nrefs = ids_parse(m->references, refs, IMAP_THREAD_REFS_MAX,
		    1);
		if (nrefs == 0)
			nrefs = ids_parse(m->in_reply_to, refs, 1, 0);
		x = NONE;
		for (j = 0; j < nrefs; j++) {
			size_t y = node_for_id(c, &ids, &refs[j]);

			if (x != NONE && c->nodes[y].parent == NONE &&
			    !would_loop(c, x, y))
				link_node(c, x, y);
			x = y;
		}
		/* The message's own parent: the last reference. */
		unlink_node(c, me);
		if (x != NONE && !would_loop(c, x, me))
			link_node(c, x, me);
	}
	free(ids.slots);
	/* Step 2: the root set. */
	c->root = node_new(c, NONE);
	for (x = 0; x + 1 < c->nnodes; x++)
		if (c->nodes[x].parent == NONE)
			link_node(c, c->root, x);
	/* Steps 3-6. */
	prune(c);
	sort_all(c, c->root);
	group_subjects(c);
	prune(c);
	sort_all(c, c->root);
}

static int
os_cmp(const void *pa, const void *pb)
{
	const struct skey *a = pa, *b = pb;

	return skey_cmp(a, b);
}

static void
thread_orderedsubject(struct tctx *c)
{
	struct ttable subj = { NULL, 0, 0 };
	struct skey *v = xreallocarray(NULL, c->nmsgs + 1, sizeof(*v));
	size_t i;

	c->root = node_new(c, NONE);
	for (i = 0; i < c->nmsgs; i++) {
		v[i].date = c->msgs[i].date;
		v[i].msg = i;
	}
	qsort(v, c->nmsgs, sizeof(*v), os_cmp);
	/* The earliest message of a subject is its thread's parent. */
	for (i = 0; i < c->nmsgs; i++) {
		size_t m = v[i].msg, x = node_new(c, m);
		const char *s = c->subj[m];
		struct tslot *sl = ttable_find(&subj, s, strlen(s));

		if (sl == NULL) {
			ttable_put(&subj, s, strlen(s), x);
			link_node(c, c->root, x);
		} else
			link_node(c, sl->val, x);
	}
	free(v);
	free(subj.slots);
	sort_all(c, c->root);
}

/* ---- output ---- */

/* Actions on the emit stack: a node, or SIZE_MAX - ch for text ch. */
#define EMIT_TEXT(ch) (SIZE_MAX - (size_t)(uint8_t)(ch))
#define EMIT_IS_TEXT(a) ((a) >= SIZE_MAX - 255)

/* Push "(k)" for each child of x, so that they pop in order. */
static size_t
push_children(const struct tctx *c, size_t x, size_t *stack, size_t sp,
    size_t *kids)
{
	size_t n = 0, k;

	for (k = c->nodes[x].child; k != NONE; k = c->nodes[k].next)
		kids[n++] = k;
	while (n > 0) {
		stack[sp++] = EMIT_TEXT(')');
		stack[sp++] = kids[--n];
		stack[sp++] = EMIT_TEXT('(');
	}
	return sp;
}

static void
emit(const struct tctx *c, struct buf *out)
{
	size_t *stack, *kids, sp = 0, r;

	stack = xreallocarray(NULL, xadd(xmul(c->nnodes, 4), 8),
	    sizeof(size_t));
	kids = xreallocarray(NULL, c->nnodes + 1, sizeof(size_t));
	for (r = c->nodes[c->root].child; r != NONE; r = c->nodes[r].next) {
		(void)buf_append_byte(out, '(');
		stack[sp++] = EMIT_TEXT(')');
		if (c->nodes[r].msg == NONE) {
			/* A placeholder root: its children, each a thread. */
			sp = push_children(c, r, stack, sp, kids);
		} else
			stack[sp++] = r;
		while (sp > 0) {
			size_t a = stack[--sp], x;

			if (EMIT_IS_TEXT(a)) {
				(void)buf_append_byte(out,
				    (uint8_t)(SIZE_MAX - a));
				continue;
			}
			(void)buf_printf(out, "%u", c->msgs[c->nodes[a].msg].id);
			x = c->nodes[a].child;
			if (x == NONE)
				continue;
			if (c->nodes[x].next == NONE) {
				/* One child: the thread goes on. */
				stack[sp++] = x;
				stack[sp++] = EMIT_TEXT(' ');
				continue;
			}
			sp = push_children(c, a, stack, sp, kids);
			stack[sp++] = EMIT_TEXT(' ');
		}
	}
	free(kids);
	free(stack);
}

void
imap_thread_run(enum imap_thread_algo algo,
    const struct imap_thread_msg *msgs, size_t n, struct buf *out)
{
	struct tctx c;
	size_t i;

	memset(&c, 0, sizeof(c));
	c.msgs = msgs;
	c.nmsgs = n;
	c.walk_left = IMAP_THREAD_WALK_MAX;
	c.subj = xreallocarray(NULL, n + 1, sizeof(char *));
	c.reply = xreallocarray(NULL, n + 1, sizeof(int));
	for (i = 0; i < n; i++)
		c.subj[i] = imap_base_subject(msgs[i].subject, &c.reply[i]);
	if (algo == IMAP_THREAD_REFERENCES)
		thread_references(&c);
	else
		thread_orderedsubject(&c);
	emit(&c, out);
	for (i = 0; i < n; i++)
		free(c.subj[i]);
	free(c.subj);
	free(c.reply);
	free(c.nodes);
}

/* ---- RFC 5256 section 2.1: the base subject ---- */

/* Length of a subj-blob "[...]" (no brackets inside) at p, else 0. */
static size_t
blob_len(const char *p)
{
	size_t i;

	if (*p != '[')
		return 0;
	for (i = 1; p[i] != '\0' && p[i] != '[' && p[i] != ']'; i++)
		;
	return p[i] == ']' ? i + 1 : 0;
}

/* Skip WSP. */
static const char *
skip_ws(const char *p)
{
	while (*p == ' ')
		p++;
	return p;
}

/* Length of a subj-refwd at p: ("re" / ("fw" ["d"])) *WSP [subj-blob] ":" */
static size_t
refwd_len(const char *p)
{
	const char *q = p;

	if (strncasecmp(q, "re", 2) == 0)
		q += 2;
	else if (strncasecmp(q, "fwd", 3) == 0)
		q += 3;
	else if (strncasecmp(q, "fw", 2) == 0)
		q += 2;
	else
		return 0;
	q = skip_ws(q);
	q = skip_ws(q + blob_len(q));	/* subj-blob ends with *WSP */
	if (*q != ':')
		return 0;
	return (size_t)(q + 1 - p);
}

char *
imap_base_subject(const char *subject, int *is_reply_r)
{
	char *s = xstrdup(subject != NULL ? subject : ""), *w, *p;
	int reply = 0, changed;

	/* (1) white space: tabs and line breaks are spaces, runs one. */
	for (p = w = s; *p != '\0'; p++) {
		char ch = *p == '\t' || *p == '\r' || *p == '\n' ? ' ' : *p;

		if (ch == ' ' && w > s && w[-1] == ' ')
			continue;
		*w++ = ch;
	}
	*w = '\0';
	for (;;) {
		size_t len;

		/* (2) trailers: "(fwd)" and white space. */
		for (;;) {
			len = strlen(s);
			if (len > 0 && s[len - 1] == ' ') {
				s[len - 1] = '\0';
				continue;
			}
			if (len >= 5 && strcasecmp(s + len - 5, "(fwd)") == 0) {
				s[len - 5] = '\0';
				reply = 1;
				continue;
			}
			break;
		}
		/* (3)-(5) leaders and blobs, until nothing changes. */
		do {
			const char *q;
			size_t k;

			changed = 0;
			/* (3) subj-leader: (*subj-blob subj-refwd) / WSP */
			q = s;
			if (*q == ' ') {
				q = skip_ws(q);
			} else {
				const char *b = q;

				while ((k = blob_len(b)) > 0)
					b = skip_ws(b + k);
				if ((k = refwd_len(b)) > 0) {
					q = skip_ws(b + k);
					reply = 1;
				}
			}
			if (q != s) {
				memmove(s, q, strlen(q) + 1);
				changed = 1;
				continue;
			}
			/* (4) a leading blob, if something remains. */
			if ((k = blob_len(s)) > 0) {
				q = skip_ws(s + k);
				if (*q != '\0') {
					memmove(s, q, strlen(q) + 1);
					changed = 1;
				}
			}
		} while (changed);
		/* (6) "[fwd: ... ]": unwrap and go again from (2). */
		len = strlen(s);
		if (len >= 6 && strncasecmp(s, "[fwd:", 5) == 0 &&
		    s[len - 1] == ']') {
			s[len - 1] = '\0';
			memmove(s, s + 5, len - 5);
			reply = 1;
			continue;
		}
		break;
	}
	for (p = s; *p != '\0'; p++)
		if (*p >= 'a' && *p <= 'z')
			*p = (char)(*p - ('a' - 'A'));
	if (is_reply_r != NULL)
		*is_reply_r = reply;
	return s;
}
