# demo.d/50-notice.sh - the demo's signed government notice, sourced by
# quickstart.sh's demo_setup after the store, CA and daemons are up
# (variables demo, top, GOVMAIL_*; function say).
#
# Creates the notice list all-citizens@DOMAIN (every citizen account; the
# department may post), and has the department send one S/MIME-signed
# notice to it with govmail-notice over submission (STARTTLS, AUTH, the
# server certificate checked against the demo root), so every citizen's
# INBOX holds a signed notice.  Writes demo/env.d/50-notice.env with
# GOVMAIL_NOTICE_LIST.  Idempotent: the list is made once and the notice
# sent once (demo/.notice-sent).

notice_demo_setup() {
	local ctl=${GOVMAILCTL:-$top/tools/govmailctl}
	local notice=${GOVMAIL_NOTICE:-$top/tools/govmail-notice}
	local conf="$demo/govmail.conf" f
	local list="all-citizens@$GOVMAIL_DOMAIN"

	for f in "$demo"/env.d/10-store.env "$demo"/env.d/20-ca.env \
		"$demo"/env.d/30-smtpd.env; do
		if [ ! -f "$f" ]; then
			say "notice: $(basename "$f") missing; notice step skipped"
			return 0
		fi
		. "$f"
	done
	if [ ! -x "$notice" ] || [ ! -x "$ctl" ]; then
		say "notice: govmail-notice or govmailctl not built; skipped"
		return 0
	fi
	if ! "$ctl" -c "$conf" list members "$list" >/dev/null 2>&1; then
		"$ctl" -c "$conf" list add "$list" --notice >/dev/null &&
		"$ctl" -c "$conf" list member add "$list" \
			"class:citizen@$GOVMAIL_DOMAIN" >/dev/null &&
		"$ctl" -c "$conf" list poster add "$list" \
			"$GOVMAIL_DEPARTMENT_USER" >/dev/null || {
			say "notice: could not create $list"
			return 0
		}
		say "notice: list $list (every citizen; poster $GOVMAIL_DEPARTMENT_USER)"
	fi
	mkdir -p "$demo/env.d"
	echo "GOVMAIL_NOTICE_LIST=$list" > "$demo/env.d/50-notice.env"
	[ -f "$demo/.notice-sent" ] && return 0

	umask 077
	printf '%s\n' "$GOVMAIL_DEPARTMENT_PASS" > "$demo/.notice-pass"
	printf '%s\n' "$GOVMAIL_OFFICIAL_P12_PASS" > "$demo/.notice-p12pass"
	cat > "$demo/notice-body.txt" <<-'TXT'
	尊敬的市民：

	自2027年1月1日起，市政务服务中心周六上午照常办公（9:00-12:00），
	办理户籍、社保和公积金业务。

	Dear resident,

	From 1 January 2027 the city service centre is also open on Saturday
	mornings (9:00-12:00) for household registration, social insurance and
	housing fund business.

	This notice is signed with the department's official certificate.
	TXT
	if "$notice" send --from "$GOVMAIL_DEPARTMENT_USER" \
		--p12 "$GOVMAIL_OFFICIAL_P12" --p12-pass-file "$demo/.notice-p12pass" \
		--to "$list" --subject "关于市政务服务中心周六办公的通知" \
		--body "$demo/notice-body.txt" \
		--server "localhost:$GOVMAIL_SUBMISSION_PORT" --tls starttls \
		--cafile "$GOVMAIL_CA_ROOT" --user "$GOVMAIL_DEPARTMENT_USER" \
		--password-file "$demo/.notice-pass" \
		>> "$demo/log/govmail-notice.log" 2>&1; then
		touch "$demo/.notice-sent"
		say "notice: signed notice sent to $list"
	else
		say "notice: sending the demo notice failed (see demo/log/govmail-notice.log)"
	fi
	rm -f "$demo/.notice-pass" "$demo/.notice-p12pass"
}

notice_demo_setup
