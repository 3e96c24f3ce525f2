//! Deterministic data generator: from the seed and the tenant index it builds one tenant's
//! identity (name, customer id, API client) and rows for every simulated entity set, consistent
//! across sets (keys, foreign keys, session counts, logon phases, failures). It must not build
//! indexes (data.rs) or know about queries or HTTP. All work is linear in the number of rows, so
//! a thousand small tenants stay cheap.
//!
//! Realism choices worth knowing when reading test expectations:
//! - Time zones are fixed UTC offsets (no daylight saving); the logon rush peaks 07:45–08:30
//!   tenant-local on weekdays, weekends carry a quarter of a weekday's weight.
//! - Machines: 20–60 per tenant, or `machines_per_tenant × scale` (users five per machine);
//!   `equal_tenants` makes every scale 1.
//! - The number of sessions over the history window is `sessions_per_day × days × scale`, spread
//!   over the days by that weekday/weekend weight, so row counts do not depend on the weekday the
//!   simulator starts on.
//! - All instants of one session (and its connections) share one precision (100 ns ticks, ms,
//!   10 ms, 100 ms or whole seconds), so rendered dates have 0–7 fractional digits while the
//!   logon phases stay ordered.
//! - VMStart dates are present only when a machine had to be powered on (as in the real
//!   service); all other logon phase dates are present for every completed first logon.
//!   Reconnects carry brokering, HDX and authentication only.

use std::collections::HashMap;

use chrono::{DateTime, Datelike, Duration, NaiveTime, Utc, Weekday};
use rand::rngs::StdRng;
use rand::seq::IndexedRandom;
use rand::{Rng, SeedableRng};

use super::data::Row;
use super::schema::{self, EntityDef};
use super::value::{Val, format_guid};
use super::{SimOptions, SimTenant};

type Dt = DateTime<Utc>;

const NAMES: &[(&str, &str)] = &[
    ("Müller & Söhne AG", "MUELLER"),
    ("Northwind Traders", "NORTHWIND"),
    ("Contoso, Ltd.", "CONTOSO"),
    ("Tailspin Toys", "TAILSPIN"),
    ("Wide World Importers", "WWI"),
    ("Städtische Werke Nord", "SWNORD"),
    ("Fabrikam Bank", "FABRIKAM"),
    ("Adventure Works", "ADVWORKS"),
    ("Litware Inc", "LITWARE"),
    ("Proseware", "PROSEWARE"),
];
const OFFSETS: &[i32] = &[60, -300, 600, 330, 0, -480, 120, 540, -180, 345];
/// Relative volume of tenants after tenant 0 (which is 1.0 so paging tests have material).
const SCALES: &[f64] = &[1.0, 0.55, 0.8, 0.35, 1.2, 0.65];

const DG_NAMES: &[(&str, i32)] = &[
    // (name, SessionSupport: 1 single-session VDI, 2 multi-session)
    ("Office Desktops", 2),
    ("Finance, Accounting", 1),
    ("Engineering = CAD", 1),
    ("Büro Desktops", 2),
    ("Call Center", 2),
    ("Published Apps", 2),
];
const CATALOG_NAMES: &[&str] = &[
    "W2022 Multi-Session",
    "Win11 \"Gold\" Image",
    "CAD Workstations",
    "Büro Server 2019",
    "Call Center Pool",
    "App Servers",
];
const FIRST: &[&str] = &[
    "Anna", "Ben", "Clara", "David", "Emma", "Felix", "Greta", "Hannah", "Ivan", "Julia", "Karl",
    "Lena", "Marco", "Nina", "Oskar", "Paula", "Quentin", "Rosa", "Stefan", "Tina", "Uwe", "Vera",
    "Wei", "Xenia", "Yusuf", "Zoe", "Priya", "Liam", "Sofia", "Noah",
];
const LAST: &[&str] = &[
    "Schmidt", "Meyer", "Fischer", "Weber", "Wagner", "Becker", "Hoffmann", "Koch", "Richter",
    "Klein", "Wolf", "Neumann", "Smith", "Jones", "Brown", "Taylor", "Wilson", "Davies", "Evans",
    "Thomas", "Garcia", "Martin", "Rossi", "Nowak", "Kowalski", "Tanaka", "Singh", "Kim", "Dubois",
    "Larsen",
];
const CLIENT_VERSIONS: &[&str] = &[
    "24.5.0.76",
    "23.9.1.104",
    "2402.1.0.1",
    "22.12.0.17",
    "2311.0.0.51",
];
const PLATFORMS: &[&str] = &[
    "Windows", "Windows", "Windows", "Mac", "HTML5", "iOS", "Linux",
];
/// (code, weight) of launch failures; codes from citrix-monitor-api.md §4.1.
pub(super) const FAILURES: &[(i32, u32)] = &[
    (4, 5),
    (3, 3),
    (18, 2),
    (12, 2),
    (100, 2),
    (101, 2),
    (5, 1),
    (9, 1),
    (15, 1),
    (8, 1),
];

/// Every SessionFailureCode with its ConnectionFailureType category. The category mapping is
/// an inference ([INF]): the official tables list both enums but not the pairing.
const FAILURE_CATEGORIES: &[(i32, i32)] = &[
    (0, 0),
    (1, 0),
    (2, 2),
    (3, 2),
    (4, 1),
    (5, 4),
    (6, 1),
    (7, 1),
    (8, 2),
    (9, 5),
    (10, 5),
    (11, 4),
    (12, 3),
    (13, 3),
    (14, 5),
    (15, 3),
    (16, 5),
    (17, 1),
    (18, 2),
    (19, 2),
    (20, 2),
    (21, 3),
    (22, 3),
    (23, 1),
    (24, 3),
    (25, 3),
    (100, 3),
    (101, 2),
];

/// `ConnectionFailureCategories.Id` (what `Session.FailureId` points at) for a failure code.
/// Deliberately not equal to the code, so that clients cannot conflate the two.
pub(super) fn failure_id(code: i32) -> i32 {
    FAILURE_CATEGORIES
        .iter()
        .position(|(c, _)| *c == code)
        .map_or(0, |i| i as i32 + 1)
}

/// Builds a row of `def` by property name; unset properties stay null.
pub(super) struct RowB {
    def: &'static EntityDef,
    vals: Vec<Val>,
}

impl RowB {
    pub(super) fn new(def: &'static EntityDef) -> RowB {
        RowB {
            def,
            vals: vec![Val::Null; def.props.len()],
        }
    }

    pub(super) fn set(&mut self, name: &str, v: Val) -> &mut RowB {
        let i = self
            .def
            .prop(name)
            .unwrap_or_else(|| panic!("generator: {} has no property {name}", self.def.set));
        self.vals[i] = v;
        self
    }

    pub(super) fn get(&self, name: &str) -> &Val {
        &self.vals[self.def.prop(name).expect("generator: known property")]
    }

    pub(super) fn date(&self, name: &str) -> Option<Dt> {
        match self.get(name) {
            Val::Date(d) => Some(*d),
            _ => None,
        }
    }

    pub(super) fn done(self) -> Row {
        self.vals.into_boxed_slice()
    }
}

/// Rounds instants down to a per-session precision (monotonic, so phase order survives).
#[derive(Clone, Copy)]
pub(super) struct Prec(pub(super) i64);

impl Prec {
    pub(super) fn pick(rng: &mut StdRng) -> Prec {
        let r: f64 = rng.random();
        Prec(match r {
            r if r < 0.45 => 100,
            r if r < 0.75 => 1_000_000,
            r if r < 0.85 => 10_000_000,
            r if r < 0.90 => 100_000_000,
            _ => 1_000_000_000,
        })
    }

    pub(super) fn q(self, t: Dt) -> Dt {
        let ns = t.timestamp_nanos_opt().unwrap_or(0);
        DateTime::from_timestamp_nanos(ns - ns.rem_euclid(self.0))
    }
}

pub(super) fn guid(rng: &mut StdRng) -> u128 {
    let g: u128 = rng.random();
    // Version 4, RFC 4122 variant, like the Guids SQL Server's NEWID() hands out.
    (g & !(0xF << 76) & !(0x3 << 62)) | (0x4 << 76) | (0x2 << 62)
}

/// A random duration between `a` and `b` milliseconds, at tick resolution.
pub(super) fn ms(rng: &mut StdRng, a: i64, b: i64) -> Duration {
    if b <= a {
        return Duration::milliseconds(a);
    }
    Duration::nanoseconds(rng.random_range(a * 10_000..b * 10_000) * 100)
}

pub(super) fn mins(rng: &mut StdRng, a: i64, b: i64) -> Duration {
    ms(rng, a * 60_000, b * 60_000)
}

fn normal(rng: &mut StdRng) -> f64 {
    let u1: f64 = rng.random_range(f64::EPSILON..1.0);
    let u2: f64 = rng.random();
    (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
}

/// Seconds after local midnight for a session start on a weekday or a weekend day.
fn time_of_day(rng: &mut StdRng, weekend: bool) -> f64 {
    let r: f64 = rng.random();
    let s = if weekend {
        if r < 0.6 {
            rng.random_range(9.0 * 3600.0..19.0 * 3600.0)
        } else {
            rng.random_range(0.0..86_400.0)
        }
    } else if r < 0.5 {
        // The 8 o'clock logon rush.
        8.0 * 3600.0 + 5.0 * 60.0 + normal(rng) * 14.0 * 60.0
    } else if r < 0.62 {
        13.0 * 3600.0 + normal(rng) * 25.0 * 60.0
    } else if r < 0.95 {
        rng.random_range(6.5 * 3600.0..18.0 * 3600.0)
    } else {
        rng.random_range(0.0..86_400.0)
    };
    s.clamp(0.0, 86_399.999)
}

fn is_weekend(d: chrono::NaiveDate) -> bool {
    matches!(d.weekday(), Weekday::Sat | Weekday::Sun)
}

/// Samples session start instants inside `[from, to)` following the local-time profile.
pub(super) struct StartSampler {
    from: Dt,
    to: Dt,
    offset: Duration,
    days: Vec<(chrono::NaiveDate, f64)>,
    total: f64,
}

impl StartSampler {
    pub(super) fn new(from: Dt, to: Dt, offset_min: i32) -> StartSampler {
        let offset = Duration::minutes(offset_min as i64);
        let first = (from + offset).date_naive();
        let last = (to + offset).date_naive();
        let mut days = Vec::new();
        let mut d = first;
        while d <= last {
            days.push((d, if is_weekend(d) { 0.25 } else { 1.0 }));
            d = d.succ_opt().unwrap_or(d);
            if days.len() > 100_000 {
                break;
            }
        }
        let total = days.iter().map(|(_, w)| w).sum();
        StartSampler {
            from,
            to,
            offset,
            days,
            total,
        }
    }

    pub(super) fn sample(&self, rng: &mut StdRng) -> Dt {
        for _ in 0..64 {
            let mut pick = rng.random_range(0.0..self.total);
            let mut day = self.days[0].0;
            for (d, w) in &self.days {
                day = *d;
                if pick < *w {
                    break;
                }
                pick -= w;
            }
            let tod = time_of_day(rng, is_weekend(day));
            let local =
                day.and_time(NaiveTime::MIN).and_utc() + Duration::nanoseconds((tod * 1e9) as i64);
            let t = local - self.offset;
            if t >= self.from && t < self.to {
                return t;
            }
        }
        let span = (self.to - self.from).num_milliseconds().max(1);
        self.from + Duration::milliseconds(rng.random_range(0..span))
    }
}

pub(super) struct Client {
    name: String,
    address: String,
    platform: &'static str,
    version: &'static str,
}

pub(super) struct MachineInfo {
    pub(super) id: u128,
    pub(super) dg: usize,
    pub(super) eligible: bool,
    pub(super) powered_on: bool,
    pub(super) multi: bool,
    /// (start, end or None while running) of the sessions hosted, for load and counts.
    pub(super) sessions: Vec<(Dt, Option<Dt>)>,
    pub(super) last_event: Option<Dt>,
}

/// Identity of tenant `idx`, derived from the seed only.
pub fn tenant_identity(seed: u64, idx: usize) -> SimTenant {
    let mut rng = tenant_rng(seed, idx, 1);
    let (base, _) = NAMES[idx % NAMES.len()];
    let name = if idx < NAMES.len() {
        base.to_string()
    } else {
        format!("{base} {}", idx / NAMES.len() + 1)
    };
    const ALNUM: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let mut customer_id = String::new();
    customer_id.push((b'a' + rng.random_range(0..26u8)) as char);
    for _ in 0..7 {
        customer_id.push(ALNUM[rng.random_range(0..ALNUM.len())] as char);
    }
    // The index suffix keeps ids unique however many tenants there are.
    customer_id.push_str(&format!("{idx:04}"));
    // Secrets contain '+', '/' and '=' so that a client must form-encode them properly.
    const SECRET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let mut client_secret: String = (0..22)
        .map(|_| SECRET[rng.random_range(0..SECRET.len())] as char)
        .collect();
    client_secret.insert(5, '+');
    client_secret.insert(11, '/');
    client_secret.push_str("==");
    SimTenant {
        name,
        customer_id,
        client_id: format_guid(guid(&mut rng)),
        client_secret,
        utc_offset_minutes: OFFSETS[idx % OFFSETS.len()],
    }
}

pub(super) fn tenant_rng(seed: u64, idx: usize, stream: u64) -> StdRng {
    let mix = seed
        .wrapping_mul(0x9E37_79B9_7F4A_7C15)
        .wrapping_add((idx as u64 + 1).wrapping_mul(0xD1B5_4A32_D192_ED03))
        .wrapping_add(stream.wrapping_mul(0x94D0_49BB_1331_11EB));
    StdRng::seed_from_u64(mix)
}

/// Rows of every entity set for tenant `idx`.
#[cfg(test)]
pub fn generate(
    opts: &SimOptions,
    idx: usize,
    tenant: &SimTenant,
) -> HashMap<&'static str, Vec<Row>> {
    generate_world(opts, idx, tenant).1
}

/// Rows of every entity set for tenant `idx`, and the generator state `advance` continues from.
pub fn generate_world(
    opts: &SimOptions,
    idx: usize,
    tenant: &SimTenant,
) -> (World, HashMap<&'static str, Vec<Row>>) {
    let rng = &mut tenant_rng(opts.seed, idx, 2);
    let now = opts.now;
    let (_, domain) = NAMES[idx % NAMES.len()];
    let dns_suffix = format!("{}.local", domain.to_lowercase());
    let size = (opts.sessions_per_day as f64 / 300.0).min(1.0);
    let scale = if idx == 0 || opts.equal_tenants {
        1.0
    } else {
        SCALES[idx % SCALES.len()]
    };
    let old = |rng: &mut StdRng, a: i64, b: i64| {
        now - Duration::days(rng.random_range(a..b)) - ms(rng, 0, 86_400_000)
    };
    let lag = |rng: &mut StdRng, t: Dt, a: i64, b: i64| (t + ms(rng, a, b)).min(now);
    let domain_sid = format!(
        "S-1-5-21-{}-{}-{}",
        rng.random_range(1_000_000_000u64..4_000_000_000),
        rng.random_range(1_000_000_000u64..4_000_000_000),
        rng.random_range(1_000_000_000u64..4_000_000_000)
    );

    // --- Hypervisors, delivery groups, catalogs -------------------------------------------
    let mut hypervisors = Vec::new();
    let hv_names = ["Azure West Europe", "vSphere Cluster 01 \\ DC-A"];
    let hv_count = 1 + (idx % 2);
    let mut hv_ids = Vec::new();
    for name in hv_names.iter().take(hv_count) {
        let id = guid(rng);
        hv_ids.push(id);
        let created = old(rng, 200, 900);
        let mut r = RowB::new(&schema::HYPERVISORS);
        r.set("Id", Val::Guid(id))
            .set("Name", Val::str(*name))
            .set("LifecycleState", Val::Int(0))
            .set("CreatedDate", Val::Date(created))
            .set(
                "ModifiedDate",
                Val::Date(lag(rng, created, 0, 90 * 86_400_000)),
            );
        hypervisors.push(r.done());
    }

    let dg_count = rng.random_range(2..=4usize);
    // Always include the names with a comma and with '=' (there are at least two groups).
    let mut dg_pick: Vec<usize> = vec![1, 2];
    let rest = if idx.is_multiple_of(2) {
        [0usize, 3, 4, 5]
    } else {
        [3, 0, 5, 4]
    };
    for i in rest {
        if dg_pick.len() < dg_count && !dg_pick.contains(&i) {
            dg_pick.push(i);
        }
    }
    let mut desktop_groups = Vec::new();
    let mut catalogs = Vec::new();
    let mut dgs: Vec<(u128, u128, i32, i32)> = Vec::new(); // (dg id, catalog id, session support, delivery type)
    let zone = guid(rng);
    for &n in &dg_pick {
        let (name, support) = DG_NAMES[n];
        let delivery = if name == "Published Apps" {
            1
        } else if support == 2 {
            2
        } else {
            0
        };
        let (dg_id, cat_id) = (guid(rng), guid(rng));
        dgs.push((dg_id, cat_id, support, delivery));
        let created = old(rng, 100, 900);
        let mut r = RowB::new(&schema::DESKTOP_GROUPS);
        r.set("Id", Val::Guid(dg_id))
            .set("Name", Val::str(name))
            .set("IsRemotePC", Val::Bool(false))
            .set("DesktopKind", Val::Int(if support == 2 { 1 } else { 0 }))
            .set("LifecycleState", Val::Int(0))
            .set("SessionSupport", Val::Int(support as i64))
            .set("DeliveryType", Val::Int(delivery as i64))
            .set("IsInMaintenanceMode", Val::Bool(false))
            .set("CreatedDate", Val::Date(created))
            .set(
                "ModifiedDate",
                Val::Date(lag(rng, created, 0, 60 * 86_400_000)),
            );
        desktop_groups.push(r.done());
        let created = old(rng, 100, 900);
        let mut c = RowB::new(&schema::CATALOGS);
        c.set("Id", Val::Guid(cat_id))
            .set("Name", Val::str(CATALOG_NAMES[n]))
            .set("LifecycleState", Val::Int(0))
            .set("ProvisioningType", Val::Int(1))
            .set("PersistentUserChanges", Val::Int(1))
            .set("IsMachinePhysical", Val::Bool(false))
            .set("AllocationType", Val::Int(if support == 1 { 1 } else { 2 }))
            .set("SessionSupport", Val::Int(support as i64))
            .set("ProvisioningSchemeId", Val::Guid(guid(rng)))
            .set("ZoneUid", Val::Guid(zone))
            .set(
                "ZoneName",
                Val::str(if idx.is_multiple_of(3) {
                    "Zone München"
                } else {
                    "Primary Zone"
                }),
            )
            .set("CreatedDate", Val::Date(created))
            .set(
                "ModifiedDate",
                Val::Date(lag(rng, created, 0, 60 * 86_400_000)),
            );
        catalogs.push(c.done());
    }

    // --- Users --------------------------------------------------------------------------
    let n_users = ((rng.random_range(100..=300usize) as f64 * size).round() as usize).max(10);
    let n_users = opts
        .machines_per_tenant
        .map_or(n_users, |m| ((m as f64 * scale) as usize * 5).max(10));
    let mut users = Vec::with_capacity(n_users);
    let mut user_names: Vec<(String, String, String)> = Vec::with_capacity(n_users); // (full, sam, upn)
    let mut clients = Vec::with_capacity(n_users);
    let mut seen = std::collections::HashSet::new();
    for i in 0..n_users {
        let (first, last) = match i {
            0 => ("Seán".to_string(), "O'Brien".to_string()),
            1 => ("Jürgen".to_string(), "Weiß".to_string()),
            _ => (
                FIRST.choose(rng).copied().unwrap_or("Anna").to_string(),
                LAST.choose(rng).copied().unwrap_or("Koch").to_string(),
            ),
        };
        let ascii = |s: &str| -> String {
            s.to_lowercase()
                .replace('ü', "ue")
                .replace('ß', "ss")
                .replace('á', "a")
                .replace('é', "e")
        };
        let mut sam = format!("{}.{}", ascii(&first), ascii(&last));
        let mut k = 2;
        while !seen.insert(sam.clone()) {
            sam = format!("{}.{}{k}", ascii(&first), ascii(&last));
            k += 1;
        }
        let full = format!("{first} {last}");
        let upn = format!("{sam}@{}", dns_suffix.replace(".local", ".example"));
        let created = old(rng, 1, 700);
        let modified = if rng.random_bool(0.7) {
            created
        } else {
            lag(rng, created, 0, 90 * 86_400_000)
        };
        let mut r = RowB::new(&schema::USERS);
        r.set("Id", Val::Int(i as i64 + 1))
            .set("Sid", Val::str(format!("{domain_sid}-{}", 1100 + i)))
            .set("Upn", Val::str(upn.clone()))
            .set("UserName", Val::str(sam.clone()))
            .set("FullName", Val::str(full.clone()))
            .set("Domain", Val::str(domain))
            .set("CreatedDate", Val::Date(created))
            .set("ModifiedDate", Val::Date(modified));
        users.push(r.done());
        user_names.push((full, sam, upn));
        let platform = *PLATFORMS.choose(rng).unwrap_or(&"Windows");
        clients.push(Client {
            name: match platform {
                "Mac" => format!("{}s-MacBook-Pro", first),
                "iOS" => format!("{}s-iPad", first),
                _ => format!("PC-{:05}", rng.random_range(0..100_000)),
            },
            address: format!(
                "192.168.{}.{}",
                rng.random_range(0..255),
                rng.random_range(1..255)
            ),
            platform,
            version: CLIENT_VERSIONS.choose(rng).copied().unwrap_or("24.5.0.76"),
        });
    }

    // --- Machines (rows finished after sessions, which set counts and dates) ------------------
    let n_machines = ((rng.random_range(20..=60usize) as f64 * size).round() as usize).max(4);
    let n_machines = opts
        .machines_per_tenant
        .map_or(n_machines, |m| ((m as f64 * scale).round() as usize).max(4));
    let mut machines: Vec<MachineInfo> = Vec::with_capacity(n_machines);
    let mut machine_rows: Vec<RowB> = Vec::with_capacity(n_machines);
    let mut per_dg_count = vec![0usize; dgs.len()];
    for i in 0..n_machines {
        let dg = i % dgs.len();
        let (dg_id, cat_id, support, _) = dgs[dg];
        per_dg_count[dg] += 1;
        let multi = support == 2;
        let host = format!(
            "{}-{}-{:03}",
            if multi { "SRV" } else { "VDI" },
            dg + 1,
            per_dg_count[dg]
        );
        // Oddities: one deleted machine every ~20, nulls for DnsName and IPAddress; machine 0 is
        // always healthy so every tenant has somewhere to run sessions.
        let deleted = i % 19 == 7;
        let unregistered = !deleted && i % 11 == 5;
        let powered_off = deleted || (unregistered && i % 2 == 1);
        let maintenance = !deleted && i % 17 == 9;
        let created = old(rng, 30, 400);
        let reg_change = if deleted || unregistered {
            old(rng, 0, 3)
        } else {
            old(rng, 1, 30)
        }
        .max(created);
        let power_change = reg_change - ms(rng, 10_000, 120_000);
        let id = guid(rng);
        let mut r = RowB::new(&schema::MACHINES);
        let assigned = !multi && i % 3 == 0 && !deleted;
        let user = &user_names[i % user_names.len()];
        r.set("Id", Val::Guid(id))
            .set("Sid", Val::str(format!("{domain_sid}-{}", 5000 + i)))
            .set("Name", Val::str(format!("{domain}\\{host}")))
            .set(
                "DnsName",
                if i % 13 == 4 {
                    Val::Null
                } else {
                    Val::str(format!("{}.{dns_suffix}", host.to_lowercase()))
                },
            )
            .set("LifecycleState", Val::Int(if deleted { 1 } else { 0 }))
            .set(
                "IPAddress",
                if i % 13 == 4 || i % 23 == 10 || powered_off {
                    Val::Null
                } else {
                    Val::str(format!("10.{}.{}.{}", idx % 250, dg + 1, 10 + i))
                },
            )
            .set("HostedMachineId", Val::str(format!("{:032x}", guid(rng))))
            .set(
                "HostingServerName",
                Val::str(if hv_count == 2 && i % 2 == 1 {
                    "esx01.dc-a.local"
                } else {
                    "Azure"
                }),
            )
            .set("HostedMachineName", Val::str(host.to_lowercase()))
            .set("IsAssigned", Val::Bool(assigned))
            .set("IsInMaintenanceMode", Val::Bool(maintenance))
            .set("IsPendingUpdate", Val::Bool(i % 29 == 3))
            .set(
                "AgentVersion",
                Val::str(if i % 4 == 0 {
                    "2311.0.0.51"
                } else {
                    "2402.0.100.629"
                }),
            )
            .set(
                "AssociatedUserFullNames",
                if assigned {
                    Val::str(user.0.clone())
                } else if i % 2 == 0 {
                    Val::str("")
                } else {
                    Val::Null
                },
            )
            .set(
                "AssociatedUserNames",
                if assigned {
                    Val::str(format!("{domain}\\{}", user.1))
                } else if i % 2 == 0 {
                    Val::str("")
                } else {
                    Val::Null
                },
            )
            .set(
                "AssociatedUserUPNs",
                if assigned {
                    Val::str(user.2.clone())
                } else if i % 2 == 0 {
                    Val::str("")
                } else {
                    Val::Null
                },
            )
            .set(
                "CurrentRegistrationState",
                Val::Int(if deleted || unregistered { 2 } else { 1 }),
            )
            .set("RegistrationStateChangeDate", Val::Date(reg_change))
            .set(
                "LastDeregisteredCode",
                if deleted || unregistered {
                    Val::Int(if powered_off { 200 } else { 207 })
                } else if i % 3 == 1 {
                    Val::Int(201)
                } else {
                    Val::Null
                },
            )
            .set(
                "LastDeregisteredDate",
                if deleted || unregistered {
                    Val::Date(reg_change)
                } else if i % 3 == 1 {
                    Val::Date(reg_change - Duration::minutes(3))
                } else {
                    Val::Null
                },
            )
            .set(
                "CurrentPowerState",
                Val::Int(if powered_off { 2 } else { 3 }),
            )
            .set(
                "ControllerDnsName",
                if deleted || unregistered {
                    Val::Null
                } else {
                    Val::str(format!("cc0{}.{dns_suffix}", 1 + i % 2))
                },
            )
            .set(
                "PoweredOnDate",
                if powered_off {
                    Val::Null
                } else {
                    Val::Date(power_change)
                },
            )
            .set("PowerStateChangeDate", Val::Date(power_change))
            .set("FunctionalLevel", Val::Int(11))
            .set(
                "FailureDate",
                if unregistered && !powered_off {
                    Val::Date(reg_change)
                } else {
                    Val::Null
                },
            )
            .set("WindowsConnectionSetting", Val::Int(1))
            .set("IsPreparing", Val::Bool(false))
            .set(
                "FaultState",
                Val::Int(if unregistered && !powered_off { 4 } else { 1 }),
            )
            .set(
                "OSType",
                Val::str(if multi { "Windows 2022" } else { "Windows 11" }),
            )
            .set("CatalogId", Val::Guid(cat_id))
            .set("DesktopGroupId", Val::Guid(dg_id))
            .set("HypervisorId", Val::Guid(hv_ids[i % hv_ids.len()]))
            .set("Hash", Val::str(format!("{:032X}", rng.random::<u128>())))
            .set("MachineRole", Val::Int(0))
            .set("CreatedDate", Val::Date(created));
        machine_rows.push(r);
        machines.push(MachineInfo {
            id,
            dg,
            eligible: !deleted && !unregistered && !powered_off && !maintenance,
            powered_on: !powered_off,
            multi,
            sessions: Vec::new(),
            last_event: Some(reg_change.max(power_change)),
        });
    }
    let by_dg: Vec<Vec<usize>> = (0..dgs.len())
        .map(|d| {
            (0..machines.len())
                .filter(|&m| machines[m].dg == d && machines[m].eligible)
                .collect()
        })
        .collect();
    let any_eligible: Vec<usize> = (0..machines.len())
        .filter(|&m| machines[m].eligible)
        .collect();

    // --- Sessions and connections ---------------------------------------------------------
    let days = opts.history.num_seconds() as f64 / 86_400.0;
    let n_sessions = (opts.sessions_per_day as f64 * days * scale).round() as usize;
    let latest_start = now - Duration::minutes(10);
    let sampler = StartSampler::new(
        now - opts.history,
        latest_start.max(now - opts.history + Duration::seconds(1)),
        tenant.utc_offset_minutes,
    );
    let mut sessions: Vec<RowB> = Vec::with_capacity(n_sessions);
    // (brokering date, session index, row) — ids are handed out in time order afterwards.
    let mut conns: Vec<(Dt, usize, RowB)> = Vec::with_capacity(n_sessions * 2);
    let mut failures: Vec<RowB> = Vec::new();
    let failure_weight: u32 = FAILURES.iter().map(|f| f.1).sum();
    let env = Env {
        now,
        dgs: &dgs,
        by_dg: &by_dg,
        any_eligible: &any_eligible,
        clients: &clients,
        n_users: users.len(),
        dns_suffix: &dns_suffix,
        failure_weight,
        shape: None,
    };
    // `env` borrows what `World` will own; end the borrow after the loop.
    let mut open: Vec<(usize, Dt)> = Vec::new();
    for s in 0..n_sessions {
        let out = gen_session(&env, &mut machines, rng, |r| sampler.sample(r), false);
        conns.extend(out.conns.into_iter().map(|(t, c)| (t, s, c)));
        failures.extend(out.failure);
        if let Some(e) = out.open_end {
            open.push((s, e));
        }
        sessions.push(out.session);
    }

    // Connection ids are an identity column: ascending with time.
    conns.sort_by_key(|(t, s, _)| (*t, *s));
    let conn_base = rng.random_range(100_000i64..5_000_000);
    let mut current = vec![None; sessions.len()];
    let mut connections: Vec<RowB> = Vec::with_capacity(conns.len());
    for (i, (_, s, mut c)) in conns.into_iter().enumerate() {
        let id = conn_base + i as i64;
        c.set("Id", Val::Int(id));
        current[s] = Some(id);
        connections.push(c);
    }
    for (s, id) in current.into_iter().enumerate() {
        sessions[s].set("CurrentConnectionId", id.map_or(Val::Null, Val::Int));
    }
    failures.sort_by_key(|f| f.date("FailureDate"));
    let cfl_base = rng.random_range(100_000i64..200_000);
    for (i, f) in failures.iter_mut().enumerate() {
        f.set("Id", Val::Int(cfl_base + i as i64));
    }

    // --- Load indexes every 30 minutes for powered-on machines ------------------------------
    let mut loads: Vec<(Dt, usize, RowB)> = Vec::new();
    let step = Duration::minutes(30);
    let first_slot = now - opts.history;
    for (m, info) in machines.iter().enumerate() {
        if !info.powered_on {
            continue;
        }
        let mut at = first_slot + ms(rng, 0, 1_800_000);
        while at < now {
            let count = info
                .sessions
                .iter()
                .filter(|(s, e)| *s <= at && e.is_none_or(|e| e > at))
                .count() as i64;
            let cpu = (count * if info.multi { 7 } else { 35 } + rng.random_range(2..15)).min(100);
            let mem =
                (20 + count * if info.multi { 5 } else { 30 } + rng.random_range(0..10)).min(100);
            let created = Prec(1_000_000).q(lag(rng, at, 100, 2000));
            let mut r = RowB::new(&schema::LOAD_INDEXES);
            // Citrix's scale: 10000 is a fully loaded machine.
            r.set("EffectiveLoadIndex", Val::Int(cpu.max(mem) * 100))
                .set("Cpu", Val::Int(cpu))
                .set("Memory", Val::Int(mem))
                .set("Disk", Val::Int(rng.random_range(0..20)))
                .set("Network", Val::Int(rng.random_range(0..10)))
                .set("SessionCount", Val::Int(count))
                .set("MachineId", Val::Guid(info.id))
                .set("CreatedDate", Val::Date(created))
                .set("ModifiedDate", Val::Date(created));
            loads.push((created, m, r));
            at += step;
        }
    }
    loads.sort_by_key(|(t, m, _)| (*t, *m));
    let li_base = rng.random_range(1_000_000i64..9_000_000);
    let mut current_li = vec![None; machines.len()];
    let mut load_indexes = Vec::with_capacity(loads.len());
    for (i, (_, m, mut r)) in loads.into_iter().enumerate() {
        r.set("Id", Val::Int(li_base + i as i64));
        current_li[m] = Some(li_base + i as i64);
        load_indexes.push(r.done());
    }
    for (m, info) in machines.iter().enumerate() {
        let running = info.sessions.iter().filter(|(_, e)| e.is_none()).count() as i64;
        let created = machine_rows[m].date("CreatedDate").unwrap_or(now);
        let modified = lag(
            rng,
            info.last_event.unwrap_or(created).max(created),
            500,
            30_000,
        );
        machine_rows[m]
            .set("CurrentSessionCount", Val::Int(running))
            .set(
                "CurrentLoadIndexId",
                current_li[m].map_or(Val::Null, Val::Int),
            )
            .set("ModifiedDate", Val::Date(modified));
    }

    // A few rows share their ModifiedDate to the tick, so a `gt` watermark would lose rows.
    for set in [
        &mut sessions,
        &mut connections,
        &mut machine_rows,
        &mut failures,
    ] {
        share_modified_dates(set, rng);
    }
    equal_dates_across_page_boundary(&mut connections);

    let categories = FAILURE_CATEGORIES
        .iter()
        .enumerate()
        .map(|(i, (code, cat))| {
            let mut r = RowB::new(&schema::CONNECTION_FAILURE_CATEGORIES);
            r.set("Id", Val::Int(i as i64 + 1))
                .set("ConnectionFailureEnumValue", Val::Int(*code as i64))
                .set("Category", Val::Int(*cat as i64));
            r.done()
        })
        .collect();

    let done = |v: Vec<RowB>| v.into_iter().map(RowB::done).collect::<Vec<_>>();
    let mut out = HashMap::new();
    out.insert("Hypervisors", hypervisors);
    out.insert("DesktopGroups", desktop_groups);
    out.insert("Catalogs", catalogs);
    out.insert("Users", users);
    out.insert("Machines", done(machine_rows));
    out.insert("Sessions", done(sessions));
    out.insert("Connections", done(connections));
    out.insert("ConnectionFailureLogs", done(failures));
    out.insert("ConnectionFailureCategories", categories);
    out.insert("LoadIndexes", load_indexes);
    let open = open
        .into_iter()
        .filter_map(|(s, end)| match &out["Sessions"][s][session_key_col()] {
            Val::Guid(k) => Some((*k, end)),
            _ => None,
        })
        .collect();
    let mut world = World {
        seed: opts.seed,
        idx,
        now,
        history_start: now - opts.history,
        offset_min: tenant.utc_offset_minutes,
        sessions_per_day: opts.sessions_per_day as f64 * scale,
        dgs,
        machines,
        by_dg,
        any_eligible,
        clients,
        n_users: out["Users"].len(),
        dns_suffix,
        failure_weight,
        open,
        apps: Vec::new(),
        advances: 0,
    };
    super::advance::initial(&mut world, &mut out);
    (world, out)
}

fn session_key_col() -> usize {
    schema::SESSIONS.prop("SessionKey").expect("schema")
}

/// Generator state of one tenant after `generate_world`, enough for `advance` to continue the
/// same tenant: its structure (groups, machines, users' clients) and the sessions still open.
pub struct World {
    pub(super) seed: u64,
    pub(super) idx: usize,
    pub(super) now: Dt,
    pub(super) history_start: Dt,
    pub(super) offset_min: i32,
    /// Sessions per day of this tenant (already scaled).
    pub(super) sessions_per_day: f64,
    pub(super) dgs: Vec<(u128, u128, i32, i32)>,
    pub(super) machines: Vec<MachineInfo>,
    pub(super) by_dg: Vec<Vec<usize>>,
    pub(super) any_eligible: Vec<usize>,
    pub(super) clients: Vec<Client>,
    pub(super) n_users: usize,
    pub(super) dns_suffix: String,
    pub(super) failure_weight: u32,
    /// Running sessions: (SessionKey, when they end).
    pub(super) open: Vec<(u128, Dt)>,
    /// Application ids (for ApplicationInstances).
    pub(super) apps: Vec<u128>,
    pub(super) advances: u64,
}

impl World {
    /// One session starting at `start`, generated as at construction.
    pub(super) fn session(&mut self, rng: &mut StdRng, start: Dt, force_fail: bool) -> SessOut {
        self.session_shaped(rng, start, force_fail, None)
    }

    /// One session starting at `start`, bent by an incident's `shape`.
    pub(super) fn session_shaped(
        &mut self,
        rng: &mut StdRng,
        start: Dt,
        force_fail: bool,
        shape: Option<&Shape>,
    ) -> SessOut {
        let env = Env {
            now: self.now,
            dgs: &self.dgs,
            by_dg: &self.by_dg,
            any_eligible: &self.any_eligible,
            clients: &self.clients,
            n_users: self.n_users,
            dns_suffix: &self.dns_suffix,
            failure_weight: self.failure_weight,
            shape,
        };
        gen_session(&env, &mut self.machines, rng, |_| start, force_fail)
    }
}

/// What the session generator needs to know about the tenant.
pub(super) struct Env<'a> {
    pub(super) now: Dt,
    pub(super) dgs: &'a [(u128, u128, i32, i32)],
    pub(super) by_dg: &'a [Vec<usize>],
    pub(super) any_eligible: &'a [usize],
    pub(super) clients: &'a [Client],
    pub(super) n_users: usize,
    pub(super) dns_suffix: &'a str,
    pub(super) failure_weight: u32,
    /// Bends the session towards an incident (incident.rs); `None` for ordinary sessions.
    pub(super) shape: Option<&'a Shape>,
}

/// How an incident bends one generated session. The random draws of an ordinary session are
/// made all the same, so ordinary sessions stay exactly as they were.
#[derive(Debug, Clone, Default)]
pub(super) struct Shape {
    /// The delivery group (index into `World::dgs`) instead of a random one.
    pub(super) dg: Option<usize>,
    /// The launch succeeds (no random failure).
    pub(super) succeed: bool,
    /// The launch fails with this SessionFailureCode.
    pub(super) failure_code: Option<i32>,
    /// Range of the ProfileLoad phase in ms instead of the usual one.
    pub(super) profile_ms: Option<(i64, i64)>,
}

/// One generated session with its connections (keyed by brokering date, ids not yet set) and
/// its failure log; `open_end` is when a still-running session will end (used by `advance`).
pub(super) struct SessOut {
    pub(super) session: RowB,
    pub(super) conns: Vec<(Dt, RowB)>,
    pub(super) failure: Option<RowB>,
    pub(super) open_end: Option<Dt>,
}

/// Generates one session starting at `start_of(rng)`; `force_fail` makes it a failed launch.
pub(super) fn gen_session(
    env: &Env,
    machines: &mut [MachineInfo],
    rng: &mut StdRng,
    start_of: impl FnOnce(&mut StdRng) -> Dt,
    force_fail: bool,
) -> SessOut {
    let now = env.now;
    let lag = |rng: &mut StdRng, t: Dt, a: i64, b: i64| (t + ms(rng, a, b)).min(now);
    let mut conns: Vec<(Dt, RowB)> = Vec::with_capacity(4);
    let mut failure = None;
    let p = Prec::pick(rng);
    let start = p.q(start_of(rng));
    let user = rng.random_range(0..env.n_users);
    let shape = env.shape.cloned().unwrap_or_default();
    let dg = rng.random_range(0..env.dgs.len());
    let dg = shape.dg.filter(|&d| d < env.dgs.len()).unwrap_or(dg);
    let (_, _, _, delivery) = env.dgs[dg];
    let pool = if env.by_dg[dg].is_empty() {
        env.any_eligible
    } else {
        &env.by_dg[dg]
    };
    let machine = pool
        .choose(rng)
        .copied()
        .or_else(|| env.any_eligible.first().copied());
    let session_type = match delivery {
        1 => 1,
        0 => 0,
        _ => i64::from(rng.random_bool(0.3)),
    };
    let key = guid(rng);
    let client = &env.clients[user];
    let failed =
        (rng.random_bool(0.05) || force_fail || shape.failure_code.is_some()) && !shape.succeed;
    let failure_code = if let Some(code) = shape.failure_code.filter(|_| failed) {
        code
    } else if failed {
        let mut pick = rng.random_range(0..env.failure_weight);
        FAILURES
            .iter()
            .find(|(_, w)| {
                if pick < *w {
                    true
                } else {
                    pick -= w;
                    false
                }
            })
            .map_or(4, |f| f.0)
    } else {
        0
    };
    // No machine at all when brokering found none to give.
    let machine = if matches!(failure_code, 12 | 100) {
        None
    } else {
        machine
    };
    let machine_id = machine.map_or(Val::Null, |m| Val::Guid(machines[m].id));

    let conn = |rng: &mut StdRng, at: Dt, reconnect: bool| -> RowB {
        let mut c = RowB::new(&schema::CONNECTIONS);
        let roll: f64 = rng.random();
        c.set("ClientName", Val::str(client.name.clone()))
            .set("ClientAddress", Val::str(client.address.clone()))
            .set("ClientVersion", Val::str(client.version))
            .set("ClientPlatform", Val::str(client.platform))
            .set(
                "ConnectedViaHostName",
                Val::str(format!(
                    "gw.{}",
                    env.dns_suffix.replace(".local", ".example")
                )),
            )
            .set("ConnectedViaIPAddress", Val::str("203.0.113.10"))
            .set(
                "LaunchedViaHostName",
                Val::str(format!("sf01.{}", env.dns_suffix)),
            )
            .set("LaunchedViaIPAddress", Val::str("10.0.0.21"))
            .set("IsReconnect", Val::Bool(reconnect))
            .set("IsSecureIca", Val::Bool(false))
            .set(
                "Protocol",
                Val::str(if roll < 0.95 {
                    "HDX"
                } else if roll < 0.99 {
                    "RDP"
                } else {
                    "Console"
                }),
            )
            .set("BrokeringDate", Val::Date(at))
            .set("LogOnStartDate", Val::Date(at))
            .set("SessionKey", Val::Guid(key));
        c
    };

    let mut srow = RowB::new(&schema::SESSIONS);
    srow.set("SessionKey", Val::Guid(key))
        .set("StartDate", Val::Date(start))
        .set("LifecycleState", Val::Int(0))
        .set("UserId", Val::Int(user as i64 + 1))
        .set("MachineId", machine_id.clone())
        .set("SessionType", Val::Int(session_type))
        .set("IsAnonymous", Val::Bool(false))
        .set("CreatedDate", Val::Date(p.q(lag(rng, start, 500, 5000))));

    let mut c = conn(rng, start, false);
    let brokering = ms(rng, 150, 3000);
    c.set(
        "BrokeringDuration",
        Val::Int(
            p.q(start + brokering)
                .signed_duration_since(start)
                .num_milliseconds(),
        ),
    );
    let mut t = p.q(start + brokering);
    if failed {
        let fail_at = p.q(t + ms(rng, 1000, 60_000));
        c.set("CreatedDate", Val::Date(p.q(lag(rng, start, 200, 3000))))
            .set("ModifiedDate", Val::Date(p.q(lag(rng, fail_at, 500, 5000))));
        conns.push((start, c));
        srow.set("EndDate", Val::Date(fail_at))
            .set("FailureId", Val::Int(failure_id(failure_code) as i64))
            .set("FailureDate", Val::Date(fail_at))
            .set("ConnectionState", Val::Int(3))
            .set("ConnectionStateChangeDate", Val::Date(fail_at))
            .set("ExitCode", Val::Int(1))
            .set(
                "ModifiedDate",
                Val::Date(p.q(lag(rng, fail_at, 1000, 30_000))),
            );
        let created = p.q(lag(rng, fail_at, 500, 3000));
        let mut f = RowB::new(&schema::CONNECTION_FAILURE_LOGS);
        f.set("SessionKey", Val::Guid(key))
            .set("FailureDate", Val::Date(fail_at))
            .set("UserId", Val::Int(user as i64 + 1))
            .set("MachineId", machine_id)
            .set("ConnectionFailureEnumValue", Val::Int(failure_code as i64))
            .set("CreatedDate", Val::Date(created))
            .set("ModifiedDate", Val::Date(p.q(lag(rng, created, 0, 3000))));
        failure = Some(f);
        if let Some(m) = machine {
            machines[m].sessions.push((start, Some(fail_at)));
            machines[m].last_event = machines[m].last_event.max(Some(fail_at));
        }
        return SessOut {
            session: srow,
            conns,
            failure,
            open_end: None,
        };
    }

    // First logon: every phase in order.
    if machine.is_some_and(|m| !machines[m].multi) && rng.random_bool(0.2) {
        let e = p.q(t + ms(rng, 20_000, 90_000));
        c.set("VMStartStartDate", Val::Date(t))
            .set("VMStartEndDate", Val::Date(e));
        t = e;
    }
    let hdx_s = p.q(t + ms(rng, 50, 500));
    let hdx_e = p.q(hdx_s + ms(rng, 500, 4000));
    c.set("HdxStartDate", Val::Date(hdx_s))
        .set(
            "ClientSessionValidateDate",
            Val::Date(p.q(hdx_s + ms(rng, 10, 200))),
        )
        .set(
            "ServerSessionValidateDate",
            Val::Date(p.q(hdx_s + ms(rng, 200, 400))),
        )
        .set("HdxEndDate", Val::Date(hdx_e))
        .set("EstablishmentDate", Val::Date(hdx_e));
    let auth = ms(rng, 300, 5000);
    c.set("AuthenticationDuration", Val::Int(auth.num_milliseconds()));
    t = p.q(hdx_e + auth);
    let slow = rng.random_bool(0.05);
    let profile = shape.profile_ms.unwrap_or(if slow {
        (40_000, 120_000)
    } else {
        (1000, 30_000)
    });
    for (phase, a, b) in [
        ("Gpo", 500, 8000),
        ("LogOnScripts", 0, 10_000),
        ("ProfileLoad", profile.0, profile.1),
        ("Interactive", 2000, 15_000),
    ] {
        let e = p.q(t + ms(rng, a, b.max(a + 1)));
        c.set(&format!("{phase}StartDate"), Val::Date(t))
            .set(&format!("{phase}EndDate"), Val::Date(e));
        t = e;
    }
    let logon_end = t;
    c.set("LogOnEndDate", Val::Date(logon_end));
    srow.set(
        "LogOnDuration",
        Val::Int((logon_end - start).num_milliseconds()),
    );
    c.set("CreatedDate", Val::Date(p.q(lag(rng, start, 200, 3000))));

    let r: f64 = rng.random();
    let lifetime = if r < 0.05 {
        Duration::hours(rng.random_range(24..72))
    } else if session_type == 1 {
        mins(rng, 5, 240)
    } else if r < 0.75 {
        mins(rng, 180, 540)
    } else {
        mins(rng, 10, 180)
    };
    let planned_end = logon_end + lifetime;
    let reconnects = match rng.random::<f64>() {
        r if r < 0.30 => 0,
        r if r < 0.60 => 1,
        r if r < 0.82 => 2,
        _ => 3,
    };
    let mut last_change = logon_end;
    let mut disconnected_now = false;
    for _ in 0..reconnects {
        // Disconnects fall somewhere in the remaining lifetime, so most planned ones happen.
        let remaining = (planned_end - t).num_milliseconds().max(240_000);
        let disc = p.q(t + ms(rng, 120_000, remaining / 2));
        if disc >= planned_end || disc >= now - Duration::minutes(2) {
            break;
        }
        c.set("DisconnectDate", Val::Date(disc))
            .set("DisconnectCode", Val::Int(0));
        last_change = disc;
        let back = p.q(disc + mins(rng, 1, 30));
        if back + Duration::minutes(1) >= now || back >= planned_end {
            disconnected_now = back < planned_end;
            break;
        }
        c.set("ModifiedDate", Val::Date(p.q(lag(rng, disc, 500, 5000))));
        let prev = std::mem::replace(&mut c, conn(rng, back, true));
        conns.push((prev.date("BrokeringDate").unwrap_or(start), prev));
        let b = ms(rng, 100, 1500);
        let hs = p.q(back + b);
        let he = p.q(hs + ms(rng, 300, 3000));
        c.set(
            "BrokeringDuration",
            Val::Int((hs - back).num_milliseconds()),
        )
        .set("HdxStartDate", Val::Date(hs))
        .set("HdxEndDate", Val::Date(he))
        .set("EstablishmentDate", Val::Date(he))
        .set(
            "AuthenticationDuration",
            Val::Int(ms(rng, 200, 3000).num_milliseconds()),
        )
        .set("LogOnEndDate", Val::Date(he))
        .set("CreatedDate", Val::Date(p.q(lag(rng, back, 200, 3000))));
        t = he;
        last_change = he;
    }
    let end = planned_end.max(t + Duration::minutes(1));
    let (state, end_date) = if disconnected_now {
        (2, None)
    } else if end <= now - Duration::seconds(30) {
        (3, Some(p.q(end)))
    } else if rng.random_bool(0.3) {
        // Still running but the user walked away.
        let disc = p.q(t + (now - t) / 2);
        c.set("DisconnectDate", Val::Date(disc))
            .set("DisconnectCode", Val::Int(0));
        last_change = disc;
        (2, None)
    } else {
        (5, None)
    };
    if let Some(e) = end_date {
        c.set("DisconnectDate", Val::Date(e))
            .set("DisconnectCode", Val::Int(0));
        last_change = e;
    }
    let modified = p.q(lag(rng, last_change, 500, 5000));
    c.set("ModifiedDate", Val::Date(modified));
    conns.push((c.date("BrokeringDate").unwrap_or(start), c));
    srow.set("EndDate", Val::opt_date(end_date))
        .set("ConnectionState", Val::Int(state))
        .set("ConnectionStateChangeDate", Val::Date(last_change))
        .set(
            "ExitCode",
            if end_date.is_some() {
                Val::Int(0)
            } else {
                Val::Null
            },
        )
        .set(
            "SessionIdleTime",
            if state == 2 {
                Val::Date(last_change)
            } else {
                Val::Null
            },
        )
        .set(
            "ModifiedDate",
            Val::Date(p.q(lag(rng, last_change, 1000, 60_000))),
        );
    if let Some(m) = machine {
        machines[m].sessions.push((start, end_date));
        machines[m].last_event = machines[m].last_event.max(Some(last_change));
    }
    SessOut {
        session: srow,
        conns,
        failure,
        open_end: if end_date.is_none() { Some(end) } else { None },
    }
}

/// Offsets (in `ModifiedDate, Id` order) of the Connections that share one ModifiedDate, so
/// that the batch straddles the boundary between the first and second page of 100.
pub const EQUAL_MODIFIED_OFFSETS: std::ops::RangeInclusive<usize> = 97..=101;

/// Raises the ModifiedDate of the rows at `EQUAL_MODIFIED_OFFSETS` to that of the last one
/// (raising keeps ModifiedDate >= every other date of the row and <= now). Rows after the batch
/// that already had the same date join it, so the batch only grows.
fn equal_dates_across_page_boundary(rows: &mut [RowB]) {
    let last = *EQUAL_MODIFIED_OFFSETS.end();
    if rows.len() <= last {
        return;
    }
    let id = |r: &RowB| match r.get("Id") {
        Val::Int(i) => *i,
        _ => 0,
    };
    let mut order: Vec<usize> = (0..rows.len()).collect();
    order.sort_by_key(|&i| (rows[i].date("ModifiedDate"), id(&rows[i])));
    let Some(target) = rows[order[last]].date("ModifiedDate") else {
        return;
    };
    for &k in &order[EQUAL_MODIFIED_OFFSETS] {
        rows[k].set("ModifiedDate", Val::Date(target));
    }
}

/// Raises the ModifiedDate of a few rows to that of their successor in ModifiedDate order
/// (raising keeps ModifiedDate >= CreatedDate and <= now).
fn share_modified_dates(rows: &mut [RowB], rng: &mut StdRng) {
    // Lags are drawn independently; this is where ModifiedDate >= CreatedDate is guaranteed.
    for r in rows.iter_mut() {
        if let (Some(c), Some(m)) = (r.date("CreatedDate"), r.date("ModifiedDate"))
            && m < c
        {
            r.set("ModifiedDate", Val::Date(c));
        }
    }
    if rows.len() < 4 {
        return;
    }
    let mut order: Vec<usize> = (0..rows.len()).collect();
    order.sort_by_key(|&i| rows[i].date("ModifiedDate"));
    for _ in 0..3 {
        let j = rng.random_range(0..order.len() - 2);
        let Some(target) = rows[order[j + 2]].date("ModifiedDate") else {
            continue;
        };
        for &k in &order[j..j + 2] {
            rows[k].set("ModifiedDate", Val::Date(target));
        }
    }
}

#[cfg(test)]
mod tests {
    use chrono::{TimeZone, Timelike};

    use super::*;
    use crate::sim::schema::{CONNECTIONS, MACHINES, SESSIONS};

    fn opts(now: &str) -> SimOptions {
        SimOptions {
            now: DateTime::parse_from_rfc3339(now)
                .unwrap()
                .with_timezone(&Utc),
            ..SimOptions::default()
        }
    }

    fn tenant(o: &SimOptions, idx: usize) -> HashMap<&'static str, Vec<Row>> {
        generate(o, idx, &tenant_identity(o.seed, idx))
    }

    fn col(def: &EntityDef, name: &str) -> usize {
        def.prop(name).unwrap()
    }

    fn date(v: &Val) -> Option<Dt> {
        match v {
            Val::Date(d) => Some(*d),
            _ => None,
        }
    }

    #[test]
    fn deterministic_and_seed_dependent() {
        let o = opts("2024-08-07T12:00:00Z");
        let a = tenant(&o, 1);
        assert_eq!(a["Sessions"], tenant(&o, 1)["Sessions"]);
        assert_ne!(
            a["Sessions"],
            tenant(
                &SimOptions {
                    seed: 7,
                    ..o.clone()
                },
                1
            )["Sessions"]
        );
        assert_eq!(tenant_identity(42, 0), tenant_identity(42, 0));
        assert_ne!(
            tenant_identity(42, 0).customer_id,
            tenant_identity(42, 1).customer_id
        );
    }

    #[test]
    fn tenant_zero_has_paging_material_whatever_the_weekday() {
        // Wednesday noon, Sunday night, Monday early morning.
        for now in [
            "2024-08-07T12:00:00Z",
            "2024-08-11T23:00:00Z",
            "2024-08-12T04:30:00Z",
        ] {
            let t = tenant(&opts(now), 0);
            assert!(
                t["Connections"].len() >= 1050,
                "{now}: {} connections",
                t["Connections"].len()
            );
        }
    }

    #[test]
    fn rows_are_consistent() {
        let o = opts("2024-08-07T09:13:00Z");
        for idx in 0..3 {
            let t = tenant(&o, idx);
            let (sessions, conns, machines) = (&t["Sessions"], &t["Connections"], &t["Machines"]);
            let mut first_conn: HashMap<Option<crate::sim::value::Key>, &Row> = HashMap::new();
            for c in conns {
                first_conn
                    .entry(c[col(&CONNECTIONS, "SessionKey")].key())
                    .or_insert(c);
            }
            let mut running = 0;
            for s in sessions {
                let c = first_conn[&s[col(&SESSIONS, "SessionKey")].key()];
                if let Val::Int(d) = s[col(&SESSIONS, "LogOnDuration")] {
                    let start = date(&c[col(&CONNECTIONS, "LogOnStartDate")]).unwrap();
                    let end = date(&c[col(&CONNECTIONS, "LogOnEndDate")]).unwrap();
                    assert_eq!(d, (end - start).num_milliseconds());
                    // Completed first logons have every phase, in order.
                    let mut prev = start;
                    for p in [
                        "BrokeringDate",
                        "HdxStartDate",
                        "HdxEndDate",
                        "GpoStartDate",
                        "GpoEndDate",
                        "LogOnScriptsStartDate",
                        "LogOnScriptsEndDate",
                        "ProfileLoadStartDate",
                        "ProfileLoadEndDate",
                        "InteractiveStartDate",
                        "InteractiveEndDate",
                        "LogOnEndDate",
                    ] {
                        let v =
                            date(&c[col(&CONNECTIONS, p)]).unwrap_or_else(|| panic!("{p} missing"));
                        assert!(v >= prev, "{p} before the previous phase");
                        prev = v;
                    }
                }
                match s[col(&SESSIONS, "EndDate")] {
                    Val::Null => {
                        running += 1;
                        assert!(matches!(
                            s[col(&SESSIONS, "ConnectionState")],
                            Val::Int(2 | 5)
                        ));
                    }
                    _ => assert_eq!(s[col(&SESSIONS, "ConnectionState")], Val::Int(3)),
                }
            }
            assert!(running > 0, "tenant {idx} has running sessions");
            for (def, rows) in [
                (&SESSIONS, sessions),
                (&CONNECTIONS, conns),
                (&MACHINES, machines),
            ] {
                let mut modified = Vec::new();
                for r in rows {
                    let c = date(&r[col(def, "CreatedDate")]).unwrap();
                    let m = date(&r[col(def, "ModifiedDate")]).unwrap();
                    assert!(
                        c <= m && m <= o.now,
                        "{}: created {c} modified {m}",
                        def.set
                    );
                    for v in r.iter() {
                        if let Some(d) = date(v) {
                            assert!(d <= o.now, "{}: {d} after now", def.set);
                        }
                    }
                    modified.push(m);
                }
                modified.sort();
                assert!(
                    modified.windows(2).any(|w| w[0] == w[1]),
                    "{}: some ModifiedDates are shared",
                    def.set
                );
            }
            // CurrentSessionCount matches the running sessions on the machine.
            let mut per_machine: HashMap<Option<crate::sim::value::Key>, i64> = HashMap::new();
            for s in sessions
                .iter()
                .filter(|s| s[col(&SESSIONS, "EndDate")] == Val::Null)
            {
                *per_machine
                    .entry(s[col(&SESSIONS, "MachineId")].key())
                    .or_default() += 1;
            }
            for m in machines {
                let n = per_machine
                    .get(&m[col(&MACHINES, "Id")].key())
                    .copied()
                    .unwrap_or(0);
                assert_eq!(m[col(&MACHINES, "CurrentSessionCount")], Val::Int(n));
            }
            assert_eq!(
                t["ConnectionFailureLogs"].len(),
                sessions
                    .iter()
                    .filter(|s| s[col(&SESSIONS, "FailureId")] != Val::Null)
                    .count()
            );
        }
    }

    #[test]
    fn oddities_are_present() {
        let o = opts("2024-08-07T12:00:00Z");
        let t = tenant(&o, 0);
        let m = &t["Machines"];
        assert!(m.iter().any(|r| r[col(&MACHINES, "DnsName")] == Val::Null));
        assert!(
            m.iter()
                .any(|r| r[col(&MACHINES, "IPAddress")] == Val::Null)
        );
        assert!(
            m.iter()
                .any(|r| r[col(&MACHINES, "LifecycleState")] == Val::Int(1))
        );
        assert!(
            m.iter()
                .all(|r| matches!(&r[col(&MACHINES, "Name")], Val::Str(s) if s.contains('\\')))
        );
        let text: String = ["DesktopGroups", "Catalogs", "Users", "Hypervisors"]
            .iter()
            .flat_map(|s| t[s].iter().flat_map(|r| r.iter()))
            .filter_map(|v| match v {
                Val::Str(s) => Some(s.to_string()),
                _ => None,
            })
            .collect();
        for needle in [",", "\"", "'", "ü", "=", " "] {
            assert!(text.contains(needle), "no {needle:?} in names");
        }
        assert!(
            tenant_identity(42, 0).name.contains(' ') && !tenant_identity(42, 0).name.is_ascii()
        );
        // Dates carry 0 to 7 fractional digits.
        let digits: std::collections::HashSet<usize> = t["Connections"]
            .iter()
            .flat_map(|r| r.iter())
            .filter_map(|v| match v {
                Val::Date(d) => Some(crate::sim::value::format_date(*d)),
                _ => None,
            })
            .map(|s| s.split_once('.').map_or(0, |(_, f)| f.len() - 1))
            .collect();
        assert!(
            digits.contains(&0) && digits.contains(&7) && digits.contains(&3),
            "{digits:?}"
        );
    }

    #[test]
    fn weekday_logon_rush_peaks_at_eight_local() {
        let o = SimOptions {
            history: Duration::days(14),
            ..opts("2024-08-10T00:00:00Z")
        };
        let info = tenant_identity(o.seed, 2);
        let t = generate(&o, 2, &info);
        let off = Duration::minutes(info.utc_offset_minutes as i64);
        let mut per_quarter = [0usize; 96];
        for s in &t["Sessions"] {
            let local = date(&s[col(&SESSIONS, "StartDate")]).unwrap() + off;
            if !is_weekend(local.date_naive()) {
                per_quarter[(local.hour() * 4 + local.minute() / 15) as usize] += 1;
            }
        }
        let busiest = (0..96).max_by_key(|&q| per_quarter[q]).unwrap();
        assert!(
            (31..34).contains(&busiest),
            "busiest quarter {busiest} ({per_quarter:?})"
        );
        let rush: usize = per_quarter[31..34].iter().sum();
        let night: usize = per_quarter[0..12].iter().sum();
        assert!(rush > 5 * night.max(1), "rush {rush} night {night}");
        let _ = Utc.timestamp_opt(0, 0);
    }
}
