#!/usr/bin/env python3
"""The seed's harvester, done faithfully, as the baseline of benches/e2e.sh.

The approach of the blog post this project started from (a Python script): `requests` for
the token (regional host, then the fallback host) and for the Monitor OData queries, paging
through `@odata.nextLink`, one `influxdb_client.Point` per record and the client's synchronous
write API, tenant after tenant. It harvests the same records as `citrix-harvester --once`
with `entities = ["connections", "machines"]` (same `$select`, `$expand`, `$filter`) and writes
the same points (same measurements, tags, fields and timestamps), so the two runs can be
compared record for record. Deviations from the post, each forced by the simulator following
Citrix's documentation: the token path `/cctrustoauth2/{customer}/tokens/clients`, the
`/monitorodata` base and the `CWSAuth bearer=` header.

Usage: harvest.py CONFIG.json  (written by benches/e2e.sh: tenants, URLs, lookback).
Prints `records=<n> points=<n>` on the last line.
"""

import json
import sys
from datetime import datetime, timedelta, timezone

import requests
from influxdb_client import InfluxDBClient, Point, WritePrecision
from influxdb_client.client.write_api import SYNCHRONOUS

CONNECTION_SELECT = (
    "Id,ClientName,ClientAddress,ClientVersion,ClientPlatform,IsReconnect,Protocol,"
    "LogOnStartDate,LogOnEndDate,BrokeringDuration,BrokeringDate,VMStartStartDate,"
    "VMStartEndDate,HdxStartDate,HdxEndDate,AuthenticationDuration,GpoStartDate,GpoEndDate,"
    "LogOnScriptsStartDate,LogOnScriptsEndDate,ProfileLoadStartDate,ProfileLoadEndDate,"
    "InteractiveStartDate,InteractiveEndDate,SessionKey,CreatedDate,ModifiedDate"
)
CONNECTION_EXPAND = (
    "Session($select=SessionKey,LogOnDuration,SessionType;"
    "$expand=User($select=UserName),Machine($select=Name;$expand=DesktopGroup($select=Name)))"
)
MACHINE_SELECT = (
    "Id,Name,DnsName,LifecycleState,CurrentRegistrationState,CurrentPowerState,FaultState,"
    "IsInMaintenanceMode,CurrentSessionCount,AgentVersion,OSType"
)
MACHINE_EXPAND = (
    "DesktopGroup($select=Name),Catalog($select=Name),"
    "CurrentLoadIndex($select=EffectiveLoadIndex)"
)
REGISTRATION = {0: "Unknown", 1: "Registered", 2: "Unregistered"}
POWER = {0: "Unknown", 1: "Unavailable", 2: "Off", 3: "On", 4: "Suspended", 5: "TurningOn",
         6: "TurningOff", 7: "Suspending", 8: "Resuming", 9: "Unmanaged", 10: "NotSupported",
         11: "VirtualMachineNotFound"}
FAULT = {0: "Unknown", 1: "None", 2: "FailedToStart", 3: "StuckOnBoot", 4: "Unregistered",
         5: "MaxCapacity", 6: "VirtualMachineNotFound"}


def name_of(table, v):
    return table.get(v, f"Unknown({v})") if v is not None else None


def get_citrix_token(tenant):
    payload = {"grant_type": "client_credentials", "client_id": tenant["client_id"],
               "client_secret": tenant["client_secret"]}
    try:
        r = requests.post(tenant["token_url"], data=payload, timeout=12)
        r.raise_for_status()
        return r.json()["access_token"]
    except Exception:
        # Prevent downtime of the monitoring itself
        r = requests.post(tenant["fallback_token_url"], data=payload, timeout=12)
        return r.json()["access_token"]


def fetch_all(url, params, headers):
    """Every page of a query, following @odata.nextLink."""
    r = requests.get(url, headers=headers, params=params, timeout=60)
    r.raise_for_status()
    body = r.json()
    yield body["value"]
    while "@odata.nextLink" in body:
        r = requests.get(body["@odata.nextLink"], headers=headers, timeout=60)
        r.raise_for_status()
        body = r.json()
        yield body["value"]


def parse(d):
    return datetime.fromisoformat(d) if d else None


def span_ms(a, b):
    a, b = parse(a), parse(b)
    if a is None or b is None:
        return None
    ms = int((b - a) / timedelta(milliseconds=1))
    return ms if ms >= 0 else None


def ns(t):
    return int(t.timestamp()) * 1_000_000_000 + t.microsecond * 1000


def logon_point(c, tenant):
    when = parse(c.get("BrokeringDate") or c.get("LogOnStartDate") or c.get("CreatedDate"))
    cid = c["Id"]
    ts = (ns(when) // 1_000_000) * 1_000_000 + cid % 1_000_000
    session = c.get("Session") or {}
    machine = session.get("Machine") or {}
    dg = (machine.get("DesktopGroup") or {}).get("Name")
    reconnect = bool(c.get("IsReconnect"))
    total = span_ms(c.get("LogOnStartDate"), c.get("LogOnEndDate"))
    if total is None and not reconnect:
        total = session.get("LogOnDuration")
    p = (Point("citrix_logon").tag("customer", tenant["name"])
         .tag("customer_id", tenant["customer_id"]))
    if dg:
        p.tag("delivery_group", dg)
    if c.get("Protocol"):
        p.tag("protocol", c["Protocol"])
    p.tag("is_reconnect", "true" if reconnect else "false")
    fields = [
        ("connection_id", cid),
        ("logon_duration_ms", total),
        ("brokering_ms", c.get("BrokeringDuration")),
        ("vm_start_ms", span_ms(c.get("VMStartStartDate"), c.get("VMStartEndDate"))),
        ("hdx_ms", span_ms(c.get("HdxStartDate"), c.get("HdxEndDate"))),
        ("authentication_ms", c.get("AuthenticationDuration")),
        ("gpo_ms", span_ms(c.get("GpoStartDate"), c.get("GpoEndDate"))),
        ("logon_scripts_ms", span_ms(c.get("LogOnScriptsStartDate"), c.get("LogOnScriptsEndDate"))),
        ("profile_load_ms", span_ms(c.get("ProfileLoadStartDate"), c.get("ProfileLoadEndDate"))),
        ("interactive_ms", span_ms(c.get("InteractiveStartDate"), c.get("InteractiveEndDate"))),
        ("session_key", c.get("SessionKey")),
        ("user_name", (session.get("User") or {}).get("UserName")),
        ("machine", machine.get("Name")),
        ("client_name", c.get("ClientName")),
        ("client_address", c.get("ClientAddress")),
        ("client_version", c.get("ClientVersion")),
        ("client_platform", c.get("ClientPlatform")),
    ]
    for k, v in fields:
        if v is not None:
            p.field(k, v)
    return p.time(ts, WritePrecision.NS)


def machine_point(m, tenant, cycle_ns):
    name = m.get("Name") or m.get("DnsName") or m.get("Id")
    reg, power, fault = (m.get("CurrentRegistrationState"), m.get("CurrentPowerState"),
                         m.get("FaultState"))
    p = (Point("citrix_machine").tag("customer", tenant["name"])
         .tag("customer_id", tenant["customer_id"]))
    for k, v in [("delivery_group", (m.get("DesktopGroup") or {}).get("Name")),
                 ("catalog", (m.get("Catalog") or {}).get("Name")), ("machine", name),
                 ("registration_state", name_of(REGISTRATION, reg)),
                 ("power_state", name_of(POWER, power)), ("fault_state", name_of(FAULT, fault))]:
        if v:
            p.tag(k, v)
    load = (m.get("CurrentLoadIndex") or {}).get("EffectiveLoadIndex")
    for k, v in [("registration_state_code", reg), ("power_state_code", power),
                 ("fault_state_code", fault), ("session_count", m.get("CurrentSessionCount")),
                 ("load_index", float(load) if load is not None else None),
                 ("in_maintenance_mode", bool(m.get("IsInMaintenanceMode"))),
                 ("registered", reg == 1), ("machine_id", m.get("Id")),
                 ("dns_name", m.get("DnsName")), ("agent_version", m.get("AgentVersion")),
                 ("os_type", m.get("OSType"))]:
        if v is not None:
            p.field(k, v)
    return p.time(cycle_ns, WritePrecision.NS)


def main():
    cfg = json.load(open(sys.argv[1]))
    now = datetime.now(timezone.utc).replace(microsecond=0)
    since = (now - timedelta(seconds=cfg["lookback_seconds"])).strftime("%Y-%m-%dT%H:%M:%SZ")
    cycle_ns = int(now.timestamp()) * 1_000_000_000
    client = InfluxDBClient(url=cfg["influx_url"], token="unused", org="citrix")
    write_api = client.write_api(write_options=SYNCHRONOUS)
    records = points = 0
    for tenant in cfg["tenants"]:
        token = get_citrix_token(tenant)
        headers = {"Authorization": f"CWSAuth bearer={token}",
                   "Citrix-CustomerId": tenant["customer_id"]}
        base = tenant["monitor_url"]
        queries = [
            (f"{base}/Connections",
             {"$select": CONNECTION_SELECT, "$expand": CONNECTION_EXPAND,
              "$filter": f"ModifiedDate ge {since}", "$orderby": "ModifiedDate,Id"},
             lambda r: logon_point(r, tenant)),
            (f"{base}/Machines",
             {"$select": MACHINE_SELECT, "$expand": MACHINE_EXPAND,
              "$filter": "LifecycleState eq 0"},
             lambda r: machine_point(r, tenant, cycle_ns)),
        ]
        for url, params, to_point in queries:
            for page in fetch_all(url, params, headers):
                batch = [to_point(r) for r in page]
                records += len(page)
                write_api.write(bucket="citrix", org="citrix", record=batch)
                points += len(batch)
    client.close()
    print(f"records={records} points={points}")


if __name__ == "__main__":
    main()
