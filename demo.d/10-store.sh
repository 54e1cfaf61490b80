# demo.d/10-store.sh - the store's demo step, sourced by quickstart.sh's
# demo_setup (variables demo, top, GOVMAIL_DOMAIN; function say).
#
# Makes demo/govmail.conf (store in demo/store), the demo domain, and one
# account of every class with a random password: a department
# (notices@), an official, a legal person with a valid Unified Social
# Credit Code, and three citizens (one with a valid resident ID number).
# Their credentials go to demo/env.d/10-store.env (mode 0600), the only
# place they are kept.  Idempotent: what exists is left alone, a file is
# rewritten only when its contents would change, so a second run changes
# nothing.  GOVMAILCTL may name the govmailctl binary (VPATH builds, tests).

store_demo_ctl=${GOVMAILCTL:-$top/tools/govmailctl}
store_demo_conf="$demo/govmail.conf"
store_demo_envf="$demo/env.d/10-store.env"

# GB 32100: the 18th character of a Unified Social Credit Code.
store_demo_uscc() {
	local alphabet=0123456789ABCDEFGHJKLMNPQRTUWXY code=$1 sum=0 i c v
	local -a w=(1 3 9 27 19 26 16 17 20 29 25 13 8 24 10 30 28)
	for ((i = 0; i < 17; i++)); do
		c=${code:i:1}
		v=${alphabet%%"$c"*}
		sum=$((sum + ${#v} * w[i]))
	done
	c=$(((31 - sum % 31) % 31))
	printf '%s%s\n' "$code" "${alphabet:c:1}"
}

# GB 11643 / ISO 7064 MOD 11-2: the 18th character of a resident ID number.
store_demo_resident_id() {
	local digits=$1 sum=0 i checks=10X98765432
	local -a w=(7 9 10 5 8 4 2 1 6 3 7 9 10 5 8 4 2)
	for ((i = 0; i < 17; i++)); do
		sum=$((sum + ${digits:i:1} * w[i]))
	done
	printf '%s%s\n' "$digits" "${checks:sum % 11:1}"
}

store_demo_password() {
	# 18 random bytes as 24 characters of URL-safe base64: no quoting needed.
	openssl rand -base64 18 | tr '+/' '-_'
}

# The value of KEY in the existing env file, or nothing.
store_demo_known() {
	[ -f "$store_demo_envf" ] || return 0
	sed -n "s/^$1=//p" "$store_demo_envf" | head -n 1
}

store_demo_run() {
	"$store_demo_ctl" -c "$store_demo_conf" "$@"
}

# ROLE ADDRESS USER-ADD-ARGS...: make sure the account exists with the
# password the env file records, and add its two lines to the env file.
store_demo_account() {
	local role=$1 addr=$2 pw rc=0
	shift 2
	pw=$(store_demo_known "GOVMAIL_${role}_PASS")
	store_demo_run user show "$addr" >/dev/null 2>&1 || rc=$?
	case $rc in
	0)
		if [ -z "$pw" ] || ! printf '%s\n' "$pw" |
			store_demo_run user verify "$addr" >/dev/null 2>&1; then
			[ -n "$pw" ] || pw=$(store_demo_password)
			printf '%s\n' "$pw" | store_demo_run user passwd "$addr"
			say "store: new password for $addr"
		fi
		;;
	67)
		[ -n "$pw" ] || pw=$(store_demo_password)
		printf '%s\n' "$pw" | store_demo_run user add "$addr" "$@"
		say "store: account $addr ($2)"
		;;
	*)
		say "store: govmailctl user show $addr failed (exit $rc)"
		return 1
		;;
	esac
	printf 'GOVMAIL_%s_USER=%s\nGOVMAIL_%s_PASS=%s\n' \
		"$role" "$addr" "$role" "$pw" >> "$store_demo_envf.tmp"
}

store_demo_setup() {
	local d=$GOVMAIL_DOMAIN domains

	if [ ! -x "$store_demo_ctl" ]; then
		say "store: $store_demo_ctl is not built; store step skipped"
		return 0
	fi
	if [ ! -f "$store_demo_conf" ]; then
		(umask 077 && cat > "$store_demo_conf.tmp" <<-EOF
		# govmail demo configuration, made by demo.d/10-store.sh; see
		# govmail.conf(5).  Relative paths are relative to this folder.
		[store]
		path = store
		# small Argon2id parameters: the demo logs in often, on a laptop
		password_opslimit = 2
		password_memlimit = 16M

		[limits]
		quota_bytes = 256M
		EOF
		)
		mv "$store_demo_conf.tmp" "$store_demo_conf"
		say "store: wrote $store_demo_conf"
	fi

	domains=$(store_demo_run domain list 2>/dev/null || true)
	case $'\n'"$domains"$'\n' in
	*$'\n'"$d"$'\n'*) ;;
	*)
		store_demo_run domain add "$d"
		say "store: domain $d"
		;;
	esac

	mkdir -p "$demo/env.d"
	(umask 077 && : > "$store_demo_envf.tmp")
	store_demo_account DEPARTMENT "notices@$d" --class department \
		--name "Municipal Government Notices" \
		--org "Municipal People's Government General Office"
	store_demo_account OFFICIAL "li.wei@$d" --class official \
		--name "Li Wei" --org "Municipal Housing Bureau" \
		--title "Housing Policy Officer"
	store_demo_account LEGAL "greenriver@$d" --class legal-person \
		--name "Green River Technology Co., Ltd." \
		--org "Green River Technology Co., Ltd." \
		--org-id "$(store_demo_uscc 91110108MA01C0X2T)"
	store_demo_account CITIZEN "zhang.san@$d" --class citizen \
		--name "Zhang San" --verified \
		--resident-id "$(store_demo_resident_id 11010519900307123)"
	store_demo_account CITIZEN2 "wang.fang@$d" --class citizen \
		--name "Wang Fang"
	store_demo_account CITIZEN3 "chen.jie@$d" --class citizen \
		--name "Chen Jie"
	if cmp -s "$store_demo_envf.tmp" "$store_demo_envf"; then
		rm -f "$store_demo_envf.tmp"
	else
		mv "$store_demo_envf.tmp" "$store_demo_envf"
		say "store: credentials in $store_demo_envf"
	fi
}

store_demo_setup
