"""Download-completion times per access class of the BitTorrent example, and
an integrity check of every leecher's file against the seed's (SHA-256).

Run in a results directory; reads tasks.csv, files/<vnode>/file.bin and the
run's shared copy (GRIDEMU_SHARED/file.bin); writes analysis.json."""
import hashlib
import os
import re
import statistics

from common import collected, tasks, write


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


shared = os.environ.get("GRIDEMU_SHARED", "shared")
want = sha256(os.path.join(shared, "file.bin"))
got = {vnode: sha256(path) for vnode, path in collected("file.bin") if vnode != "seeder"}

classes = {}
leechers = []
for t in tasks():
    if t.get("task") != "leech":
        continue
    vnode = t["vnode"]
    cls = re.sub(r"[0-9]+$", "", vnode)
    ok = t.get("state") == "exited" and t.get("exit_code") == "0"
    duration = float(t["duration"]) if t.get("duration") else None
    leechers.append({"vnode": vnode, "class": cls, "ok": ok, "duration_s": duration,
                     "sha256_ok": got.get(vnode) == want})
    if ok and duration is not None:
        classes.setdefault(cls, []).append(duration)

print(f"{'class':<8} {'done':>5} {'min':>8} {'median':>8} {'max':>8}   (seconds to complete)")
summary = {}
for cls in sorted(classes):
    d = classes[cls]
    summary[cls] = {"completed": len(d), "min_s": min(d), "median_s": statistics.median(d),
                    "max_s": max(d)}
    print(f"{cls:<8} {len(d):>5} {min(d):>8.1f} {statistics.median(d):>8.1f} {max(d):>8.1f}")
bad = [l["vnode"] for l in leechers if not l["sha256_ok"]]
print(f"{len(leechers) - len(bad)}/{len(leechers)} leechers have the seed's file "
      f"(SHA-256 {want[:16]}...)" + (f"; mismatched or missing: {', '.join(bad)}" if bad else ""))
write({"sha256": want, "leechers": leechers, "classes": summary,
       "all_complete": bool(leechers) and not bad and all(l["ok"] for l in leechers)})
