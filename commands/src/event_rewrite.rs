//! Set-based rewriting of stored events, for compaction (sealed values under destroyed keys
//! become tombstones in place: same row, same position, new payload and metadata text).
//!
//! One `UPDATE events … FROM (VALUES …)` statement per `REWRITE_BATCH` rows, on both
//! backends (SQLite has `UPDATE … FROM` since 3.33; the columns of a `VALUES` list are named
//! `column1…` by both). One statement per event cost a round trip and a statement
//! execution each, which bounded compaction at about 8k events/s on Postgres (issue 12).
//!
//! Like the per-event UPDATE it replaces, this rewrites rows outside the event-store trait:
//! compaction is the one writer allowed to change a committed event, and only its sealed
//! envelopes (docs/ARCHITECTURE.md, invariant 19).

use crate::db::{Backend, Db};

/// Rows per statement: 5 parameters each, so 10,000 parameters, under SQLite's limit of
/// 32,766 and Postgres's of 65,535, and few enough that one statement stays short.
pub const REWRITE_BATCH: usize = 2_000;

/// The new text of one stored event, identified by stream and sequence.
#[derive(Debug, Clone)]
pub struct Rewrite {
    pub aggregate_type: String,
    pub aggregate_id: String,
    pub sequence: i64,
    pub payload: String,
    pub metadata: String,
}

fn statement(backend: Backend, rows: usize) -> String {
    let mut values = String::with_capacity(rows * 40);
    for r in 0..rows {
        let b = r * 5;
        if r > 0 {
            values.push(',');
        }
        // Postgres types a VALUES column from its first row; the casts keep the sequence
        // a bigint for the join on the primary key.
        match backend {
            Backend::Sqlite => values.push_str(&format!(
                "(${},${},${},${},${})",
                b + 1,
                b + 2,
                b + 3,
                b + 4,
                b + 5
            )),
            Backend::Postgres => values.push_str(&format!(
                "(${}::text,${}::text,${}::bigint,${}::text,${}::text)",
                b + 1,
                b + 2,
                b + 3,
                b + 4,
                b + 5
            )),
        }
    }
    let (payload, metadata) = match backend {
        Backend::Sqlite => ("v.column4", "v.column5"),
        Backend::Postgres => ("v.column4::json", "v.column5::json"),
    };
    format!(
        "UPDATE events SET payload = {payload}, metadata = {metadata}
         FROM (VALUES {values}) AS v
         WHERE events.aggregate_type = v.column1 AND events.aggregate_id = v.column2
           AND events.sequence = v.column3"
    )
}

/// Writes `rows` (each event's new payload and metadata), `REWRITE_BATCH` rows per
/// statement. Each statement is atomic; a run interrupted between two leaves some events
/// rewritten and the rest as they were, which the next compaction finishes (rewriting is
/// idempotent). Returns the number of rows changed.
pub async fn rewrite_events(db: &Db, rows: &[Rewrite]) -> Result<u64, sqlx::Error> {
    let mut changed = 0;
    for chunk in rows.chunks(REWRITE_BATCH) {
        let sql = statement(db.backend, chunk.len());
        let mut q = sqlx::query(&sql);
        for r in chunk {
            q = q
                .bind(&r.aggregate_type)
                .bind(&r.aggregate_id)
                .bind(r.sequence)
                .bind(&r.payload)
                .bind(&r.metadata);
        }
        changed += q.execute(&db.any).await?.rows_affected();
    }
    Ok(changed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_placeholder_tuple_per_row() {
        let sql = statement(Backend::Sqlite, 3);
        assert!(sql.contains("($11,$12,$13,$14,$15)"), "{sql}");
        assert!(!sql.contains("$16"));
        let pg = statement(Backend::Postgres, 1);
        assert!(
            pg.contains("($1::text,$2::text,$3::bigint,$4::text,$5::text)"),
            "{pg}"
        );
    }
}
