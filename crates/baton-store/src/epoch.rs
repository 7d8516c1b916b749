//! Who the controller is on this store: the store's identity, made once when the store is
//! created, and the controller epoch (fencing), one counter raised atomically by each starting
//! controller.

use crate::{Store, StoreError, with_pool};

impl Store {
    /// Raises the epoch and returns the new value: 1 for the first controller on this store.
    pub async fn next_epoch(&self) -> Result<i64, StoreError> {
        const SQL: &str =
            "UPDATE controller_epoch SET epoch = epoch + 1 WHERE id = 1 RETURNING epoch";
        with_pool!(self, |p| {
            sqlx::query_scalar::<_, i64>(SQL).fetch_one(p).await
        })
        .map_err(StoreError::query("raising the controller epoch"))
    }

    /// This store's identity: 16 hex digits, random, made when the store was created and the
    /// same ever after (every controller on this database reads the same one).
    pub async fn store_id(&self) -> Result<String, StoreError> {
        const SQL: &str = "SELECT store_id FROM store_identity WHERE id = 1";
        with_pool!(self, |p| {
            sqlx::query_scalar::<_, String>(SQL).fetch_one(p).await
        })
        .map_err(StoreError::query("reading the store's identity"))
    }
}
