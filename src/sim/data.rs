//! In-memory tables of one simulated tenant, with the key and foreign-key indexes that make
//! navigation (`$expand`, `Session/ConnectionState` in `$filter`) O(1) instead of a scan.
//! It stores and looks up rows; it must not generate them (generate.rs) or interpret queries.

use std::collections::HashMap;

use super::schema::{ENTITY_SETS, EntityDef, NavDef, NavKind};
use super::value::{Key, Val};

/// A row: one value per property, in the order of `EntityDef::props`.
pub type Row = Box<[Val]>;

pub struct Table {
    pub def: &'static EntityDef,
    pub rows: Vec<Row>,
    by_key: HashMap<Key, u32>,
    /// Property name → (foreign key value → rows), for the collection navigations that
    /// point at this table.
    by_fk: HashMap<&'static str, HashMap<Key, Vec<u32>>>,
}

impl Table {
    pub fn get(&self, key: Key) -> Option<u32> {
        self.by_key.get(&key).copied()
    }

    pub fn rows_with(&self, fk_prop: &str, key: Key) -> &[u32] {
        self.by_fk
            .get(fk_prop)
            .and_then(|m| m.get(&key))
            .map_or(&[], |v| v.as_slice())
    }
}

/// All tables of one tenant, indexed by the position of their `EntityDef` in `ENTITY_SETS`.
pub struct TenantData {
    tables: Vec<Table>,
}

impl TenantData {
    /// Builds the indexes. Rows must match their schema (checked in debug builds).
    pub fn new(mut rows: HashMap<&'static str, Vec<Row>>) -> TenantData {
        let mut tables: Vec<Table> = ENTITY_SETS
            .iter()
            .map(|def| {
                let rows = rows.remove(def.set).unwrap_or_default();
                debug_assert!(
                    rows.iter().all(|r| r.len() == def.props.len()),
                    "{}",
                    def.set
                );
                let k = def.key_index();
                let by_key = rows
                    .iter()
                    .enumerate()
                    .filter_map(|(i, r)| Some((r[k].key()?, i as u32)))
                    .collect();
                Table {
                    def,
                    rows,
                    by_key,
                    by_fk: HashMap::new(),
                }
            })
            .collect();
        for def in ENTITY_SETS {
            for nav in def.navs {
                if let NavKind::Many { target_fk } = nav.kind {
                    let Some(t) = tables.iter_mut().find(|t| t.def.set == nav.target) else {
                        continue;
                    };
                    if t.by_fk.contains_key(target_fk) {
                        continue;
                    }
                    let col = t.def.prop(target_fk).expect("schema checked by tests");
                    let mut idx: HashMap<Key, Vec<u32>> = HashMap::new();
                    for (i, r) in t.rows.iter().enumerate() {
                        if let Some(k) = r[col].key() {
                            idx.entry(k).or_default().push(i as u32);
                        }
                    }
                    t.by_fk.insert(target_fk, idx);
                }
            }
        }
        TenantData { tables }
    }

    /// The rows back, by entity set (indexes dropped), so that they can be changed and indexed
    /// again with `new`.
    pub fn into_rows(self) -> HashMap<&'static str, Vec<Row>> {
        self.tables
            .into_iter()
            .map(|t| (t.def.set, t.rows))
            .collect()
    }

    pub fn table(&self, set: &str) -> &Table {
        self.tables
            .iter()
            .find(|t| t.def.set == set)
            .expect("every schema entity set has a table")
    }

    /// Follows a single-valued navigation from `row` of `from`; `None` when the foreign key is
    /// null or dangling (the service then renders the expanded property as `null`).
    pub fn follow_one(&self, from: &EntityDef, row: &Row, nav: &NavDef) -> Option<(&Table, u32)> {
        let NavKind::One { fk } = nav.kind else {
            return None;
        };
        let key = row[from.prop(fk)?].key()?;
        let target = self.table(nav.target);
        Some((target, target.get(key)?))
    }

    /// Follows a collection navigation; the rows come in key order of insertion.
    pub fn follow_many(&self, from: &EntityDef, row: &Row, nav: &NavDef) -> (&Table, &[u32]) {
        let target = self.table(nav.target);
        let NavKind::Many { target_fk } = nav.kind else {
            return (target, &[]);
        };
        match row[from.key_index()].key() {
            Some(k) => (target, target.rows_with(target_fk, k)),
            None => (target, &[]),
        }
    }
}
