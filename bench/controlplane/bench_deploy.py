#!/usr/bin/env python3
"""bench/controlplane part (b): submit -> every shard acknowledged (state
`running`) for --sites x --per-site vnodes on --procs x --agents-per-proc
simulated agents (gridemu-agent --simulate), against a separate
gridemu-controller process (tcp on 127.0.0.1, a temporary --db, METIS
placement). Prints one JSON document:

  {"benchmark": "controlplane-deploy", "vnodes": .., "links": .., "agents": ..,
   "agent_processes": .., "topology": "..", "submit_to_running_s": ..,
   "controller_vmhwm_mib": .., "controller_cpu_s": .., "sqlite_bytes": ..,
   "sqlite_db_bytes": .., "sqlite_wal_bytes": .., "agents_bytes_received": ..,
   "state": "running", "transitions": [...],
   "targets": {"deploy_seconds": 60, "controller_rss_mib": 2048},
   "meets_targets": true|false}

Topology (why: the addressing planner gives /32 routes from every router or
multi-homed vnode to every address it is not on a subnet with, so a
Barabasi-Albert graph or sites behind routers would need ~10^8..10^10 routes):
`sites` switches, each with per_site - 1 hosts (a group linked to it; rate and
delay on every host link), and the switches joined in a tree (switch i to
switch (i-1)//8, 100 mbit, 1 ms): ONE L2 LAN of sites * (per_site - 1) hosts
(a /15 at 100,000 vnodes), zero routes, every vnode reachable. The hosts
entries (one per host) are the biggest part of every shard. With 100 vnodes
per site and 100 vnodes per pnode, METIS keeps most sites whole; the switch
tree links (and any split site) are cut: VXLAN tunnels in two shards each.

Usage: bench_deploy.py --build DIR [--sites 1000] [--per-site 100]
       [--procs 4] [--agents-per-proc 250] [--max-vnodes 100] [--timeout 600]
       [--placement metis]
"""
import argparse, json, os, re, shutil, signal, socket, subprocess, sys, tempfile, time
import urllib.request, urllib.error


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def experiment_yaml(sites, per_site):
    out = ["name: cpbench", "duration: 10m", "seed: 11", "topology:", "  nodes:"]
    for i in range(sites):
        out.append(f"    s{i}: {{kind: switch}}")
    out.append("  groups:")
    for i in range(sites):
        out.append(f"    site{i}: {{count: {per_site - 1}, name: \"h{i}-{{i}}\", link_to: s{i}, "
                   f"link: {{rate: 100mbit, delay: 2ms}}}}")
    if sites > 1:
        out.append("  links:")
        for i in range(1, sites):
            out.append(f"    - {{endpoints: [s{(i - 1) // 8}, s{i}], rate: 100mbit, delay: 1ms}}")
    out.append("workload: []")
    return "\n".join(out) + "\n"


def status_field(pid, field):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])  # kB
    except OSError:
        pass
    return None


def cpu_seconds(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            parts = f.read().rsplit(")", 1)[1].split()
        return (int(parts[11]) + int(parts[12])) / os.sysconf("SC_CLK_TCK")
    except OSError:
        return None


def http(method, url, body=None, ctype=None):
    req = urllib.request.Request(url, data=body, method=method)
    if ctype:
        req.add_header("Content-Type", ctype)
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, json.loads(r.read() or b"null")
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"null")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", required=True)
    ap.add_argument("--sites", type=int, default=1000)
    ap.add_argument("--per-site", type=int, default=100)
    ap.add_argument("--procs", type=int, default=4)
    ap.add_argument("--agents-per-proc", type=int, default=250)
    ap.add_argument("--max-vnodes", type=int, default=100)
    ap.add_argument("--placement", default="metis")
    ap.add_argument("--timeout", type=float, default=600)
    ap.add_argument("--keep", action="store_true", help="keep the temporary directory")
    a = ap.parse_args()

    ctl_bin = os.path.join(a.build, "controller", "gridemu-controller")
    agent_bin = os.path.join(a.build, "node-agent", "gridemu-agent")
    for b in (ctl_bin, agent_bin):
        if not os.access(b, os.X_OK):
            sys.exit(f"bench_deploy: {b} not built")
    tmp = tempfile.mkdtemp(prefix="gridemu-cpbench-")
    procs = []
    result = {"benchmark": "controlplane-deploy"}
    try:
        zport, hport = free_port(), free_port()
        db = os.path.join(tmp, "controller.db")
        ctl_log = open(os.path.join(tmp, "controller.log"), "w")
        ctl = subprocess.Popen(
            [ctl_bin, "--db", db, "--agents", f"tcp://127.0.0.1:{zport}",
             "--http", f"127.0.0.1:{hport}", "--results-dir", os.path.join(tmp, "results"),
             "--placement", a.placement, "--heartbeat-timeout", "60s"],
            stdout=ctl_log, stderr=subprocess.STDOUT)
        procs.append(ctl)
        base = f"http://127.0.0.1:{hport}/api/v1"
        for _ in range(100):
            try:
                http("GET", base + "/experiments")
                break
            except (urllib.error.URLError, ConnectionError):
                time.sleep(0.1)
        n_agents = a.procs * a.agents_per_proc
        agent_logs = []
        for p in range(a.procs):
            path = os.path.join(tmp, f"agents{p}.log")
            agent_logs.append(path)
            procs.append(subprocess.Popen(
                [agent_bin, "--simulate", "--count", str(a.agents_per_proc),
                 "--host-id", f"sim{p}", "--controller", f"tcp://127.0.0.1:{zport}",
                 "--max-vnodes", str(a.max_vnodes), "--sim-task-ms", "10"],
                stdout=subprocess.DEVNULL, stderr=open(path, "w")))
        t0 = time.monotonic()
        while True:
            ready = sum(1 for path in agent_logs if "simulated agents welcomed" in open(path).read())
            if ready == a.procs:
                break
            if time.monotonic() - t0 > 120:
                sys.exit("bench_deploy: agents were not all welcomed in 120 s")
            for p in procs:
                if p.poll() is not None:
                    sys.exit(f"bench_deploy: a process exited early (see {tmp})")
            time.sleep(0.2)
        result["register_s"] = round(time.monotonic() - t0, 3)

        yaml = experiment_yaml(a.sites, a.per_site)
        vnodes = a.sites * a.per_site
        links = a.sites * (a.per_site - 1) + max(0, a.sites - 1)
        t_submit = time.monotonic()
        code, body = http("POST", base + "/experiments", yaml.encode(), "application/yaml")
        if code != 201:
            sys.exit(f"bench_deploy: submit answered {code}: {json.dumps(body)[:2000]}")
        exp_id = body["id"]
        state, rec = None, None
        while time.monotonic() - t_submit < a.timeout:
            code, rec = http("GET", f"{base}/experiments/{exp_id}")
            state = (rec or {}).get("state") or (rec or {}).get("experiment", {}).get("state")
            if state in ("running", "failed", "cancelled", "finished"):
                break
            time.sleep(0.1)
        elapsed = time.monotonic() - t_submit
        hwm = status_field(ctl.pid, "VmHWM")
        wal = db + "-wal"
        db_bytes = os.path.getsize(db) if os.path.exists(db) else 0
        wal_bytes = os.path.getsize(wal) if os.path.exists(wal) else 0
        result.update({
            "vnodes": vnodes, "links": links, "agents": n_agents, "agent_processes": a.procs,
            "max_vnodes_per_agent": a.max_vnodes, "placement": a.placement,
            "topology": f"{a.sites} switch sites x {a.per_site - 1} hosts, switches in an "
                        f"8-ary tree: one L2 LAN, no routes",
            "experiment": exp_id, "state": state,
            "submit_to_running_s": round(elapsed, 3),
            "controller_vmhwm_mib": round(hwm / 1024, 1) if hwm else None,
            "controller_cpu_s": cpu_seconds(ctl.pid),
            "sqlite_db_bytes": db_bytes, "sqlite_wal_bytes": wal_bytes,
            "sqlite_bytes": db_bytes + wal_bytes,
            "transitions": [{k: t.get(k) for k in ("to", "state", "reason", "at") if k in t}
                            for t in (rec or {}).get("transitions", [])][:8],
        })
        if state != "running":
            result["failure"] = (rec or {}).get("experiment", rec)
        result["targets"] = {"deploy_seconds": 60.0, "controller_rss_mib": 2048}
        result["meets_targets"] = bool(state == "running" and elapsed <= 60.0 and hwm
                                       and hwm / 1024 <= 2048)
        # Cancel (teardown on the agents), then stop everything.
        http("POST", f"{base}/experiments/{exp_id}/cancel", b"", "application/json")
        time.sleep(1.0)
    finally:
        for p in reversed(procs):
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in reversed(procs):
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        if a.keep:
            result["tmp"] = tmp
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
