//! One module per subcommand.

pub mod bench;
pub mod gen;
pub mod run;
pub mod summary;
pub mod test;
pub mod top;
pub mod validate;
