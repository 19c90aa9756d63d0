//! Crash injection for the crash tests. `JOURNEY_FAULT=<point>` makes the process abort —
//! no destructors, no flushing, as `kill -9` would — the first time it reaches the named
//! point. Without the variable (production), a point costs one read of a `OnceLock`.
//! The points are listed in docs/operations.md.

use std::sync::OnceLock;

static POINT: OnceLock<Option<String>> = OnceLock::new();

pub fn crash_point(name: &str) {
    let armed = POINT.get_or_init(|| {
        std::env::var("JOURNEY_FAULT")
            .ok()
            .filter(|p| !p.is_empty())
    });
    if armed.as_deref() == Some(name) {
        eprintln!("JOURNEY_FAULT: crashing at {name}");
        std::process::abort();
    }
}
