"""All-pairs ping matrix of the Abilene example against the path delays the
topology library computes (`gridemu topo paths`): for each ordered pair of
hosts, measured minimum RTT vs twice the one-way path delay, and the error.

Run in a results directory; reads files/<host>/rtt.txt (lines
"<dst> rtt min/avg/max/mdev = a/b/c/d ms"); writes analysis.json."""
import json
import os
import re
import subprocess

from common import collected, write

gridemu = os.environ.get("GRIDEMU", "gridemu")
experiment = os.environ["GRIDEMU_EXPERIMENT_FILE"]
paths = json.loads(subprocess.run([gridemu, "topo", "paths", experiment, "--json"],
                                  check=True, capture_output=True, text=True).stdout)
expected = {(p["src"], p["dst"]): 2 * p["delay_ns"] / 1e6 for p in paths["paths"] if p["reachable"]}

rows = []
for src, path in collected("rtt.txt"):
    for line in open(path):
        m = re.match(r"(\S+) rtt min/avg/max/mdev = ([0-9.]+)/([0-9.]+)/([0-9.]+)/([0-9.]+) ms", line)
        if not m:
            continue
        dst = m.group(1)
        rtt = float(m.group(2))
        want = expected.get((src, dst))
        if want is None:
            continue
        rows.append({"src": src, "dst": dst, "rtt_ms": rtt, "expected_ms": want,
                     "error_ms": rtt - want, "error_pct": 100 * (rtt - want) / want})

print(f"{'pair':<34} {'min RTT':>9} {'2 x path':>9} {'error':>8}")
for r in sorted(rows, key=lambda r: (r["src"], r["dst"])):
    print(f"{r['src'] + ' -> ' + r['dst']:<34} {r['rtt_ms']:>7.3f}ms {r['expected_ms']:>7.3f}ms "
          f"{r['error_ms']:>+7.3f}ms")
if rows:
    worst = max(rows, key=lambda r: abs(r["error_ms"]))
    within = sum(1 for r in rows if abs(r["error_ms"]) <= 0.02 * r["expected_ms"] + 0.5)
    print(f"{len(rows)} pairs of {len(expected)} expected; {within} within 2% + 0.5 ms; worst "
          f"{worst['src']} -> {worst['dst']}: {worst['error_ms']:+.3f} ms")
write({"pairs": rows, "expected_pairs": len(expected)})
