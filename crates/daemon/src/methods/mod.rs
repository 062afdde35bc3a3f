//! The Admin API method handlers.

/// Adds every method handler to `table`.
pub fn register(table: &mut crate::dispatch::Table) {
    let _ = table;
}
