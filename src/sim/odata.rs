//! OData query options other than the `$filter` language: parsing `$select`, `$expand` (with
//! nested `;`-separated options), `$orderby`, `$top`, `$skip`, `$count`; running them over a
//! tenant's tables; server-driven paging with absolute `@odata.nextLink`s; and shaping rows into
//! the JSON the Monitor Service returns. It must not know about HTTP, auth or faults.
//!
//! Choices: system query option names are matched case-insensitively (`$OrderBy` appears in
//! official samples); `asc`/`desc` too; property names are case-sensitive. Options the simulator
//! does not implement (`$apply`, `$search`, `$skiptoken`, ...) are rejected with 400 rather than
//! ignored. Results are ordered by `$orderby` then by the entity key, so paging never repeats or
//! skips a row. Expanded collections are not paged.

use std::cmp::Ordering;

use percent_encoding::{AsciiSet, CONTROLS, utf8_percent_encode};
use serde::ser::{Serialize, SerializeMap, SerializeSeq, Serializer};

use super::data::{Row, TenantData};
use super::query::{
    Expr, Path, QueryError, V, compare, eval_path, matches, parse_filter, resolve_path,
};
use super::schema::{EntityDef, NavDef, NavKind, entity_set};
use super::value::Val;

/// Deepest `$expand` nesting accepted.
const MAX_EXPAND_DEPTH: usize = 5;

#[derive(Debug, Clone, Copy)]
pub struct OrderKey {
    pub desc: bool,
}

#[derive(Debug, Clone, Default)]
pub struct Options {
    pub filter: Option<Expr>,
    /// Property indexes; `None` means all properties.
    pub select: Option<Vec<usize>>,
    pub expand: Vec<Expand>,
    pub orderby: Vec<(Path, OrderKey)>,
    pub top: Option<usize>,
    pub skip: usize,
    pub count: bool,
}

#[derive(Debug, Clone)]
pub struct Expand {
    pub nav: &'static NavDef,
    pub target: &'static EntityDef,
    pub opts: Options,
}

fn err<T>(msg: impl Into<String>) -> Result<T, QueryError> {
    Err(QueryError(msg.into()))
}

/// Splits at `sep` outside parentheses and string literals.
fn split_top(s: &str, sep: char) -> Vec<&str> {
    let mut out = Vec::new();
    let (mut depth, mut quoted, mut start) = (0i32, false, 0);
    for (i, c) in s.char_indices() {
        match c {
            '\'' => quoted = !quoted,
            '(' if !quoted => depth += 1,
            ')' if !quoted => depth -= 1,
            c if c == sep && !quoted && depth == 0 => {
                out.push(&s[start..i]);
                start = i + c.len_utf8();
            }
            _ => {}
        }
    }
    out.push(&s[start..]);
    out
}

fn parse_count(v: &str, opt: &str) -> Result<usize, QueryError> {
    v.trim()
        .parse::<usize>()
        .or_else(|_| err(format!("Invalid value '{v}' for {opt} query option found. The {opt} query option requires a non-negative integer value.")))
}

/// Parses the top-level query of a request for entity set `def` from decoded `pairs`.
pub fn parse_options(
    pairs: &[(String, String)],
    def: &'static EntityDef,
) -> Result<Options, QueryError> {
    let mut opts = Options::default();
    let mut seen: Vec<String> = Vec::new();
    for (k, v) in pairs {
        if !k.starts_with('$') {
            continue; // custom query options are ignored, as OData prescribes
        }
        let name = k.to_ascii_lowercase();
        if seen.contains(&name) {
            return err(format!(
                "Query option '{k}' was specified more than once, but it must be specified at most once."
            ));
        }
        seen.push(name.clone());
        apply_option(&mut opts, &name, k, v, def, 0, true)?;
    }
    Ok(opts)
}

fn apply_option(
    opts: &mut Options,
    name: &str,
    raw_name: &str,
    v: &str,
    def: &'static EntityDef,
    depth: usize,
    top_level: bool,
) -> Result<(), QueryError> {
    match name {
        "$filter" => opts.filter = Some(parse_filter(v, def)?),
        "$select" => opts.select = parse_select(v, def)?,
        "$expand" => opts.expand = parse_expand(v, def, depth)?,
        "$orderby" => opts.orderby = parse_orderby(v, def)?,
        "$top" => opts.top = Some(parse_count(v, "$top")?),
        "$skip" => opts.skip = parse_count(v, "$skip")?,
        "$count" if top_level => {
            opts.count = match v.trim().to_ascii_lowercase().as_str() {
                "true" => true,
                "false" => false,
                _ => {
                    return err(format!(
                        "'{v}' is not a valid count option (true or false)."
                    ));
                }
            }
        }
        "$format" if top_level && matches!(v.trim(), "json" | "application/json") => {}
        _ => {
            return err(format!(
                "The query parameter '{raw_name}' is not supported by the simulator."
            ));
        }
    }
    Ok(())
}

fn parse_select(v: &str, def: &'static EntityDef) -> Result<Option<Vec<usize>>, QueryError> {
    let mut out = Vec::new();
    for item in v.split(',').map(str::trim) {
        if item == "*" {
            return Ok(None);
        }
        match def.prop(item) {
            Some(i) => {
                if !out.contains(&i) {
                    out.push(i);
                }
            }
            None if def.nav(item).is_some() => {
                return err(format!(
                    "$select of navigation property '{item}' is not supported by the simulator; use $expand"
                ));
            }
            None => {
                return err(format!(
                    "Could not find a property named '{item}' on type '{}'.",
                    def.type_name
                ));
            }
        }
    }
    Ok(Some(out))
}

fn parse_orderby(v: &str, def: &'static EntityDef) -> Result<Vec<(Path, OrderKey)>, QueryError> {
    let mut out = Vec::new();
    for item in split_top(v, ',') {
        let mut words = item.split_whitespace();
        let Some(path) = words.next() else {
            return err(format!("empty item in $orderby '{v}'"));
        };
        let desc = match words.next().map(str::to_ascii_lowercase).as_deref() {
            None | Some("asc") => false,
            Some("desc") => true,
            Some(w) => return err(format!("'{w}' in $orderby '{v}': expected asc or desc")),
        };
        if words.next().is_some() {
            return err(format!("syntax error in $orderby '{v}'"));
        }
        let segs: Vec<&str> = path.split('/').collect();
        out.push((resolve_path(&segs, def)?, OrderKey { desc }));
    }
    Ok(out)
}

fn parse_expand(v: &str, def: &'static EntityDef, depth: usize) -> Result<Vec<Expand>, QueryError> {
    if depth >= MAX_EXPAND_DEPTH {
        return err(format!(
            "The $expand nesting is deeper than the simulator's limit of {MAX_EXPAND_DEPTH}."
        ));
    }
    let mut out: Vec<Expand> = Vec::new();
    for item in split_top(v, ',') {
        let item = item.trim();
        let (name, inner) = match item.find('(') {
            Some(i) => {
                let Some(inner) = item[i + 1..].strip_suffix(')') else {
                    return err(format!("')' expected in $expand item '{item}'"));
                };
                (item[..i].trim(), Some(inner))
            }
            None => (item, None),
        };
        let Some(nav) = def.nav(name) else {
            return err(format!(
                "Could not find a navigation property named '{name}' on type '{}'.",
                def.type_name
            ));
        };
        let target = entity_set(nav.target).ok_or_else(|| QueryError("schema".into()))?;
        let mut opts = Options::default();
        let mut seen: Vec<String> = Vec::new();
        for part in inner.map(|s| split_top(s, ';')).unwrap_or_default() {
            let part = part.trim();
            if part.is_empty() {
                continue;
            }
            let Some((k, v)) = part.split_once('=') else {
                return err(format!(
                    "'{part}' in $expand of '{name}' is not an option=value pair"
                ));
            };
            let lname = k.trim().to_ascii_lowercase();
            if seen.contains(&lname) {
                return err(format!("'{k}' given twice in $expand of '{name}'"));
            }
            seen.push(lname.clone());
            if matches!(nav.kind, NavKind::One { .. })
                && matches!(lname.as_str(), "$filter" | "$orderby" | "$top" | "$skip")
            {
                return err(format!(
                    "'{k}' cannot be applied to the single-valued navigation property '{name}'"
                ));
            }
            apply_option(&mut opts, &lname, k.trim(), v, target, depth + 1, false)?;
        }
        if out.iter().any(|e| e.nav.name == nav.name) {
            return err(format!("navigation property '{name}' is expanded twice"));
        }
        out.push(Expand { nav, target, opts });
    }
    Ok(out)
}

/// Filters `candidates` (all rows when `None`) and orders them by `$orderby` then key.
fn select_rows(
    data: &TenantData,
    def: &'static EntityDef,
    candidates: Option<&[u32]>,
    opts: &Options,
) -> Vec<u32> {
    let table = data.table(def.set);
    let mut out: Vec<u32> = match candidates {
        Some(c) => c.to_vec(),
        None => (0..table.rows.len() as u32).collect(),
    };
    if let Some(f) = &opts.filter {
        out.retain(|&i| matches(f, data, def, &table.rows[i as usize]));
    }
    let key = def.key_index();
    out.sort_by(|&a, &b| {
        let (ra, rb) = (&table.rows[a as usize], &table.rows[b as usize]);
        for (path, k) in &opts.orderby {
            let o = compare(
                eval_path(path, data, def, ra),
                eval_path(path, data, def, rb),
            );
            let o = if k.desc { o.reverse() } else { o };
            if o != Ordering::Equal {
                return o;
            }
        }
        compare(V::from(&ra[key]), V::from(&rb[key]))
    });
    out
}

/// One shaped entity: selected properties in schema order, then expansions.
pub struct Entity<'a> {
    fields: Vec<(&'static str, Out<'a>)>,
}

enum Out<'a> {
    Val(&'a Val),
    One(Option<Entity<'a>>),
    Many(Vec<Entity<'a>>),
}

impl Serialize for Entity<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(self.fields.len()))?;
        for (k, v) in &self.fields {
            match v {
                Out::Val(v) => m.serialize_entry(k, v)?,
                Out::One(e) => m.serialize_entry(k, e)?,
                Out::Many(es) => m.serialize_entry(k, es)?,
            }
        }
        m.end()
    }
}

fn shape<'a>(
    data: &'a TenantData,
    def: &'static EntityDef,
    row: &'a Row,
    opts: &Options,
) -> Entity<'a> {
    let mut fields: Vec<(&'static str, Out<'a>)> = match &opts.select {
        None => def
            .props
            .iter()
            .zip(row.iter())
            .map(|(p, v)| (p.name, Out::Val(v)))
            .collect(),
        Some(sel) => {
            let mut sel = sel.clone();
            sel.sort_unstable();
            sel.into_iter()
                .map(|i| (def.props[i].name, Out::Val(&row[i])))
                .collect()
        }
    };
    for e in &opts.expand {
        let out = match e.nav.kind {
            NavKind::One { .. } => Out::One(
                data.follow_one(def, row, e.nav)
                    .map(|(t, i)| shape(data, e.target, &t.rows[i as usize], &e.opts)),
            ),
            NavKind::Many { .. } => {
                let (t, rows) = data.follow_many(def, row, e.nav);
                let picked = select_rows(data, e.target, Some(rows), &e.opts);
                let end = e
                    .opts
                    .top
                    .map_or(picked.len(), |n| (e.opts.skip + n).min(picked.len()));
                let picked = picked.get(e.opts.skip.min(end)..end).unwrap_or(&[]);
                Out::Many(
                    picked
                        .iter()
                        .map(|&i| shape(data, e.target, &t.rows[i as usize], &e.opts))
                        .collect(),
                )
            }
        };
        fields.push((e.nav.name, out));
    }
    Entity { fields }
}

/// `Set(Prop1,Nav(Inner))` context suffix as ASP.NET OData writes it.
fn context_items(def: &'static EntityDef, opts: &Options) -> Option<String> {
    if opts.select.is_none() && opts.expand.is_empty() {
        return None;
    }
    let mut items: Vec<String> = Vec::new();
    if let Some(sel) = &opts.select {
        items.extend(sel.iter().map(|&i| def.props[i].name.to_string()));
    }
    for e in &opts.expand {
        items.push(format!(
            "{}({})",
            e.nav.name,
            context_items(e.target, &e.opts).unwrap_or_default()
        ));
    }
    Some(items.join(","))
}

/// One page of a collection response.
pub struct Page<'a> {
    pub context: String,
    pub count: Option<usize>,
    pub value: Vec<Entity<'a>>,
    pub next_link: Option<String>,
}

impl Serialize for Page<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(None)?;
        m.serialize_entry("@odata.context", &self.context)?;
        if let Some(c) = self.count {
            m.serialize_entry("@odata.count", &c)?;
        }
        m.serialize_entry("value", &Rows(&self.value))?;
        if let Some(n) = &self.next_link {
            m.serialize_entry("@odata.nextLink", n)?;
        }
        m.end()
    }
}

struct Rows<'a, 'b>(&'b [Entity<'a>]);

impl Serialize for Rows<'_, '_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(Some(self.0.len()))?;
        for e in self.0 {
            seq.serialize_element(e)?;
        }
        seq.end()
    }
}

/// Characters escaped in nextLink query keys and values: enough to keep the URL unambiguous
/// while leaving OData punctuation (`$ ( ) , / : ; '`) readable.
const QUERY: &AsciiSet = &CONTROLS
    .add(b' ')
    .add(b'"')
    .add(b'#')
    .add(b'%')
    .add(b'&')
    .add(b'+')
    .add(b'<')
    .add(b'=')
    .add(b'>')
    .add(b'?')
    .add(b'[')
    .add(b'\\')
    .add(b']')
    .add(b'^')
    .add(b'`')
    .add(b'{')
    .add(b'|')
    .add(b'}');

fn next_link(
    base: &str,
    set: &str,
    pairs: &[(String, String)],
    skip: usize,
    top: Option<usize>,
) -> String {
    let mut out: Vec<(String, String)> = Vec::with_capacity(pairs.len() + 1);
    let mut had_skip = false;
    for (k, v) in pairs {
        match k.to_ascii_lowercase().as_str() {
            "$skip" => {
                had_skip = true;
                out.push((k.clone(), skip.to_string()));
            }
            "$top" => out.push((k.clone(), top.unwrap_or(0).to_string())),
            _ => out.push((k.clone(), v.clone())),
        }
    }
    if !had_skip {
        out.push(("$skip".into(), skip.to_string()));
    }
    let q: Vec<String> = out
        .iter()
        .map(|(k, v)| {
            format!(
                "{}={}",
                utf8_percent_encode(k, QUERY),
                utf8_percent_encode(v, QUERY)
            )
        })
        .collect();
    format!("{base}/{set}?{}", q.join("&"))
}

/// Runs a top-level collection query and builds one page.
/// `base` is the service root as the client reached it (`http://host:port/monitorodata`).
pub fn run<'a>(
    data: &'a TenantData,
    def: &'static EntityDef,
    opts: &Options,
    pairs: &[(String, String)],
    base: &str,
    page_size: usize,
) -> Page<'a> {
    let rows = select_rows(data, def, None, opts);
    let total = rows.len();
    let start = opts.skip.min(total);
    let window_end = opts
        .top
        .map_or(total, |t| start.saturating_add(t).min(total));
    let page_end = start.saturating_add(page_size.max(1)).min(window_end);
    let table = data.table(def.set);
    let value = rows[start..page_end]
        .iter()
        .map(|&i| shape(data, def, &table.rows[i as usize], opts))
        .collect();
    let next_link = (page_end < window_end).then(|| {
        next_link(
            base,
            def.set,
            pairs,
            page_end,
            opts.top.map(|t| t - (page_end - start)),
        )
    });
    let context = match context_items(def, opts) {
        Some(items) => format!("{base}/$metadata#{}({items})", def.set),
        None => format!("{base}/$metadata#{}", def.set),
    };
    Page {
        context,
        count: opts.count.then_some(total),
        value,
        next_link,
    }
}

/// A row as served without options, for `SimHandle::rows`.
pub fn row_json(def: &'static EntityDef, row: &Row) -> serde_json::Value {
    let map = def
        .props
        .iter()
        .zip(row.iter())
        .map(|(p, v)| (p.name.to_string(), v.to_json()))
        .collect();
    serde_json::Value::Object(map)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::schema::{CONNECTIONS, MACHINES, SESSIONS};

    fn pairs(q: &str) -> Vec<(String, String)> {
        url::form_urlencoded::parse(q.as_bytes())
            .into_owned()
            .collect()
    }

    fn parse(q: &str, def: &'static EntityDef) -> Result<Options, QueryError> {
        parse_options(&pairs(q), def)
    }

    #[test]
    fn option_names_are_case_insensitive_and_unique() {
        let o = parse(
            "$OrderBy=Name Desc&$TOP=5&$Skip=2&$count=true&custom=x",
            &MACHINES,
        )
        .unwrap();
        assert_eq!(o.top, Some(5));
        assert_eq!(o.skip, 2);
        assert!(o.count);
        assert!(o.orderby[0].1.desc);
        assert!(
            parse("$top=1&$Top=2", &MACHINES)
                .unwrap_err()
                .0
                .contains("more than once")
        );
        assert!(
            parse("$apply=groupby((Name))", &MACHINES)
                .unwrap_err()
                .0
                .contains("'$apply' is not supported")
        );
        assert!(parse("$top=-1", &MACHINES).unwrap_err().0.contains("$top"));
        assert!(parse("$skip=x", &MACHINES).unwrap_err().0.contains("$skip"));
        assert!(parse("$count=yes", &MACHINES).is_err());
        assert!(
            parse("$select=Name,Nope", &MACHINES)
                .unwrap_err()
                .0
                .contains("'Nope'")
        );
        assert!(parse("$orderby=Name sideways", &MACHINES).is_err());
    }

    #[test]
    fn nested_expand_options() {
        let o = parse(
            "$expand=Machine($select=Name;$expand=DesktopGroup($select=Name)),User($select=FullName),Connections($select=LogOnStartDate;$OrderBy=LogOnStartDate Desc;$top=1;$filter=IsReconnect eq false)",
            &SESSIONS,
        )
        .unwrap();
        assert_eq!(o.expand.len(), 3);
        assert_eq!(o.expand[0].opts.expand[0].nav.name, "DesktopGroup");
        assert_eq!(o.expand[2].opts.top, Some(1));
        assert!(o.expand[2].opts.filter.is_some());
        let ctx = context_items(&SESSIONS, &o).unwrap();
        assert_eq!(
            ctx,
            "Machine(Name,DesktopGroup(Name)),User(FullName),Connections(LogOnStartDate)"
        );
        for (q, want) in [
            ("$expand=Nope", "navigation property named 'Nope'"),
            ("$expand=Machine($top=1)", "single-valued"),
            ("$expand=Connections($bogus=1)", "'$bogus' is not supported"),
            (
                "$expand=Connections($count=true)",
                "'$count' is not supported",
            ),
            (
                "$expand=Machine($select=Nope)",
                "'Nope' on type 'Citrix.Monitor.Repository.V2.Machine'",
            ),
            ("$expand=Machine($select=Name", "')' expected"),
            ("$expand=User,User", "twice"),
        ] {
            let e = parse(q, &SESSIONS).map(|_| ()).unwrap_err();
            assert!(e.0.contains(want), "{q}: {e}");
        }
        assert!(
            parse(
                "$expand=Session($expand=Machine($expand=Sessions($expand=User)))",
                &CONNECTIONS
            )
            .is_ok()
        );
    }

    #[test]
    fn next_link_keeps_options_and_counts_down_top() {
        let p: Vec<(String, String)> = [
            (
                "$filter",
                "ModifiedDate ge 2024-07-30T00:00:00Z and Name eq 'a+b&c'",
            ),
            ("$Top", "250"),
            ("$select", "Id"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let l = next_link("http://h:1/monitorodata", "Machines", &p, 100, Some(150));
        assert_eq!(
            l,
            "http://h:1/monitorodata/Machines?$filter=ModifiedDate%20ge%202024-07-30T00:00:00Z%20and%20Name%20eq%20'a%2Bb%26c'&$Top=150&$select=Id&$skip=100"
        );
        let back = pairs(l.split_once('?').unwrap().1);
        assert_eq!(back[0], p[0], "the filter survives a round trip");
    }

    #[test]
    fn split_respects_parens_and_quotes() {
        assert_eq!(
            split_top("a(b,c),d,'e,f'", ','),
            vec!["a(b,c)", "d", "'e,f'"]
        );
        assert_eq!(
            split_top("$select=a;$filter=x eq ';'", ';'),
            vec!["$select=a", "$filter=x eq ';'"]
        );
    }
}
