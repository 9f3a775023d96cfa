#!/bin/bash
# Mail-traffic lab: install, configure and start Postfix + Dovecot on loopback only.
# Debian 12, run as root. Idempotent: safe to run repeatedly (reloads running servers).
# mailscope's copy: its configuration is read from config/ next to this script
# (scripts/lab/config/), so the project needs nothing outside its own tree.
# Used by scripts/make-samples; scripts/lab/stop.sh stops what this started.
#
# Safety: Postfix listens on loopback only, never delivers externally (default/relay
# transport = error), never uses DNS; Dovecot listens on 127.0.0.1 and ::1 only.
# For SASL NTLM (samples/ntlm.pcap) a second Dovecot instance (config/dovecot/dovecot-ntlm.conf) and one
# more Postfix listener serve 127.0.0.4:143/110/25; their NTLM comes from Samba's winbindd (config/samba/
# smb.conf), which listens on no network port. See README.md.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive

LAB_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
CONF="$LAB_DIR/config"
TLS_DIR=/etc/mail-lab/tls
LOG_DIR=/var/log/mail-lab
MAIL_ROOT=/var/mail/lab
VMAIL_ID=5000
POSTFIX_PID=/var/spool/postfix/pid/master.pid
DOVECOT_PID=/run/dovecot/master.pid
DOVECOT_NTLM_CONF=/etc/dovecot/dovecot-ntlm.conf
DOVECOT_NTLM_PID=/run/dovecot-ntlm/master.pid
WINBINDD_PID=/run/samba/winbindd.pid
NTLM_IP=127.0.0.4

log() { echo "[setup] $*"; }

[ "$(id -u)" = 0 ] || { echo "must run as root" >&2; exit 1; }

# ---------------------------------------------------------------- packages
PKGS="postfix dovecot-core dovecot-imapd dovecot-pop3d dovecot-lmtpd tcpdump tshark swaks openssl curl python3 ca-certificates libnet-ssleay-perl libio-socket-ssl-perl libauthen-sasl-perl procps iproute2 winbind"
missing=""
for p in $PKGS; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
if [ -n "$missing" ]; then
  log "installing:$missing"
  # never let package scripts start daemons with the stock (non-loopback) config
  created_policy=0
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d; chmod 755 /usr/sbin/policy-rc.d; created_policy=1
  fi
  echo "postfix postfix/main_mailer_type select Local only" | debconf-set-selections
  echo "postfix postfix/mailname string mail.example.test" | debconf-set-selections
  echo "wireshark-common wireshark-common/install-setuid boolean false" | debconf-set-selections
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends $missing
  [ "$created_policy" = 1 ] && rm -f /usr/sbin/policy-rc.d
fi

# ---------------------------------------------------------------- vmail user
getent group vmail >/dev/null || groupadd --system --gid $VMAIL_ID vmail
getent passwd vmail >/dev/null || useradd --system --uid $VMAIL_ID --gid vmail \
  --home-dir $MAIL_ROOT --no-create-home --shell /usr/sbin/nologin vmail
mkdir -p $MAIL_ROOT $LOG_DIR $LOG_DIR/samba
chown vmail:vmail $MAIL_ROOT; chmod 0770 $MAIL_ROOT
touch $LOG_DIR/dovecot.log $LOG_DIR/dovecot-ntlm.log $LOG_DIR/postfix.log
chmod 0644 $LOG_DIR/*.log

# ---------------------------------------------------------------- TLS material
# Self-signed RSA-2048 certificate (also the trust anchor for the clients).
# Reuse config/tls/ if present so regenerated corpora keep the same server key.
mkdir -p $TLS_DIR "$CONF/tls"
if [ ! -s "$CONF/tls/server.key" ] || [ ! -s "$CONF/tls/server.crt" ]; then
  log "generating self-signed certificate"
  openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -sha256 \
    -keyout "$CONF/tls/server.key" -out "$CONF/tls/server.crt" \
    -subj "/O=mail-lab/CN=mail.example.test" \
    -addext "subjectAltName=DNS:mail.example.test,DNS:localhost,IP:127.0.0.1,IP:::1" \
    -addext "keyUsage=critical,digitalSignature,keyEncipherment,keyCertSign" \
    -addext "extendedKeyUsage=serverAuth" 2>/dev/null
fi
install -m 0644 "$CONF/tls/server.crt" $TLS_DIR/server.crt
install -m 0640 -g root "$CONF/tls/server.key" $TLS_DIR/server.key

# ---------------------------------------------------------------- postfix
backup_once() { [ -e "$1" ] && [ ! -e "$1.mail-lab-orig" ] && cp -p "$1" "$1.mail-lab-orig" || true; }
backup_once /etc/postfix/main.cf
backup_once /etc/postfix/master.cf
install -m 0644 "$CONF/postfix/main.cf" /etc/postfix/main.cf
install -m 0644 "$CONF/postfix/master.cf" /etc/postfix/master.cf
mkdir -p /etc/postfix/lab
install -m 0644 "$CONF/postfix/lab/local_recipients" /etc/postfix/lab/local_recipients
install -m 0644 "$CONF/postfix/lab/virtual" /etc/postfix/lab/virtual
echo mail.example.test > /etc/mailname

# ---------------------------------------------------------------- dovecot
backup_once /etc/dovecot/dovecot.conf
install -m 0644 "$CONF/dovecot/dovecot.conf" /etc/dovecot/dovecot.conf
install -m 0640 -g dovecot "$CONF/dovecot/lab-users" /etc/dovecot/lab-users
doveconf -n -c /etc/dovecot/dovecot.conf >/dev/null
# the second instance, with NTLM (through winbind), on 127.0.0.4:143/110 only
install -m 0644 "$CONF/dovecot/dovecot-ntlm.conf" $DOVECOT_NTLM_CONF
doveconf -n -c $DOVECOT_NTLM_CONF >/dev/null

# ---------------------------------------------------------------- samba (winbindd only: NTLM for dovecot-ntlm)
# Dovecot 2.3.13+ runs Samba's ntlm_auth for NTLM, and winbindd checks the responses against Samba's passdb.
# Samba's passdb needs a Unix account for each user (getpwnam at logon): the lab users get system accounts
# without home or shell, created only where missing; their passwords (from lab-users) go to Samba only.
backup_once /etc/samba/smb.conf
install -m 0644 "$CONF/samba/smb.conf" /etc/samba/smb.conf
testparm -s /etc/samba/smb.conf >/dev/null 2>&1 || { testparm -s /etc/samba/smb.conf; exit 1; }
# ntlm_auth (run by dovecot-ntlm's auth process, extra group winbindd_priv) needs winbindd's privileged pipe
install -d -m 0750 -o root -g winbindd_priv /var/lib/samba/winbindd_privileged
sed -n 's/^\([a-z][a-z0-9]*\):{PLAIN}\([^:]*\):.*/\1 \2/p' "$CONF/dovecot/lab-users" | while read -r user pass; do
  getent passwd "$user" >/dev/null || useradd --system --no-create-home --home-dir /nonexistent \
    --shell /usr/sbin/nologin --comment "mail-lab NTLM account (scripts/lab)" "$user"
  printf '%s\n%s\n' "$pass" "$pass" | smbpasswd -c /etc/samba/smb.conf -s -a "$user" >/dev/null
done

# hard safety checks on the effective configuration
[ "$(postconf -h inet_interfaces)" = "loopback-only" ] || { echo "inet_interfaces not loopback-only" >&2; exit 1; }
case "$(postconf -h default_transport)" in error*) ;; *) echo "default_transport must be error" >&2; exit 1;; esac
[ -z "$(postconf -h relayhost)" ] || { echo "relayhost must be empty" >&2; exit 1; }
[ "$(doveconf -h -c /etc/dovecot/dovecot.conf listen)" = "127.0.0.1, ::1" ] || { echo "dovecot listen must be loopback" >&2; exit 1; }
[ "$(doveconf -h -c $DOVECOT_NTLM_CONF listen)" = "$NTLM_IP" ] || { echo "dovecot-ntlm listen must be $NTLM_IP" >&2; exit 1; }
postfix check

alive() { [ -s "$1" ] && kill -0 "$(tr -dc 0-9 < "$1")" 2>/dev/null; }

# ---------------------------------------------------------------- start / reload
if alive $POSTFIX_PID; then
  log "postfix running (pid $(tr -dc 0-9 < $POSTFIX_PID)); reloading"
  postfix reload </dev/null >>$LOG_DIR/start.log 2>&1
else
  log "starting postfix"
  # daemons must not inherit our stdout/stderr (a caller piping our output would hang)
  postfix start </dev/null >>$LOG_DIR/start.log 2>&1 || { tail -20 $LOG_DIR/start.log; exit 1; }
fi
if alive $DOVECOT_PID; then
  log "dovecot running (pid $(tr -dc 0-9 < $DOVECOT_PID)); reloading"
  doveadm -c /etc/dovecot/dovecot.conf reload </dev/null >>$LOG_DIR/start.log 2>&1
else
  log "starting dovecot"
  dovecot -c /etc/dovecot/dovecot.conf </dev/null >>$LOG_DIR/start.log 2>&1 || { tail -20 $LOG_DIR/start.log; exit 1; }
fi
if alive $WINBINDD_PID; then
  log "winbindd running (pid $(tr -dc 0-9 < $WINBINDD_PID)); reloading"
  kill -HUP "$(tr -dc 0-9 < $WINBINDD_PID)"
else
  log "starting winbindd"
  winbindd -D </dev/null >>$LOG_DIR/start.log 2>&1 || { tail -20 $LOG_DIR/start.log; exit 1; }
fi
for i in $(seq 1 50); do wbinfo -p >/dev/null 2>&1 && break; sleep 0.2; done
wbinfo -p >/dev/null 2>&1 || { echo "winbindd does not answer (wbinfo -p)" >&2; exit 1; }
if alive $DOVECOT_NTLM_PID; then
  log "dovecot-ntlm running (pid $(tr -dc 0-9 < $DOVECOT_NTLM_PID)); reloading"
  doveadm -c $DOVECOT_NTLM_CONF reload </dev/null >>$LOG_DIR/start.log 2>&1
else
  log "starting dovecot-ntlm"
  dovecot -c $DOVECOT_NTLM_CONF </dev/null >>$LOG_DIR/start.log 2>&1 || { tail -20 $LOG_DIR/start.log; exit 1; }
fi

# ---------------------------------------------------------------- wait + verify listeners
# every port on 127.0.0.1 and ::1: Postfix 25, 465, 587, 2525 (cleartext AUTH), 2526-2530 (the extra
# listeners for samples/findings.pcap, see README.md); Dovecot 110, 995, 143, 993; and the NTLM
# listeners on 127.0.0.4 only: Postfix 25, dovecot-ntlm 143 and 110 (for samples/ntlm.pcap)
PORTS="25 465 587 2525 2526 2527 2528 2529 2530 110 995 143 993"
NTLM_PORTS="25 110 143"
EXPECTED=$(( $(echo $PORTS | wc -w) * 2 ))
NTLM_EXPECTED=$(echo $NTLM_PORTS | wc -w)
SS_FILTER="( $(for p in $PORTS; do printf 'sport = :%s or ' "$p"; done | sed 's/ or $//') )"
main_listeners() { ss -Hltn "$SS_FILTER" | awk '{print $4}' | grep -cE '^(127\.0\.0\.1|\[::1\]):' || true; }
ntlm_listeners() { ss -Hltn "$SS_FILTER" | awk '{print $4}' | grep -cE "^${NTLM_IP//./\\.}:($(echo $NTLM_PORTS | tr ' ' '|'))\$" || true; }
for i in $(seq 1 50); do
  [ "$(main_listeners)" -ge "$EXPECTED" ] && [ "$(ntlm_listeners)" -ge "$NTLM_EXPECTED" ] && break
  sleep 0.2
done
ss -Hltnp "$SS_FILTER" | awk '{print "[setup] listening", $4}'
bad=$(ss -Hltn "$SS_FILTER" | awk '{print $4}' | grep -vE "^(127\.0\.0\.1|\[::1\]|${NTLM_IP//./\\.}):" || true)
if [ -n "$bad" ]; then echo "NON-LOOPBACK LISTENER: $bad" >&2; exit 1; fi
n=$(main_listeners)
[ "$n" -ge "$EXPECTED" ] || { echo "only $n of $EXPECTED listeners on ports $PORTS" >&2; exit 1; }
n=$(ntlm_listeners)
[ "$n" -ge "$NTLM_EXPECTED" ] || { echo "only $n of $NTLM_EXPECTED listeners on $NTLM_IP ports $NTLM_PORTS" >&2; exit 1; }
log "postfix pid $(tr -dc 0-9 < $POSTFIX_PID), dovecot pid $(tr -dc 0-9 < $DOVECOT_PID)"
log "winbindd pid $(tr -dc 0-9 < $WINBINDD_PID), dovecot-ntlm pid $(tr -dc 0-9 < $DOVECOT_NTLM_PID)"
log "ok"
