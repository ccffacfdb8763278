"""The two guests the migration part moves, behind one interface: boot(),
.g (the vmtest.Guest of the process that runs the guest now), .backend,
move(...) -> {"total_ms", "downtime_ms", "rounds", "mb"} and close().

Both sit on the same kind of NIC: a persistent multi_queue tap in the
part's namespace (test_migration.shared_tap), which source and destination
attach to side by side on one host.
- minivmm: test_migration.Vm, as the live-migration test drives it (a
  destination waiting with `--incoming unix:PATH`, then `minivmm ctl SOCK
  migrate URI`; its reply's figures).
- QEMU 7.2 (Debian's), vhost=on, the VM table's command line with a QMP
  socket; the destination is the same command with `-incoming unix:PATH`,
  the source is told `migrate` over QMP and polled with query-migrate.
"""
import os
import tempfile
import time

from test_migration import Vm, ctl, wait_for
from vmtest import INITRD, KERNEL, Guest, TestFailure, check

import configs
from qmp import Qmp, QmpError

MIGRATE_TIMEOUT = 600  # a move that never converges is cancelled and fails its row


class MiniVm:
    def __init__(self, ns, tap, name):
        self.vm = Vm(ns, tap, name, 1, 1)  # boots on vhost=kernel
        self.backend = "kernel"
        self.pending = None

    @property
    def g(self):
        return self.vm.g

    def boot(self, timeout):
        return self.vm.g.boot(timeout)

    def prepare(self, dst):
        """Starts the destination (vhost=dst), waiting with --incoming."""
        self.pending = (dst,) + self.vm.destination(dst)

    def move(self):
        """Test_migration.Vm.migrate, the destination already started."""
        dst, g, sock, uri = self.pending
        self.pending = None
        try:
            rep = ctl(self.vm.sock, "migrate", uri, timeout=MIGRATE_TIMEOUT)
        except Exception:
            g.kill()
            raise
        check(self.vm.g.wait_exit(60) == 0, f"the source's exit status after migrating: {self.vm.g.out[-300:]!r}")
        wait_for(g, "the migrated guest runs here")
        self.vm.g, self.vm.sock = g, sock
        self.backend = dst
        return {"total_ms": rep["total_ms"], "downtime_ms": rep["downtime_ms"], "rounds": rep["rounds"],
                "mb": rep["bytes"] / 1e6}

    def close(self):
        if self.pending:
            self.pending[1].kill()
        self.vm.g.kill()


class QemuVm:
    backend = "qemu"

    def __init__(self, ns, tap, name, bridge=None):
        """bridge: instead of sharing tap, each QEMU process gets a tap of
        its own on this bridge (QEMU's usual arrangement; its announce after
        the move turns the bridge's traffic to the destination's tap)."""
        self.ns, self.tap, self.name, self.bridge = ns, tap, name, bridge
        self.pending = None
        self.dir = tempfile.mkdtemp(prefix=f"qemu-mig-{name}-")
        self.hop = 0
        self.defaults = None  # QEMU's own migration parameters, as it first reported them
        self.g, self.qmp = self._start(None)

    def _start(self, incoming):
        qmp_path = os.path.join(self.dir, f"qmp{self.hop}.sock")
        if self.bridge:
            tap = f"{self.tap}q{self.hop}"
            self.ns.sh(f"ip tuntap add dev {tap} mode tap && ip link set {tap} master {self.bridge} up")
            netdev = f"tap,id=n0,ifname={tap},script=no,downscript=no,vhost=on"  # the VM table's
        else:
            netdev = f"tap,id=n0,ifname={self.tap},script=no,downscript=no,vhost=on,queues=2"
        # Shared tap, queues=2 on the netdev: QEMU opens a tap multi_queue only when asked
        # for more than one queue, and the shared tap is multi_queue. The
        # device keeps mq off (its default), so the guest sees one pair, as
        # minivmm's does, and QEMU detaches the tap queue it does not use.
        argv = self.ns.prefix() + [
            "qemu-system-x86_64", "-enable-kvm", "-cpu", "host", "-m", str(configs.MEM_MIB), "-smp", "1",
            "-nographic", "-nodefaults", "-no-reboot", "-serial", "stdio", "-kernel", KERNEL, "-initrd", INITRD,
            "-append", configs.APPEND,
            "-netdev", netdev,
            "-device", "virtio-net-pci,netdev=n0", "-qmp", f"unix:{qmp_path},server=on,wait=off"]
        if incoming:
            argv += ["-incoming", incoming]
        g = Guest(argv, f"{self.name}-{self.hop}-qemu")
        try:
            q = Qmp(qmp_path, 120, lambda: g.proc.poll() is None)
        except Exception:
            g.kill()
            raise
        return g, q

    def boot(self, timeout):
        return self.g.boot(timeout)

    def prepare(self, bandwidth=None):
        """Starts the destination, waiting with -incoming; bandwidth: the
        source's max-bandwidth for the move in bytes/s, or QEMU's default."""
        if self.defaults is None:
            self.defaults = self.qmp.cmd("query-migrate-parameters")
        self.hop += 1
        uri = f"unix:{os.path.join(self.dir, f'in{self.hop}.sock')}"
        dest, dest_qmp = self._start(uri)
        self.pending = (dest, dest_qmp, uri)
        if bandwidth:
            self.qmp.cmd("migrate-set-parameters", **{"max-bandwidth": bandwidth})

    def move(self):
        dest, dest_qmp, uri = self.pending
        self.pending = None
        try:
            self.qmp.cmd("migrate", uri=uri)
            deadline = time.monotonic() + MIGRATE_TIMEOUT
            while True:
                st = self.qmp.cmd("query-migrate")
                if st.get("status") in ("completed", "failed", "cancelled"):
                    break
                if time.monotonic() > deadline:
                    self.qmp.cmd("migrate_cancel")
                    raise TestFailure(f"QEMU's migration not done in {MIGRATE_TIMEOUT} s: {st}")
                time.sleep(0.02)
            if st["status"] != "completed":
                raise TestFailure(f"QEMU's migration {st['status']}: {st.get('error-desc', st)}")
            # QEMU says "completed" a moment before its thread fills in the
            # times (seen: total-time 0, downtime 0).
            settle = time.monotonic() + 5
            while not (st.get("total-time") and st.get("downtime")) and time.monotonic() < settle:
                time.sleep(0.02)
                st = self.qmp.cmd("query-migrate")
            if not (st.get("total-time") and st.get("downtime")):
                raise TestFailure(f"QEMU's migration completed without its times: {st}")
            # At once: the paused source still holds a queue of the shared
            # tap, which would take its share of the frames for the guest.
            try:
                self.qmp.cmd("quit")
            except (QmpError, OSError):
                pass  # it may close the connection before answering
            self.qmp.close()
            if self.g.wait_exit(60) != 0:
                raise TestFailure(f"the source QEMU exited {self.g.proc.returncode} (log {self.g.log_path})")
            deadline = time.monotonic() + 120
            while dest_qmp.cmd("query-status").get("status") != "running":
                if time.monotonic() > deadline:
                    raise TestFailure(f"the destination QEMU never ran the guest (log {dest.log_path})")
                time.sleep(0.05)
        except Exception:
            dest.kill()
            raise
        self.g, self.qmp = dest, dest_qmp
        ram = st.get("ram", {})
        return {"total_ms": st["total-time"], "downtime_ms": st["downtime"], "rounds": ram.get("dirty-sync-count"),
                "mb": ram["transferred"] / 1e6}

    def close(self):
        if self.pending:
            self.pending[0].kill()
        self.qmp.close()
        self.g.kill()
