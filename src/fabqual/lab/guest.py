"""Files the image builder writes into the guest's root file system.

One image serves both guests. What differs per guest (hostname, data-link
address, SSH host key, the lab's authorized key) reaches it at boot through
QEMU's fw_cfg (``-fw_cfg name=opt/fabqual/...``), read by
``fabqual-guest-setup`` before the network and sshd start. So the image does
not depend on any key, and the host keys are known before the guest boots.
"""

from __future__ import annotations

# Interface names are fixed by net.ifnames=0 and the PCI slot order in vm.py.
MGMT_NETDEV = "eth0"
DATA_NETDEV = "eth1"

FW_CFG_PREFIX = "opt/fabqual"

SETUP_SCRIPT = f"""\
#!/bin/sh
# Per-guest configuration from QEMU fw_cfg, written by fabqual's lab builder.
set -eu
modprobe qemu_fw_cfg
dir=/sys/firmware/qemu_fw_cfg/by_name/{FW_CFG_PREFIX}
i=0
while [ ! -r "$dir/hostname/raw" ] && [ $i -lt 50 ]; do sleep 0.1; i=$((i + 1)); done
name=$(cat "$dir/hostname/raw")
echo "$name" > /etc/hostname
hostname "$name"
install -d -m 700 /root/.ssh
cat "$dir/authorized_keys/raw" > /root/.ssh/authorized_keys
chmod 600 /root/.ssh/authorized_keys
rm -f /etc/ssh/ssh_host_*
install -m 600 /dev/null /etc/ssh/ssh_host_ed25519_key
cat "$dir/host_key/raw" > /etc/ssh/ssh_host_ed25519_key
ssh-keygen -y -f /etc/ssh/ssh_host_ed25519_key > /etc/ssh/ssh_host_ed25519_key.pub
# Static addresses set here directly: faster under TCG than networkd plus udev.
# The management NIC sits on QEMU user networking (restrict=on), 10.0.2.15 by its convention.
ip link set lo up
ip addr add 10.0.2.15/24 dev {MGMT_NETDEV}
ip link set {MGMT_NETDEV} up
ip addr add "$(cat "$dir/data_address/raw")" dev {DATA_NETDEV}
ip link set {DATA_NETDEV} up
"""

SETUP_UNIT = """\
[Unit]
Description=fabqual lab: per-guest hostname, keys and data address from fw_cfg
DefaultDependencies=no
After=systemd-modules-load.service local-fs.target
Before=network-pre.target network.target ssh.service
Wants=network-pre.target

[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=/usr/local/sbin/fabqual-guest-setup

[Install]
WantedBy=sysinit.target
"""

SSHD_CONFIG = """\
# fabqual lab: keys only, no DNS lookups (there is no DNS), the one host key fw_cfg brought.
PermitRootLogin prohibit-password
PasswordAuthentication no
UseDNS no
HostKey /etc/ssh/ssh_host_ed25519_key
"""

# rdma_rxe asks the crypto API for "crc32" at run time; modprobe --show-depends
# does not list it, and without it rxe fails with "failed to init crc32 algorithm".
MODPROBE_CONF = """\
softdep rdma_rxe pre: crc32_generic
"""

MODULES_LOAD = """\
virtio_pci
virtio_net
qemu_fw_cfg
configfs
"""

# Same name in /etc overrides nvme-cli's /usr/lib/udev/rules.d/70-nvmf-autoconnect.rules.
# That rule answers every FC port event (the kernel's "nvmediscovery" uevent, as
# fcloop sends when the lab adds a port) by connecting a discovery controller and
# dropping it again, behind fabqual's back and racing the tests' own connects.
# Only the emulated image does this: a lab rack's own configuration is not
# fabqual's to change.
NVMF_AUTOCONNECT_RULES = """\
# fabqual lab: nvme-cli's FC autoconnect rule is switched off (see guest.py).
"""

HOSTS = """\
127.0.0.1 localhost
192.168.77.1 tgt-data
192.168.77.2 ini-data
"""

# Units that slow the boot under TCG (measured with systemd-analyze blame) or act
# on their own (nvme autoconnect would race the
# tests' own connects); tcmu-runner is started by the tests that want it.
DISABLED_UNITS = (
    "nvmefc-boot-connections.service",
    "tcmu-runner.service",
    "e2scrub_reap.service",
    "getty@tty1.service",
    "systemd-pstore.service",
    "remote-fs.target",
)
MASKED_UNITS = (
    # Connects every discovered NVMe-oF subsystem at boot; see NVMF_AUTOCONNECT_RULES.
    "nvmf-autoconnect.service",
    "apt-daily.timer",
    "apt-daily-upgrade.timer",
    "dpkg-db-backup.timer",
    "e2scrub_all.timer",
    "fstrim.timer",
    "systemd-networkd.service",
    "systemd-networkd-wait-online.service",
    "systemd-network-generator.service",
    "systemd-timesyncd.service",
    "systemd-logind.service",
    "systemd-binfmt.service",
    "proc-sys-fs-binfmt_misc.automount",
    "dev-hugepages.mount",
    "dev-mqueue.mount",
    "sys-kernel-debug.mount",
    "sys-fs-fuse-connections.mount",
    "modprobe@fuse.service",
    "modprobe@dm_mod.service",
    "modprobe@drm.service",
    "systemd-update-utmp.service",
    "systemd-update-utmp-runlevel.service",
    "getty-static.service",
    # Root has no password, so a console login is useless; and with coldplug masked
    # its device never shows up and getty.target waits 90 s for it.
    "serial-getty@ttyS0.service",
    "systemd-journal-flush.service",
    "systemd-remount-fs.service",
    # Coldplug: the modules the guest needs are loaded by modules-load.d instead.
    "systemd-udev-trigger.service",
    "systemd-hwdb-update.service",
    "systemd-random-seed.service",
    "systemd-tmpfiles-clean.timer",
    "ldconfig.service",
)

# Written last: the guest's whole customisation, path -> (mode, text).
FILES: dict[str, tuple[int, str]] = {
    "usr/local/sbin/fabqual-guest-setup": (0o755, SETUP_SCRIPT),
    "etc/systemd/system/fabqual-guest-setup.service": (0o644, SETUP_UNIT),
    "etc/ssh/sshd_config.d/fabqual.conf": (0o644, SSHD_CONFIG),
    "etc/modprobe.d/fabqual.conf": (0o644, MODPROBE_CONF),
    "etc/modules-load.d/fabqual.conf": (0o644, MODULES_LOAD),
    "etc/udev/rules.d/70-nvmf-autoconnect.rules": (0o644, NVMF_AUTOCONNECT_RULES),
    "etc/hosts": (0o644, HOSTS),
    "etc/fstab": (0o644, "# the root file system is the initramfs\n"),
}

ENABLED_UNITS = ("fabqual-guest-setup.service", "ssh.service")
