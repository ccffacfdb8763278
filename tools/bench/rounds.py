"""Interleaved rounds, as every VM table of make bench takes them: each round
measures every row once, starting one row further on than the round before
(so drift in the host hits every row alike). A row that fails is retried
once in a fresh VM, loudly; failing again, that round has no sample."""
import time


def say(msg):
    print(f"bench: {msg}", flush=True)


def why(e):
    """The first line of what went wrong, and its last if that differs (a
    VMM that exited early prints its reason last)."""
    lines = [ln.strip() for ln in str(e).strip().splitlines() if ln.strip()] or [type(e).__name__]
    text = lines[0][:300]
    if len(lines) > 1:
        text += " ... " + lines[-1][:200]
    return text


def slug(name):
    return "".join(c if c.isalnum() else "-" for c in name)


def run(names, rounds, measure, show, after_sample=lambda results: None):
    """measure(name, log_name) -> sample dict; show(sample) -> one line.
    Returns ({name: [sample or None per round]}, retried, failed)."""
    results = {n: [] for n in names}
    retried, failed = [], []
    for r in range(rounds):
        for name in names[r % len(names):] + names[:r % len(names)]:
            sample = None
            for attempt in (1, 2):
                try:
                    sample = measure(name, f"bench-r{r + 1}-{slug(name)}" + ("-retry" if attempt == 2 else ""))
                    break
                except Exception as e:  # noqa: BLE001 - any failure gets the one retry
                    if attempt == 1:
                        say(f"RETRY round {r + 1} {name}: failed ({why(e)}); retrying once in a fresh VM")
                        retried.append(f"round {r + 1} {name}")
                    else:
                        say(f"FAILED round {r + 1} {name}: failed again ({why(e)}); no sample this round")
                        failed.append(f"round {r + 1} {name}")
            results[name].append(sample)
            if sample:
                say(f"round {r + 1} {name}: {show(sample)}")
            # After every sample: an outer host that dies mid-run (README,
            # known problems) still leaves what was measured.
            after_sample(results)
    return results, retried, failed


def pick(all_names, env_value):
    """The rows an environment variable (comma-separated names) keeps, or
    all; raises ValueError naming any that do not exist."""
    if not env_value:
        return list(all_names)
    keep = [n.strip() for n in env_value.split(",") if n.strip()]
    unknown = [n for n in keep if n not in all_names]
    if unknown:
        raise ValueError(f"no such row: {', '.join(unknown)} (rows: {', '.join(all_names)})")
    return keep


def elapsed(t0):
    return f"{time.monotonic() - t0:.0f} s"
