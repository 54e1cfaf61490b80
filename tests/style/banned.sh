#!/bin/sh
# House-style check (STYLE.md "Memory and strings"): the banned C calls and
# variable-length arrays must not appear in product code.  Tests and fuzz
# harnesses are exempt.  Prints TAP.
top=${top_srcdir:-$(cd "$(dirname "$0")/../.." && pwd)}
cd "$top" || exit 1
echo "1..1"
hits=$(grep -nE '\b(strcpy|strcat|sprintf|vsprintf|gets|strncpy|strtok|atoi|atol|alloca)[[:space:]]*\(' \
	$(find lib mailbox ca smtpd imapd tools -name '*.[ch]' 2>/dev/null) 2>/dev/null)
if [ -n "$hits" ]; then
	printf '%s\n' "$hits" | sed 's/^/# /'
	echo "not ok 1 - banned calls in product code"
	exit 0
fi
echo "ok 1 - no banned calls in product code"
