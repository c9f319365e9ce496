"""Per-flow goodput and Jain's fairness index of the dumbbell example.

usage: dumbbell.py BOTTLENECK_RATE   (run in a results directory)
Reads files/left*/flow.json (iperf3 -P 2 -J: one entry per TCP stream),
prints a table and writes analysis.json: {"flows": [...], "sum_bps", "jain"}."""
import json
import sys

from common import GOODPUT_FRACTION, collected, jain, parse_rate, write

bottleneck = parse_rate(sys.argv[1] if len(sys.argv) > 1 else "10mbit")
expected = bottleneck * GOODPUT_FRACTION
flows = []
for vnode, path in collected("flow.json"):
    try:
        doc = json.load(open(path))
    except (OSError, ValueError) as e:
        print(f"{vnode}: unreadable iperf3 output ({e})")
        continue
    peer = "right" + vnode[len("left"):]
    for k, stream in enumerate(doc.get("end", {}).get("streams", [])):
        bps = stream.get("receiver", {}).get("bits_per_second")
        if bps is not None:
            flows.append({"flow": f"{vnode}->{peer}#{k}", "goodput_bps": bps})

total = sum(f["goodput_bps"] for f in flows)
j = jain([f["goodput_bps"] for f in flows])
print(f"{'flow':<22} {'goodput':>12}")
for f in flows:
    print(f"{f['flow']:<22} {f['goodput_bps'] / 1e6:>9.3f} mbit")
print(f"{len(flows)} flows, sum {total / 1e6:.3f} mbit = {100 * total / expected:.1f}% of the "
      f"bottleneck's goodput ({expected / 1e6:.3f} mbit = {bottleneck / 1e6:g} mbit x 1448/1514)")
print(f"Jain's fairness index: {j:.3f}")
write({"bottleneck_bps": bottleneck, "expected_goodput_bps": expected, "flows": flows,
       "sum_bps": total, "jain": j})
