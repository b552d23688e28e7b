#!/usr/bin/env bash
# The emulated-lab proof of history-based regression flags (docs/fleet.md), as run for
# benchmarks/results/fleet-lab-proof.json:
#   bash benchmarks/fleet_lab_proof.sh [BASE_RUNS=5] [HALVED_RUNS=3] [RATE_MBIT=24]
# 1. the lab's data link (eth1 in both guests) is rate-limited with tc tbf to RATE_MBIT so the
#    link, not the shared host's CPU, bounds the slice (128k randread QD1 over nvmet-rdma/rxe);
# 2. BASE_RUNS real runs of the slice, each storing itself in <reports>/results.db;
# 3. the link is halved (RATE_MBIT/2) and HALVED_RUNS more runs are made;
# 4. the limit is removed (the guests' qdisc goes back to the default fq_codel);
# 5. benchmarks/fleet_lab_proof.py judges every halved run against the history before it.
# The lab image has no sch_tbf module: it is taken from Debian's own linux-image package of
# the guests' kernel (apt-get download) and insmod'ed for the proof only.
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BASE=${1:-5} HALVED=${2:-3} RATE=${3:-24}
export FABQUAL_CACHE=${FABQUAL_CACHE:-$HOME/.cache/fabqual}
WORK=${FABQUAL_PROOF_DIR:-$(mktemp -d /tmp/fabqual-fleet-proof-XXXX)}
source "$REPO/.venv/bin/activate"
fabqual lab up >/dev/null
LAB=$FABQUAL_CACHE/lab TOPO=$FABQUAL_CACHE/lab/run/topology.yaml
KERNEL=$(fabqual lab ssh tgt -- uname -r | tr -d '\r')
if [ ! -f "$WORK/sch_tbf.ko" ]; then
  (cd "$WORK" && apt-get download "linux-image-$KERNEL" >/dev/null 2>&1 && dpkg-deb -x linux-image-*.deb kernel)
  cp "$WORK/kernel/lib/modules/$KERNEL/kernel/net/sched/sch_tbf.ko" "$WORK/sch_tbf.ko"
fi
ports=$(awk '/^- name: (tgt|ini)/{f=1;next} f&&/^  port:/{print $2;f=0}' "$TOPO")
rate() {
  for p in $ports; do
    o=(-p "$p" -i "$LAB/id_ed25519" -o "UserKnownHostsFile=$LAB/run/known_hosts")
    if [ "$1" = off ]; then
      ssh "${o[@]}" root@127.0.0.1 "tc qdisc del dev eth1 root 2>/dev/null; tc qdisc show dev eth1"
    else
      scp -q -P "$p" -i "$LAB/id_ed25519" -o "UserKnownHostsFile=$LAB/run/known_hosts" "$WORK/sch_tbf.ko" root@127.0.0.1:/tmp/
      ssh "${o[@]}" root@127.0.0.1 "lsmod | grep -q sch_tbf || insmod /tmp/sch_tbf.ko;
        tc qdisc replace dev eth1 root tbf rate $1 burst 32kb latency 200ms; tc qdisc show dev eth1"
    fi
  done
}
trap 'rate off' EXIT
run() {
  for i in $(seq 1 "$2"); do
    FABQUAL_REPORTS_DIR=$WORK/reports FABQUAL_FIO_RUNTIME_S=10 pytest --topology "$TOPO" -p no:cacheprovider -q \
      "$REPO/tests/acceptance/test_nvme_fio.py::test_fio[tr=rdma-rw=randread-bs=128k-qd=1]" > "$WORK/$1-$i.log" 2>&1 \
      && echo "$1 run $i passed" || echo "$1 run $i exit $?"
  done
}
rate "${RATE}mbit"; run base "$BASE"
rate "$((RATE / 2))mbit"; run halved "$HALVED"
rate off; trap - EXIT
python "$REPO/benchmarks/fleet_lab_proof.py" "$WORK/reports" --rate "$RATE" --base "$BASE" ${FABQUAL_PROOF_OUT:+--out "$FABQUAL_PROOF_OUT"}
