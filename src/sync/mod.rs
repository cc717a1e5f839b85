//! One sync cycle: read, plan (pure), write, report.

pub mod catalog;
pub mod engine;
pub mod kept;
pub mod plan;
pub mod report;
pub mod review;
