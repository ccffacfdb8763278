"""make bench's datapath microbenchmark (build/bench/bench_datapath, no VM):
worker and kernel vhost-net against a tap, and memcpy. tools/bench.sh runs
it on this machine, tools/bench/run.py in the outer host (where
/dev/vhost-net exists). Writes DIR/datapath{SUFFIX}.json (Google Benchmark's
own), .csv and .md (tools/bench/datapath_table.py); the table goes to stdout.

    datapath.py DIR [SUFFIX]

Environment: MINIVMM_BENCH_QUICK=1 (1 round of 0.1 s per row; else 3
rounds of 0.5 s, in random interleaved order), MINIVMM_BENCH_ROUNDS
overrides the rounds, MINIVMM_BENCH_DATAPATH_FILTER keeps only the rows
whose name matches (a --benchmark_filter regex: WorkerTx/64/, Kernel,
Memcpy, ...), MINIVMM_BENCH_PROFILE=REGEX[,REGEX...] runs the rows matching
each REGEX once more under `perf record -a` (whole system, so that
vhost-net's kernel thread is seen too) and writes perf{SUFFIX}-<REGEX>.txt
beside.
"""
import os
import re
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
BIN = os.path.join(REPO, "build", "bench", "bench_datapath")


def say(msg):
    print(f"bench: {msg}", flush=True)


def settings():
    quick = os.environ.get("MINIVMM_BENCH_QUICK") == "1"
    rounds = int(os.environ.get("MINIVMM_BENCH_ROUNDS") or (1 if quick else 3))
    return rounds, "0.1" if quick else "0.5"


def run(out, suffix=""):
    """Returns whether a table came out (a row that fails still makes one)."""
    rounds, min_time = settings()
    os.makedirs(out, exist_ok=True)
    base = os.path.join(out, "datapath" + suffix)
    for ext in (".json", ".csv", ".md"):
        if os.path.exists(base + ext):
            os.remove(base + ext)
    argv = [BIN, f"--benchmark_min_time={min_time}", f"--benchmark_out={base}.json", "--benchmark_out_format=json"]
    if rounds > 1:
        argv += [f"--benchmark_repetitions={rounds}", "--benchmark_enable_random_interleaving=true"]
    if os.environ.get("MINIVMM_BENCH_DATAPATH_FILTER"):
        argv.append("--benchmark_filter=" + os.environ["MINIVMM_BENCH_DATAPATH_FILTER"])
    say(f"datapath: {rounds} round(s), {min_time} s per row at least: {' '.join(argv[1:])}")
    rc = subprocess.run(argv).returncode
    if rc or not os.path.exists(base + ".json"):
        say(f"the datapath microbenchmark failed (status {rc})")
        return False
    with open(base + ".md", "w") as md:
        if subprocess.run([sys.executable, os.path.join(HERE, "datapath_table.py"), base + ".json", base + ".csv"],
                          stdout=md).returncode:
            say("datapath_table.py failed")
            return False
    with open(base + ".md") as md:
        print("\n" + md.read(), flush=True)
    for regex in (os.environ.get("MINIVMM_BENCH_PROFILE") or "").split(","):
        if regex.strip().startswith("Kernel") and not os.path.exists("/dev/vhost-net"):
            say(f"profile of {regex.strip()}: skipped, no /dev/vhost-net here")
        elif regex.strip():
            profile(out, suffix, regex.strip(), min_time)
    return True


def profile(out, suffix, regex, min_time):
    """perf over the whole system while the rows matching regex run once:
    what the worker's threads and vhost-net's kernel thread spend it on.
    At least 2 s a row, so that setting up (faulting in the driver's
    memory) is a small part of it."""
    slug = re.sub(r"[^A-Za-z0-9]+", "-", regex).strip("-")
    # Not on the rig's results share (9p): perf cannot mmap its file there.
    data = os.path.join(os.environ.get("TMPDIR", "/tmp"), f"perf{suffix}-{slug}.data")
    argv = ["perf", "record", "-a", "-g", "-e", "cpu-clock", "-F", "2000", "-o", data, "--",
            BIN, f"--benchmark_min_time={max(2.0, float(min_time))}", "--benchmark_filter=" + regex]
    say("profile: " + " ".join(argv))
    if subprocess.run(argv).returncode:
        say("perf record failed")
        return
    txt = os.path.join(out, f"perf{suffix}-{slug}.txt")
    # Three views: each thread's share (idle CPUs as swapper), each
    # function's own samples, and inclusive ones (call chains: which
    # system call or kernel path a thread's time is under).
    views = [("by thread", ["--no-children", "--sort", "comm"]),
             ("by function, self", ["--no-children", "--sort", "comm,dso,sym", "--percent-limit", "0.3"]),
             ("by function, inclusive", ["--children", "--sort", "comm,sym", "--percent-limit", "1.5"])]
    with open(txt, "w") as f:
        f.write(f"# {' '.join(argv)}\n")
        for title, opts in views:
            f.write(f"\n########## {title}\n")
            f.flush()
            subprocess.run(["perf", "report", "-i", data, "--stdio", "-g", "none", *opts], stdout=f,
                           stderr=subprocess.DEVNULL)
    os.remove(data)  # large; the report is what is kept
    say(f"profile written to {txt}")


if __name__ == "__main__":
    sys.exit(0 if run(sys.argv[1], sys.argv[2] if len(sys.argv) > 2 else "") else 1)
