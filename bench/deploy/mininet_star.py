#!/usr/bin/python3
"""Mininet reference for bench/deploy: a star of N hosts on one Linux bridge
(--switch lxbr, no controller), every host link shaped by HTB (TCLink bw=),
no link delay (this kernel has no sch_netem). Prints one JSON object:
{"tool": "mininet", "n": N, "build_start_s": ..., "stop_s": ..., "total_s": ...}.

Cleans up only what it created, through net.stop() (never `mn -c`, which
kills other people's processes)."""
import json
import sys
import time

from mininet.link import TCLink
from mininet.log import setLogLevel
from mininet.net import Mininet
from mininet.nodelib import LinuxBridge
from mininet.topo import Topo


class Star(Topo):
    def build(self, n=10, bw=100):
        s = self.addSwitch("s1")
        for i in range(n):
            h = self.addHost(f"h{i + 1}")
            self.addLink(h, s, cls=TCLink, bw=bw)


def main():
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 100
    bw = float(sys.argv[2]) if len(sys.argv) > 2 else 100
    setLogLevel("error")
    t0 = time.monotonic()
    net = Mininet(topo=Star(n=n, bw=bw), switch=LinuxBridge, controller=None, link=TCLink,
                  autoSetMacs=True, build=False)
    try:
        net.build()
        net.start()
        t1 = time.monotonic()
    finally:
        t2 = time.monotonic()
        net.stop()
        t3 = time.monotonic()
    print(json.dumps({"tool": "mininet", "n": n, "bw_mbit": bw, "build_start_s": t1 - t0,
                      "stop_s": t3 - t2, "total_s": t3 - t0}))


if __name__ == "__main__":
    main()
