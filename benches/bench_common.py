"""What benches/e2e_helper.py and benches/scale_helper.py share (standard library only):
reading the simulator's tenant listing, TOML strings, a tenant's [[tenant]] table pointing at
the simulator. Imported, never run."""

import json
import re

TENANT = re.compile(
    r"^  (?P<name>.+?)\s+customer_id=(?P<cid>\S+) client_id=(?P<client>\S+) "
    r"client_secret=(?P<secret>\S+) utc_offset=")


def toml_str(s):
    return json.dumps(s, ensure_ascii=False)


def tenants_of(sim_out):
    """The tenants `citrix-harvester simulate` listed in its output file `sim_out`."""
    out = []
    for line in open(sim_out, encoding="utf-8"):
        m = TENANT.match(line.rstrip("\n"))
        if m:
            out.append(m.groupdict())
    return out


def token_urls(t, sim_url, fallback_url):
    """Tenant `t`'s regional and fallback token URLs at the simulator."""
    path = f"/cctrustoauth2/{t['cid']}/tokens/clients"
    return sim_url + path, fallback_url + path


def tenant_lines(t, sim_url, fallback_url):
    """The harvester's [[tenant]] table of `t` at the simulator, without its entities."""
    token, fallback = token_urls(t, sim_url, fallback_url)
    return [
        "[[tenant]]",
        f"name = {toml_str(t['name'])}",
        f"customer_id = {toml_str(t['cid'])}",
        f"client_id = {toml_str(t['client'])}",
        f"client_secret = {toml_str(t['secret'])}",
        f"token_url = {toml_str(token)}",
        f"fallback_token_url = {toml_str(fallback)}",
        f"monitor_url = {toml_str(sim_url + '/monitorodata')}",
    ]
