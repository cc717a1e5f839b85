pub mod csv;
pub mod suggest;
