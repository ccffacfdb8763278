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

from test_migration import Vm
from vmtest import INITRD, KERNEL, Guest, TestFailure

import configs
from qmp import Qmp, QmpError

MIGRATE_TIMEOUT = 600  # a move that never converges is cancelled and fails its row


class MiniVm:
    def __init__(self, ns, tap, name):
        self.vm = Vm(ns, tap, name, 1, 1)  # boots on vhost=kernel
        self.backend = "kernel"

    @property
    def g(self):
        return self.vm.g

    def boot(self, timeout):
        return self.vm.g.boot(timeout)

    def move(self, dst):
        rep = self.vm.migrate(dst)
        self.backend = dst
        return {"total_ms": rep["total_ms"], "downtime_ms": rep["downtime_ms"], "rounds": rep["rounds"],
                "mb": rep["bytes"] / 1e6}

    def close(self):
        self.vm.g.kill()


class QemuVm:
    backend = "qemu"

    def __init__(self, ns, tap, name):
        self.ns, self.tap, self.name = ns, tap, name
        self.dir = tempfile.mkdtemp(prefix=f"qemu-mig-{name}-")
        self.hop = 0
        self.defaults = None  # QEMU's own migration parameters, as it first reported them
        self.g, self.qmp = self._start(None)

    def _start(self, incoming):
        qmp_path = os.path.join(self.dir, f"qmp{self.hop}.sock")
        # queues=2 on the netdev: QEMU opens a tap multi_queue only when asked
        # for more than one queue, and the shared tap is multi_queue. The
        # device keeps mq off (its default), so the guest sees one pair, as
        # minivmm's does, and QEMU detaches the tap queue it does not use.
        argv = self.ns.prefix() + [
            "qemu-system-x86_64", "-enable-kvm", "-cpu", "host", "-m", str(configs.MEM_MIB), "-smp", "1",
            "-nographic", "-nodefaults", "-no-reboot", "-serial", "stdio", "-kernel", KERNEL, "-initrd", INITRD,
            "-append", configs.APPEND,
            "-netdev", f"tap,id=n0,ifname={self.tap},script=no,downscript=no,vhost=on,queues=2",
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

    def move(self, bandwidth=None):
        """bandwidth: max-bandwidth in bytes/s for this move, or QEMU's default."""
        if self.defaults is None:
            self.defaults = self.qmp.cmd("query-migrate-parameters")
        self.hop += 1
        uri = f"unix:{os.path.join(self.dir, f'in{self.hop}.sock')}"
        dest, dest_qmp = self._start(uri)
        try:
            if bandwidth:
                self.qmp.cmd("migrate-set-parameters", **{"max-bandwidth": bandwidth})
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
        self.qmp.close()
        self.g.kill()
