//! The plaintext scanner from DESIGN.md: reads every row of every table (events,
//! snapshots, key table, read models, everything) as text and reports which of the given
//! personal values or secrets appear in plaintext anywhere.

use sqlx::{AnyPool, Row};

async fn connect(database_url: &str) -> (AnyPool, bool) {
    sqlx::any::install_default_drivers();
    let pool = AnyPool::connect(database_url).await.expect("scan connects");
    (pool, database_url.starts_with("postgres"))
}

/// Every row of `table` as one line of text (blobs hex-encoded, NULL as `NULL`), sorted.
async fn table_rows(pool: &AnyPool, pg: bool, table: &str) -> Vec<String> {
    let sql = if pg {
        format!("SELECT t::text FROM \"{table}\" t")
    } else {
        let cols: Vec<String> =
            sqlx::query(&format!("SELECT name FROM pragma_table_info('{table}')"))
                .fetch_all(pool)
                .await
                .unwrap()
                .iter()
                .map(|r| r.get::<String, _>(0))
                .collect();
        let expr = cols
            .iter()
            .map(|c| {
                format!("COALESCE(CASE WHEN typeof(\"{c}\") = 'blob' THEN hex(\"{c}\") ELSE CAST(\"{c}\" AS TEXT) END, 'NULL')")
            })
            .collect::<Vec<_>>()
            .join(" || '|' || ");
        format!("SELECT {expr} FROM \"{table}\"")
    };
    let mut rows: Vec<String> = sqlx::query(&sql)
        .fetch_all(pool)
        .await
        .unwrap()
        .iter()
        .map(|r| r.get::<String, _>(0))
        .collect();
    rows.sort();
    rows
}

/// Returns `table: value` for every needle found; empty means the database is clean.
pub async fn find_plaintext(database_url: &str, needles: &[&str]) -> Vec<String> {
    let (pool, pg) = connect(database_url).await;
    let tables: Vec<String> = if pg {
        sqlx::query("SELECT table_name::text FROM information_schema.tables WHERE table_schema = 'public' AND table_type = 'BASE TABLE'")
    } else {
        sqlx::query("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'")
    }
    .fetch_all(&pool)
    .await
    .unwrap()
    .iter()
    .map(|r| r.get::<String, _>(0))
    .collect();
    assert!(
        tables.iter().any(|t| t == "events"),
        "scanner sees the events table"
    );
    let mut hits = Vec::new();
    for t in &tables {
        for row in table_rows(&pool, pg, t).await {
            let lower = row.to_lowercase();
            for n in needles {
                if lower.contains(&n.to_lowercase()) || lower.contains(&hex_of(n)) {
                    hits.push(format!("{t}: {n}"));
                }
            }
        }
    }
    pool.close().await;
    hits.sort();
    hits.dedup();
    hits
}

/// Every row of `table` rendered as text, sorted (to compare read models).
pub async fn rows_as_text(database_url: &str, table: &str) -> Vec<String> {
    let (pool, pg) = connect(database_url).await;
    let rows = table_rows(&pool, pg, table).await;
    pool.close().await;
    rows
}

fn hex_of(s: &str) -> String {
    s.bytes().map(|b| format!("{b:02x}")).collect()
}
