//! Domain facts that are neither vendor API nor storage: products, months, run ids.

pub mod month;
pub mod products;
pub mod suggest;
