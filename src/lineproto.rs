//! TEMPORARY interface stub; replaced by the real encoder from the `sink` branch.
use std::borrow::Cow;
#[derive(Debug, Clone, PartialEq)]
pub enum FieldValue {
    Int(i64),
    Float(f64),
    Bool(bool),
    Str(String),
}
impl From<i64> for FieldValue {
    fn from(v: i64) -> Self {
        FieldValue::Int(v)
    }
}
impl From<f64> for FieldValue {
    fn from(v: f64) -> Self {
        FieldValue::Float(v)
    }
}
impl From<bool> for FieldValue {
    fn from(v: bool) -> Self {
        FieldValue::Bool(v)
    }
}
impl From<String> for FieldValue {
    fn from(v: String) -> Self {
        FieldValue::Str(v)
    }
}
impl From<&str> for FieldValue {
    fn from(v: &str) -> Self {
        FieldValue::Str(v.to_string())
    }
}
#[derive(Debug, Clone, PartialEq)]
pub struct Point {
    pub measurement: Cow<'static, str>,
    pub tags: Vec<(Cow<'static, str>, String)>,
    pub fields: Vec<(Cow<'static, str>, FieldValue)>,
    pub timestamp_ns: i64,
}
impl Point {
    pub fn new(m: impl Into<Cow<'static, str>>, ts: i64) -> Self {
        Point {
            measurement: m.into(),
            tags: vec![],
            fields: vec![],
            timestamp_ns: ts,
        }
    }
    pub fn tag(mut self, k: impl Into<Cow<'static, str>>, v: impl Into<String>) -> Self {
        self.tags.push((k.into(), v.into()));
        self
    }
    pub fn field(mut self, k: impl Into<Cow<'static, str>>, v: impl Into<FieldValue>) -> Self {
        self.fields.push((k.into(), v.into()));
        self
    }
    pub fn field_opt<V: Into<FieldValue>>(
        self,
        k: impl Into<Cow<'static, str>>,
        v: Option<V>,
    ) -> Self {
        match v {
            Some(v) => self.field(k, v),
            None => self,
        }
    }
}
