//! Everything that speaks to Citrix: the token source ([`auth`]), OData query building and
//! paging guards ([`odata`]), the per-tenant Monitor client ([`client`]), the serde models of
//! its JSON ([`model`]) and the int → name tables of its enums ([`enums`]); for on-premises
//! sites the controllers and lockout guard ([`site`]), the Windows handshake ([`winauth`]) and
//! the connection each handshake owns ([`conn`]); the connections cloud tenants share
//! ([`pool`]).

pub mod auth;
pub mod client;
pub mod conn;
pub mod enums;
pub mod model;
pub mod odata;
pub mod pool;
pub mod site;
pub mod winauth;
