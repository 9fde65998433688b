//! Configuration (placeholder while the loader is written).
pub mod duration;
pub mod secret;
