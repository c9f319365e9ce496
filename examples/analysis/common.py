"""Helpers shared by the example analyses: run inside a results directory
(DESIGN.md §10) by `gridemu run` (`analyze:`), they print a human summary and
write analysis.json for tests and plots."""
import csv
import glob
import json
import os
import re

# Goodput model for TCP over Ethernet-sized packets shaped by HTB, which counts
# each packet's length including its 14-byte Ethernet header: a 1500-byte MTU
# carries 1448 bytes of payload (1500 - 20 IP - 20 TCP - 12 timestamp option),
# i.e. goodput = rate * 1448 / 1514.
GOODPUT_FRACTION = 1448.0 / 1514.0


def parse_rate(text):
    """'10mbit' -> 10e6 bits/s (tc units; only the bit forms are needed here)."""
    m = re.fullmatch(r"([0-9.]+)(bit|kbit|mbit|gbit)", text)
    if not m:
        raise SystemExit(f"bad rate {text!r}; expected e.g. 10mbit")
    return float(m.group(1)) * {"bit": 1, "kbit": 1e3, "mbit": 1e6, "gbit": 1e9}[m.group(2)]


def collected(pattern):
    """Collected files matching files/<vnode>/<pattern>, as (vnode, path)."""
    out = []
    for path in sorted(glob.glob(os.path.join("files", "*", "**", pattern), recursive=True)):
        vnode = path.split(os.sep)[1]
        out.append((vnode, path))
    return out


def tasks():
    """Rows of tasks.csv as dicts (empty when absent)."""
    if not os.path.exists("tasks.csv"):
        return []
    with open("tasks.csv", newline="") as f:
        return list(csv.DictReader(f))


def write(result):
    with open("analysis.json", "w") as f:
        json.dump(result, f, indent=2)
        f.write("\n")


def jain(xs):
    """Jain's fairness index (Jain, Chiu & Hawe, DEC-TR-301, 1984)."""
    if not xs or sum(x * x for x in xs) == 0:
        return 0.0
    return sum(xs) ** 2 / (len(xs) * sum(x * x for x in xs))
