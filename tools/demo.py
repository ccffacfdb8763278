"""make demo: boot the default guest and show, on its console, that it works."""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "integration"))
from vmtest import minivmm  # noqa: E402

g = minivmm("--cpus", "2", "--mem", "512M", "--verbose", log_name="demo")
g.log.write = (lambda w: (lambda s: (sys.stdout.write(s), sys.stdout.flush(), w(s))))(g.log.write)
try:
    took = g.boot(600)
    for cmd in ["uname -a", "grep -c ^processor /proc/cpuinfo", "grep MemTotal /proc/meminfo",
                "cat /proc/cmdline", "ip link"]:
        g.run(cmd)
    g.send("poweroff -f\n")
    rc = g.wait_exit(120)
    print(f"\ndemo: guest reached init {took:.1f}s after minivmm started; minivmm exited {rc}")
    sys.exit(rc)
finally:
    g.kill()
