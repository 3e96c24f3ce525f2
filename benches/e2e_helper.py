#!/usr/bin/env python3
"""Helper of benches/e2e.sh (standard library only): turns the simulator's tenant listing into
a harvester config and a baseline config, reads the simulator's served-row counters, counts
the points that arrived in VictoriaMetrics, and reads /metrics and /proc figures.

  e2e_helper.py configs SIM_OUT SIM_URL FALLBACK_URL VM_URL STATE_DIR LOOKBACK_S LISTEN OUT_DIR [MAX]
  e2e_helper.py served SIM_URL              -> "<connections rows> <machines rows>"
  e2e_helper.py count VM_URL EXPECTED       -> points of citrix_logon and citrix_machine
  e2e_helper.py cycles METRICS_URL          -> tenants with a finished successful cycle
"""

import json
import sys
import time
import urllib.request

from bench_common import tenant_lines, tenants_of, toml_str, token_urls


def configs(sim_out, sim_url, fallback_url, vm_url, state_dir, lookback_s, listen, out_dir,
            max_requests_in_flight="", gzip="", body_budget="", output_concurrency=""):
    tenants = tenants_of(sim_out)
    lookback_s = int(lookback_s)
    lines = [
        "[harvester]",
        'interval = "1h"',
        'jitter = "0s"',
        f"state_dir = {toml_str(state_dir)}",
        f'lookback = "{lookback_s}s"',
        "allow_inline_secrets = true",
        f"listen = {toml_str(listen)}",
    ]
    if max_requests_in_flight:
        lines.append(f"max_requests_in_flight = {int(max_requests_in_flight)}")
    if body_budget:
        lines.append(f"body_budget = {toml_str(body_budget)}")
    lines += [
        "",
        "[harvester.schedule]",
        'machines = "1h"',
        "",
        "[output]",
        'kind = "influxdb_v2"',
        f"url = {toml_str(vm_url)}",
        'org = "citrix"',
        'bucket = "citrix"',
    ]
    if gzip:
        lines.append(f"gzip = {'true' if gzip == '1' else 'false'}")
    if output_concurrency:
        value = output_concurrency if output_concurrency.isdigit() else toml_str(output_concurrency)
        lines.append(f"concurrency = {value}")
    lines += [""]
    baseline = {"influx_url": vm_url, "lookback_seconds": lookback_s, "tenants": []}
    for t in tenants:
        token, fallback = token_urls(t, sim_url, fallback_url)
        lines += tenant_lines(t, sim_url, fallback_url)
        lines += ['entities = ["connections", "machines"]', ""]
        baseline["tenants"].append({
            "name": t["name"], "customer_id": t["cid"], "client_id": t["client"],
            "client_secret": t["secret"], "token_url": token, "fallback_token_url": fallback,
            "monitor_url": sim_url + "/monitorodata"})
    with open(f"{out_dir}/harvester.toml", "w", encoding="utf-8") as f:
        f.write("\n".join(lines))
    with open(f"{out_dir}/baseline.json", "w", encoding="utf-8") as f:
        json.dump(baseline, f, ensure_ascii=False)
    print(len(tenants))


def get(url):
    with urllib.request.urlopen(url, timeout=120) as r:
        return r.read()


def served(sim_url):
    stats = json.loads(get(f"{sim_url}/_sim/stats"))
    conns = machines = 0
    for t in stats["tenants"].values():
        conns += t["rows_served"].get("Connections", 0)
        machines += t["rows_served"].get("Machines", 0)
    print(conns, machines)


def samples(vm_url, metric):
    body = get(f"{vm_url}/api/v1/export?match[]={metric}")
    return sum(len(json.loads(line)["values"]) for line in body.splitlines() if line.strip())


def count(vm_url, expected):
    """Polls (VictoriaMetrics can take seconds to show new series) until the count reaches
    `expected` or stops growing for 10 s."""
    expected = int(expected)
    last, stable_since = -1, time.monotonic()
    while True:
        get(f"{vm_url}/internal/force_flush")
        # Every logon point has connection_id, every machine point `registered`.
        n = samples(vm_url, "citrix_logon_connection_id") + samples(vm_url, "citrix_machine_registered")
        if n >= expected:
            break
        if n != last:
            last, stable_since = n, time.monotonic()
        elif time.monotonic() - stable_since > 10:
            break
        time.sleep(0.5)
    print(n)


def cycles(metrics_url):
    try:
        text = get(metrics_url).decode()
    except OSError:
        print(0)
        return
    print(sum(1 for line in text.splitlines()
              if line.startswith("citrix_harvester_last_success_timestamp_seconds{")))


if __name__ == "__main__":
    cmd, args = sys.argv[1], sys.argv[2:]
    {"configs": configs, "served": served, "count": count, "cycles": cycles}[cmd](*args)
