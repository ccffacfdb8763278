"""make demo: boot the default guest with a NIC and show, on its console,
that it works: CPUs, memory, and the network (a ping to the host side of its
tap, which lives in a network namespace made for the demo)."""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "integration"))
from netns import Netns  # noqa: E402
from vmtest import minivmm  # noqa: E402

ns = Netns("mvdemo")
ns.sh("ip tuntap add dev tap0 mode tap && ip addr add 10.0.2.1/24 dev tap0 && ip link set tap0 up")
g = minivmm("--cpus", "2", "--mem", "512M", "--verbose", "--stats", "--net", "tap0",
            "--cmdline", "console=ttyS0 guest.ip=eth0:10.0.2.15/24", wrap=ns.prefix(), log_name="demo")
g.log.write = (lambda w: (lambda s: (sys.stdout.write(s), sys.stdout.flush(), w(s))))(g.log.write)
try:
    took = g.boot(600)
    for cmd in ["uname -a", "grep -c ^processor /proc/cpuinfo", "grep MemTotal /proc/meminfo",
                "cat /proc/cmdline", "ip addr show eth0", "ethtool -k eth0 | grep -E '^(tx|rx)-check|^tcp-seg'"]:
        g.run(cmd)
    rc, out = g.run("ping -c 5 10.0.2.1")
    net_ok = rc == 0 and " 0% packet loss" in out
    g.send("poweroff -f\n")
    rc = g.wait_exit(120)
    print(f"\ndemo: guest reached init {took:.1f}s after minivmm started; network "
          f"{'works (ping 0% loss)' if net_ok else 'FAILED'}; minivmm exited {rc}")
    sys.exit(rc if net_ok else 1)
finally:
    g.kill()
    ns.close()
