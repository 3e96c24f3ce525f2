//! Everything that speaks to Citrix: the token source ([`auth`]), OData query building and
//! paging guards ([`odata`]), the per-tenant Monitor client ([`client`]), the serde models of
//! its JSON ([`model`]) and the int → name tables of its enums ([`enums`]).

pub mod auth;
pub mod client;
pub mod enums;
pub mod model;
pub mod odata;
pub mod site;
pub mod winauth;
