#!/bin/bash
# Runs once inside the influxdb:2 container after DOCKER_INFLUXDB_INIT_MODE=setup: maps the
# InfluxQL database/retention policy citrix/autogen to the bucket, so that Grafana's InfluxQL
# datasource (and the dashboards, which work on InfluxDB 1.x, 2.x and 3.x alike) can query it.
# The entrypoint has configured the influx CLI with the admin token and exports the bucket id.
set -euo pipefail

influx v1 dbrp create \
  --org "${DOCKER_INFLUXDB_INIT_ORG}" \
  --bucket-id "${DOCKER_INFLUXDB_INIT_BUCKET_ID}" \
  --db "${CITRIX_DBRP_DATABASE:-citrix}" \
  --rp "${CITRIX_DBRP_RETENTION_POLICY:-autogen}" \
  --default
