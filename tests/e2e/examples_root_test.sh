#!/usr/bin/env bash
# End-to-end test of one shipped example at reduced size, through the real
# `gridemu run` (root: namespaces, cgroups, shaping). Checks what issue 5 asks:
#   dumbbell-tcp     : the 2 x N flows' goodput sums within 5 % of the bottleneck
#                      (rate x 1448/1514 after header overhead)
#   bittorrent-swarm : every leecher completes and its SHA-256 matches the seed's
#   abilene-ping     : every RTT within 2 % + 0.5 ms of twice the computed path delay
# usage: examples_root_test.sh GRIDEMU_BIN SOURCE_DIR EXAMPLE
# Exit 77 (ctest SKIP_RETURN_CODE) without root.
set -euo pipefail
bin=$1 src=$2 example=$3
if [ "$(id -u)" != 0 ]; then echo "skipped: $example needs root"; exit 77; fi
tmp=$(mktemp -d /tmp/gridemu-e2e-XXXXXX)
prefix="gx$$"
cleanup() {
  "$bin" clean --prefix "$prefix" >/dev/null 2>&1 || true
  rm -rf "$tmp"
}
trap cleanup EXIT
cp -r "$src/examples/." "$tmp/"
f="$tmp/$example.yaml"
case "$example" in
  dumbbell-tcp)
    sed -i 's/count: 4/count: 2/; s/-t 30/-t 12/' "$f" ;;
  bittorrent-swarm)
    # 10 leechers (4 + 3 + 3) and a 5 MB file
    sed -i '0,/count: 14/s//count: 4/; 0,/count: 14/s//count: 3/; 0,/count: 14/s//count: 3/; s/head -c 20M/head -c 5M/' "$f" ;;
  abilene-ping) ;;
  *) echo "unknown example $example"; exit 2 ;;
esac
set +e
GRIDEMU_RUN_LOCK="$tmp/run.lock" "$bin" run "$f" --results "$tmp/results" \
  --agent-prefix "$prefix" --progress plain
rc=$?
set -e
echo "gridemu run exited $rc"
[ "$rc" = 0 ] || exit 1
res=$(ls -d "$tmp"/results/*/ | head -1)
python3 - "$example" "$res/analysis.json" <<'PY'
import json, sys
example, path = sys.argv[1], sys.argv[2]
a = json.load(open(path))
fail = []
if example == "dumbbell-tcp":
    exp = a["expected_goodput_bps"]
    err = abs(a["sum_bps"] - exp) / exp
    print(f"{len(a['flows'])} flows, sum {a['sum_bps']/1e6:.3f} mbit, expected {exp/1e6:.3f}, "
          f"error {100*err:.1f}%, Jain {a['jain']:.3f}")
    if len(a["flows"]) != 4 or err > 0.05:
        fail.append("goodput sum")
elif example == "bittorrent-swarm":
    ls = a["leechers"]
    print(f"{len(ls)} leechers; complete and matching: {sum(1 for l in ls if l['ok'] and l['sha256_ok'])}")
    if len(ls) != 10 or not a["all_complete"]:
        fail += [l["vnode"] for l in ls if not (l["ok"] and l["sha256_ok"])] or ["count"]
elif example == "abilene-ping":
    ps = a["pairs"]
    bad = [p for p in ps if abs(p["error_ms"]) > 0.02 * p["expected_ms"] + 0.5]
    worst = max(ps, key=lambda p: abs(p["error_ms"])) if ps else None
    print(f"{len(ps)} of {a['expected_pairs']} pairs measured; {len(bad)} outside 2% + 0.5 ms"
          + (f"; worst {worst['src']} -> {worst['dst']} {worst['error_ms']:+.3f} ms" if worst else ""))
    if len(ps) != a["expected_pairs"] or bad:
        fail += [f"{p['src']}->{p['dst']}" for p in bad] or ["missing pairs"]
if fail:
    print("FAILED:", ", ".join(fail))
    sys.exit(1)
print("ok")
PY
