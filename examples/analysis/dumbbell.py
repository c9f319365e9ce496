"""Per-flow goodput and Jain's fairness index of the dumbbell example.

usage: dumbbell.py BOTTLENECK_RATE   (run in a results directory)
Reads files/left*/flow.json (iperf3 --bidir -J), prints a table and writes
analysis.json: {"flows": [...], "directions": {...}, "jain": x}."""
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
    end = doc.get("end", {})
    fwd = end.get("sum_received", {}).get("bits_per_second")
    rev = end.get("sum_received_bidir_reverse", {}).get("bits_per_second")
    peer = "right" + vnode[len("left"):]
    if fwd is not None:
        flows.append({"flow": f"{vnode}->{peer}", "direction": "left->right", "goodput_bps": fwd})
    if rev is not None:
        flows.append({"flow": f"{peer}->{vnode}", "direction": "right->left", "goodput_bps": rev})

directions = {}
for d in ("left->right", "right->left"):
    g = [f["goodput_bps"] for f in flows if f["direction"] == d]
    directions[d] = {"flows": len(g), "sum_bps": sum(g),
                     "of_bottleneck_goodput": sum(g) / expected if expected else 0.0,
                     "jain": jain(g)}
j = jain([f["goodput_bps"] for f in flows])

print(f"{'flow':<20} {'goodput':>12}")
for f in flows:
    print(f"{f['flow']:<20} {f['goodput_bps'] / 1e6:>9.3f} mbit")
for d, s in directions.items():
    print(f"{d}: {s['flows']} flows, sum {s['sum_bps'] / 1e6:.3f} mbit = "
          f"{100 * s['of_bottleneck_goodput']:.1f}% of the bottleneck's goodput "
          f"({expected / 1e6:.3f} mbit = {bottleneck / 1e6:g} mbit x 1448/1514), "
          f"Jain {s['jain']:.3f}")
print(f"Jain's fairness index over all {len(flows)} flows: {j:.3f}")
write({"bottleneck_bps": bottleneck, "expected_goodput_bps": expected, "flows": flows,
       "directions": directions, "jain": j})
