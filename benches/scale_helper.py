#!/usr/bin/env python3
"""Helper of benches/scale.sh (standard library only): writes the daemon's config (the default
schedule scaled by the simulated clock's time scale), serves a cheap line-counting output,
samples a process's RSS and CPU from /proc, snapshots the simulator's /_sim/stats and the
harvester's /metrics, counts what the output stored, and turns it all into one result row.

  scale_helper.py config SIM_OUT SIM_URL FALLBACK_URL OUTPUT OUT_URL STATE_DIR LISTEN OUT_DIR TIME_SCALE [KINDS]
  scale_helper.py count-server PORT                 -> serves /api/v2/write (204) and GET /count
  scale_helper.py sample PID OUT_FILE               -> "monotonic_s rss_kb cpu_s" every second
  scale_helper.py snapshot SIM_URL METRICS_URL OUT_JSON
  scale_helper.py tenants-done METRICS_URL          -> tenants with at least one finished cycle
  scale_helper.py quiet SIM_URL SECONDS TIMEOUT     -> exit 0 once the simulator saw no request
                                                       in flight for SECONDS in a row
  scale_helper.py stored OUTPUT OUT_URL OUT_JSON    -> points stored, per measurement
  scale_helper.py logged LOG_FILE                   -> "<records> <points> <write timeouts>" (whole run)
  scale_helper.py row N SIM_OUT SNAP0 SNAP1 SIMFINAL STORED SAMPLES TIME_SCALE IDLE_KB RECORDS POINTS TIMEOUTS
  scale_helper.py row-header | window
"""

import collections
import gzip
import http.server
import json
import os
import re
import statistics
import sys
import threading
import time
import urllib.parse
import urllib.request

from bench_common import tenant_lines, tenants_of, toml_str

# config.rs default_schedule and HarvesterConfig::default, in simulated seconds.
DEFAULT_INTERVAL = 300
DEFAULT_SCHEDULE = {"machines": 60, "summaries_minute": 300, "summaries_hourly": 900,
                    "summaries_daily": 3600}
DEFAULT_JITTER = 30
LONGEST_INTERVAL = max([DEFAULT_INTERVAL, *DEFAULT_SCHEDULE.values()])
# Entity sets the harvester reads as lookup tables (failure category names), not as records.
LOOKUPS = {"ConnectionFailureCategories"}


def wall(seconds, scale):
    """A simulated duration as the harvester's wall-clock setting, in milliseconds."""
    return f'"{max(1000, round(seconds / scale * 1000))}ms"'


def config(sim_out, sim_url, fallback_url, output, out_url, state_dir, listen, out_dir,
           time_scale, kinds=""):
    scale = float(time_scale)
    tenants = tenants_of(sim_out)
    lines = [
        "[harvester]",
        f"interval = {wall(DEFAULT_INTERVAL, scale)}",
        f"jitter = {wall(DEFAULT_JITTER, scale)}",
        f"state_dir = {toml_str(state_dir)}",
        "allow_inline_secrets = true",
        f"listen = {toml_str(listen)}",
    ]
    if os.environ.get("BODY_BUDGET"):
        lines.append(f"body_budget = {toml_str(os.environ['BODY_BUDGET'])}")
    lines += ["", "[harvester.schedule]"]
    lines += [f"{k} = {wall(v, scale)}" for k, v in DEFAULT_SCHEDULE.items()]
    lines += ["", "[output]"]
    if output == "influxdb1":
        lines += ['kind = "influxdb_v1"', f"url = {toml_str(out_url)}", 'database = "citrix"']
    else:  # vm and count both take the InfluxDB v2 write API
        lines += ['kind = "influxdb_v2"', f"url = {toml_str(out_url)}", 'org = "citrix"',
                  'bucket = "citrix"']
    lines.append("")
    entities = [k for k in kinds.replace(",", " ").split() if k]
    for t in tenants:
        lines += tenant_lines(t, sim_url, fallback_url)
        if entities:
            lines.append(f"entities = {json.dumps(entities)}")
        lines.append("")
    with open(f"{out_dir}/harvester.toml", "w", encoding="utf-8") as f:
        f.write("\n".join(lines))
    print(len(tenants))


def count_server(port):
    """A stand-in output that costs little CPU but still counts every point: accepts
    /api/v2/write (gzip or not), counts lines per measurement, answers 204."""
    lock = threading.Lock()
    lines = collections.Counter()
    state = {"requests": 0, "bytes": 0}

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args):
            pass

        def reply(self, code, body=b""):
            self.send_response(code)
            self.send_header("Content-Length", str(len(body)))
            if body:
                self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self):
            if self.path.startswith("/count"):
                with lock:
                    body = json.dumps({"requests": state["requests"], "bytes": state["bytes"],
                                       "measurements": dict(lines)}).encode()
                self.reply(200, body)
            else:
                self.reply(200 if self.path.startswith("/health") else 404)

        def do_POST(self):
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            if not self.path.startswith("/api/v2/write"):
                self.reply(404)
                return
            if self.headers.get("Content-Encoding", "") == "gzip":
                body = gzip.decompress(body)
            counted = collections.Counter(
                line.split(b",", 1)[0].split(b" ", 1)[0].decode()
                for line in body.split(b"\n") if line and not line.startswith(b"#"))
            with lock:
                lines.update(counted)
                state["requests"] += 1
                state["bytes"] += len(body)
            self.reply(204)

    srv = http.server.ThreadingHTTPServer(("127.0.0.1", int(port)), Handler)
    srv.daemon_threads = True
    srv.serve_forever()


def sample(pid, out_file):
    """Every second: monotonic seconds (the clock snapshots carry), RSS in kB and user+sys
    CPU seconds of PID, until it exits."""
    tick = 100.0  # USER_HZ on Linux
    with open(out_file, "w", encoding="utf-8", buffering=1) as out:
        while True:
            try:
                with open(f"/proc/{pid}/status", encoding="utf-8") as f:
                    rss = next(int(l.split()[1]) for l in f if l.startswith("VmRSS:"))
                with open(f"/proc/{pid}/stat", encoding="utf-8") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
                cpu = (int(fields[11]) + int(fields[12])) / tick
            except (OSError, StopIteration, IndexError):
                return
            out.write(f"{time.monotonic():.1f} {rss} {cpu:.2f}\n")
            time.sleep(1)


def get(url, timeout=300):
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return r.read()


def parse_metrics(text):
    """Prometheus text -> {name: {labels-tuple: value}}."""
    out = collections.defaultdict(dict)
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            out.setdefault(line.split()[2], {})  # a family without samples counts as zero
        if not line or line.startswith("#"):
            continue
        m = re.match(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{.*\})? (\S+)$', line)
        if not m:
            continue
        labels = tuple(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', m.group(2) or ""))
        try:
            out[m.group(1)][labels] = float(m.group(3))
        except ValueError:
            pass
    return out


def snapshot(sim_url, metrics_url, out_json):
    sim = json.loads(get(f"{sim_url}/_sim/stats"))
    try:
        metrics = parse_metrics(get(metrics_url).decode())
    except OSError:
        metrics = {}
    snap = {"at": time.monotonic(), "sim": sim,
            "metrics": {k: [[list(l), v] for l, v in d.items()] for k, d in metrics.items()}}
    with open(out_json, "w", encoding="utf-8") as f:
        json.dump(snap, f)


def tenants_done(metrics_url):
    try:
        m = parse_metrics(get(metrics_url).decode())
    except OSError:
        print(0)
        return
    print(sum(1 for v in m.get("citrix_harvester_cycles_total", {}).values() if v >= 1)
          or len(m.get("citrix_harvester_cycle_duration_seconds", {})))


def quiet(sim_url, seconds, timeout):
    seconds, deadline = float(seconds), time.monotonic() + float(timeout)
    since = None
    while time.monotonic() < deadline:
        busy = json.loads(get(f"{sim_url}/_sim/stats"))["api"]["in_flight"]
        now = time.monotonic()
        if busy:
            since = None
        elif since is None:
            since = now
        elif now - since >= seconds:
            sys.exit(0)
        time.sleep(0.5)
    sys.exit(1)


def vm_stored(vm_url):
    """Distinct (series, timestamp) per measurement, and extra copies of a point (a point
    written twice, e.g. a re-read row, stays twice in VictoriaMetrics: a field series that
    repeats a timestamp). VictoriaMetrics is started with '.' between measurement and field,
    so a metric name splits cleanly; the fields of one point share its tags and timestamp."""
    get(f"{vm_url}/internal/force_flush")
    time.sleep(2)
    points = collections.defaultdict(set)
    copies = {}
    q = urllib.parse.urlencode({"match[]": '{__name__=~".+"}', "start": "0"})
    with urllib.request.urlopen(f"{vm_url}/api/v1/export?{q}", timeout=3600) as r:
        for raw in r:
            if not raw.strip():
                continue
            s = json.loads(raw)
            labels = dict(s["metric"])
            name = labels.pop("__name__")
            meas = name.split(".", 1)[0]
            key = hash(tuple(sorted(labels.items())))
            ts = s["timestamps"]
            copies[(meas, key)] = max(copies.get((meas, key), 0), len(ts) - len(set(ts)))
            points[meas].update(hash((key, t)) for t in ts)
    dup = collections.Counter()
    for (meas, _), n in copies.items():
        dup[meas] += n
    return {m: len(p) for m, p in points.items()}, dict(dup)


def influx_stored(url):
    """Points per measurement: the largest count over its fields (InfluxDB overwrites a point
    written twice, so no duplicates can exist)."""
    def query(q):
        # One measurement at a time, with time: counting millions of points on a busy
        # 2-core machine took InfluxDB 1.6 over 5 minutes in one query.
        args = urllib.parse.urlencode({"db": "citrix", "q": q})
        return json.loads(get(f"{url}/query?{args}", timeout=3600))["results"][0]

    names = [v[0] for s in query("SHOW MEASUREMENTS").get("series", []) for v in s["values"]]
    out = {}
    for name in names:
        for series in query(f'SELECT count(*) FROM "{name}"').get("series", []):
            counts = [v for v in series["values"][0][1:] if isinstance(v, (int, float))]
            out[series["name"]] = int(max(counts)) if counts else 0
    return out, {}


def stored(output, out_url, out_json):
    if output == "vm":
        points, dup = vm_stored(out_url)
        m = parse_metrics(get(f"{out_url}/metrics").decode())["vm_http_requests_total"]
        extra = {"requests": sum(v for l, v in m.items() if ("path", "/influx/write") in l)}
    elif output == "influxdb1":
        points, dup = influx_stored(out_url)
        stats = json.loads(get(f"{out_url}/debug/vars"))
        extra = {"requests": sum(v["values"]["writeReq"] for k, v in stats.items()
                                 if k.startswith("httpd"))}
    else:
        c = json.loads(get(f"{out_url}/count"))
        points, dup = c["measurements"], {}
        extra = {"requests": c["requests"], "bytes": c["bytes"]}
    with open(out_json, "w", encoding="utf-8") as f:
        json.dump({"points": points, "duplicate_timestamps": dup, **extra}, f)
    own = points.pop("citrix_harvester", 0)
    print(f"stored: {sum(points.values())} data points (+{own} citrix_harvester self-points), "
          f"{sum(dup.values())} extra copies of a point", file=sys.stderr)


def logged(log_file):
    """Records and points of every finished cycle in the daemon's JSON log: the whole run,
    including the cycles that shutdown cut short (a cycle logs when it ends)."""
    records = points = timeouts = 0
    for line in open(log_file, encoding="utf-8", errors="replace"):
        if "Cycle finished." not in line and "write failed" not in line:
            continue
        try:
            ev = json.loads(line)
        except ValueError:
            continue
        f = ev.get("fields", ev)
        if "write failed" in f.get("message", ""):
            # Write attempts that timed out (and were retried), for a harvester without
            # citrix_harvester_output_write_timeouts_total.
            timeouts += "imeout" in str(f.get("reason", ""))
            continue
        records += int(f.get("records", 0))
        points += int(f.get("points", 0))
    print(records, points, timeouts)


def metric(snap, name, **want):
    """Sum of a metric's samples whose labels include `want`; None if the harvester does not
    export it (yet)."""
    rows = snap["metrics"].get(name)
    if rows is None:
        return None
    return sum(v for l, v in rows if all(dict(map(tuple, l)).get(k) == w for k, w in want.items()))


def per_tenant(snap, name):
    return {dict(map(tuple, l)).get("tenant"): v for l, v in snap["metrics"].get(name, [])}


def pct(values, q):
    if not values:
        return None
    s = sorted(values)
    return s[min(len(s) - 1, max(0, round(q / 100 * len(s) + 0.5) - 1))]


def fmt(v, spec=".2f"):
    return "n/a" if v is None else format(v, spec)


def row(n, sim_out, snap0, snap1, simfinal, stored_json, samples, time_scale, idle_kb, records,
        points, logged_timeouts):
    scale = float(time_scale)
    s0, s1 = json.load(open(snap0)), json.load(open(snap1))
    final = json.load(open(simfinal))["sim"]
    st = json.load(open(stored_json))
    names = {t["cid"]: t["name"] for t in tenants_of(sim_out)}
    busy0, busy1 = per_tenant(s0, "citrix_harvester_cycle_seconds_total"), \
        per_tenant(s1, "citrix_harvester_cycle_seconds_total")
    ratios, missing = [], 0
    for cid, t1s in s1["sim"]["tenants"].items():
        name = names.get(cid)
        ideal = (t1s["latency_ms"] - s0["sim"]["tenants"].get(cid, {}).get("latency_ms", 0)) \
            / 1000 / scale
        if name not in busy1 or ideal <= 0:
            missing += 1
            continue
        ratios.append((busy1[name] - busy0.get(name, 0)) / ideal)
    skipped = (metric(s1, "citrix_harvester_skipped_runs_total") or 0) - \
        (metric(s0, "citrix_harvester_skipped_runs_total") or 0) \
        if "citrix_harvester_skipped_runs_total" in s1["metrics"] else None
    t0, t1 = s0["at"], s1["at"]
    rows = [tuple(map(float, l.split())) for l in open(samples) if l.strip()]
    peak_mb = max(r[1] for r in rows) / 1024 if rows else None
    in_window = [r for r in rows if t0 <= r[0] <= t1]
    cpu_per_sim_s = us_per_row = None
    # Rows served within the window (the simulator's counters at both snapshots).
    window_rows = sum(v - s0["sim"]["tenants"].get(cid, {}).get("rows_served", {}).get(k, 0)
                      for cid, t in s1["sim"]["tenants"].items()
                      for k, v in t["rows_served"].items() if k not in LOOKUPS)
    if len(in_window) >= 2:
        (w0, _, c0), (w1, _, c1) = in_window[0], in_window[-1]
        cpu_per_sim_s = (c1 - c0) / max(0.001, (w1 - w0) * scale)
        if window_rows > 0:
            us_per_row = (c1 - c0) / window_rows * (t1 - t0) / max(0.001, w1 - w0) * 1e6
    served = sum(v for t in final["tenants"].values() for k, v in t["rows_served"].items()
                 if k not in LOOKUPS)
    data_points = {m: v for m, v in st["points"].items() if m != "citrix_harvester"}
    stored_points = sum(data_points.values())
    dups = sum(st.get("duplicate_timestamps", {}).values())
    # The harvester's count where it has one (window end), else the output server's (run).
    writes = metric(s1, "citrix_harvester_output_write_requests_total")
    if writes is None:
        writes = st.get("requests")
    timeouts = metric(s1, "citrix_harvester_output_write_timeouts_total")
    if timeouts is None:
        timeouts = float(logged_timeouts)  # from the log, whole run
    peak_req = metric(s1, "citrix_harvester_requests_in_flight_peak")
    out = {
        "tenants": int(n),
        "ratio_p50": fmt(pct(ratios, 50)), "ratio_p99": fmt(pct(ratios, 99)),
        "ratio_max": fmt(max(ratios) if ratios else None),
        "no_ratio": missing,
        "skipped_runs": fmt(skipped, ".0f"),
        "sim_max_in_flight": final["api"]["max_in_flight"],
        "harvester_peak_in_flight": fmt(peak_req, ".0f"),
        "budget_429": final["api"]["budget_429"],
        "peak_rss_mb": fmt(peak_mb, ".1f"),
        "idle_rss_mb": fmt(float(idle_kb) / 1024 if idle_kb not in ("", "n/a") else None, ".1f"),
        "cpu_per_sim_s": fmt(cpu_per_sim_s, ".4f"),
        "write_requests": fmt(writes, ".0f"),
        "write_timeouts": fmt(timeouts, ".0f"),
        "rows_served": served, "records": int(records),
        "points_written": int(points), "points_stored": stored_points,
        "extra_copies": dups,
        "us_per_row": fmt(us_per_row, ".2f"),
    }
    print("\t".join(str(v) for v in out.values()))


def row_header():
    print("\t".join(["tenants", "ratio_p50", "ratio_p99", "ratio_max", "no_ratio",
                     "skipped_runs", "sim_max_in_flight", "harvester_peak_in_flight",
                     "budget_429", "peak_rss_mb", "idle_rss_mb", "cpu_per_sim_s",
                     "write_requests", "write_timeouts", "rows_served", "records",
                     "points_written", "points_stored", "extra_copies", "us_per_row"]))


def window_seconds():
    print(3 * LONGEST_INTERVAL)


if __name__ == "__main__":
    cmd, args = sys.argv[1], sys.argv[2:]
    {"config": config, "count-server": count_server, "sample": sample, "snapshot": snapshot,
     "tenants-done": tenants_done, "quiet": quiet, "stored": stored, "logged": logged,
     "row": row, "row-header": row_header, "window": window_seconds}[cmd](*args)
