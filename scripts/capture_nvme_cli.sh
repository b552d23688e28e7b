#!/usr/bin/env bash
# Capture nvme-cli outputs on one guest of the running emulated lab, with that guest's own
# kernel and nvme-cli, for the parser fixtures (fixtures/outputs/nvme-cli/, each with .origin).
#
#   scripts/capture_nvme_cli.sh ini fixtures/outputs/nvme-cli guest   # files <prefix>_<what>...
#
# In the guest: a kernel nvmet subsystem (one 64 MiB file-backed namespace) on an nvmet-tcp port
# 127.0.0.1:4499, connected with the guest's nvme-cli over nvme-tcp, the commands below run, then
# everything is removed again (also when a command fails).
set -euo pipefail
node="$1"; out="$2"; prefix="$3"
mkdir -p "$out"
tmp="$(mktemp -d)"; trap 'rm -rf "$tmp"' EXIT
fabqual lab ssh "$node" -- sh -s > "$tmp/all" 2>&1 <<'GUEST' || true
NQN=nqn.2026-12.org.fabqual:parsers-capture
HOSTNQN=nqn.2026-12.org.fabqual:parsers-host
S=/sys/kernel/config/nvmet/subsystems/$NQN
P=/sys/kernel/config/nvmet/ports/99
cleanup() {
  nvme disconnect -n $NQN >/dev/null 2>&1
  rm -f $P/subsystems/$NQN 2>/dev/null; rmdir $P 2>/dev/null
  rmdir $S/namespaces/1 2>/dev/null; rmdir $S 2>/dev/null; rm -f /var/tmp/parsers-capture.img
}
trap cleanup EXIT
modprobe -a nvmet nvmet-tcp nvme-tcp
truncate -s 64M /var/tmp/parsers-capture.img
mkdir $S; echo 1 > $S/attr_allow_any_host; echo fabqualcap01 > $S/attr_serial
mkdir $S/namespaces/1; echo /var/tmp/parsers-capture.img > $S/namespaces/1/device_path
echo 1 > $S/namespaces/1/buffered_io 2>/dev/null; echo 1 > $S/namespaces/1/enable
mkdir $P; echo tcp > $P/addr_trtype; echo ipv4 > $P/addr_adrfam; echo 127.0.0.1 > $P/addr_traddr; echo 4499 > $P/addr_trsvcid
ln -s $S $P/subsystems/$NQN
nvme connect -t tcp -a 127.0.0.1 -s 4499 -n $NQN -q $HOSTNQN >/dev/null
sleep 2
section() { echo "@@@@ $1 @@@@ $2"; shift 2; "$@" 2>&1; echo "@@@@ exit $?"; }
echo "#### facts #### $(. /etc/os-release; echo "$PRETTY_NAME")|$(uname -r)|$(nvme version 2>&1 | head -n1)|$(dpkg-query -W -f '${Version}' nvme-cli)"
section list_tcp.json "nvme list -o json" nvme list -o json
section list_verbose_tcp.json "nvme list -v -o json" nvme list -v -o json
section list_subsys_tcp.json "nvme list-subsys -o json" nvme list-subsys -o json
if nvme discover --help 2>&1 | grep -q -- '--output-format'; then
  section discover_tcp.json "nvme discover -t tcp -a 127.0.0.1 -s 4499 -q $HOSTNQN -o json" nvme discover -t tcp -a 127.0.0.1 -s 4499 -q $HOSTNQN -o json
else
  section discover_tcp.txt "nvme discover -t tcp -a 127.0.0.1 -s 4499 -q $HOSTNQN" nvme discover -t tcp -a 127.0.0.1 -s 4499 -q $HOSTNQN
fi
GUEST
facts="$(grep '^#### facts #### ' "$tmp/all" | sed 's/^#### facts #### //')"
[ -n "$facts" ] || { echo "capture on $node failed:"; tail -n 20 "$tmp/all"; exit 1; }
IFS='|' read -r os kernel version package <<< "$facts"
python3 - "$tmp/all" "$out" "$prefix" "$node" "$os" "$kernel" "$version" "$package" <<'PY'
import re, sys, datetime
from pathlib import Path
text, out, prefix, node, os_name, kernel, version, package = sys.argv[1:]
sections = re.findall(r"^@@@@ (\S+) @@@@ ([^\n]*)\n(.*?)^@@@@ exit (\d+)\n", Path(text).read_text(), re.S | re.M)
for name, command, body, code in sections:
    target = Path(out) / f"{prefix}_{name}"
    target.write_text(body)
    Path(f"{target}.origin").write_text(
        f"captured on {datetime.date.today()} on fabqual's emulated lab, guest {node} ({os_name}, kernel {kernel}),"
        f" with the guest's own nvme-cli ({version}, package nvme-cli {package}), by scripts/capture_nvme_cli.sh:"
        " a kernel nvmet subsystem nqn.2026-12.org.fabqual:parsers-capture (one 64 MiB file-backed namespace)"
        " on an nvmet-tcp port 127.0.0.1:4499, connected with nvme connect -t tcp"
        " -q nqn.2026-12.org.fabqual:parsers-host.\n"
        f"Command: {command}\nExit status: {code}\n"
    )
    print(target)
PY
