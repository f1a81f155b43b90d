//! Failpoints for the crash tests: `failpoint!("name")` aborts the process (as `kill -9`
//! would stop it) when the environment variable `WEIR_FAILPOINT` names that point, optionally
//! on its n-th hit (`name:3`). Compiled only with the `failpoints` cargo feature, which the
//! test command turns on; release builds have none.

/// Crash here if `WEIR_FAILPOINT` says so (no-op without the `failpoints` feature).
#[macro_export]
macro_rules! failpoint {
    ($name:expr) => {
        #[cfg(feature = "failpoints")]
        $crate::failpoint::hit($name);
    };
}

#[cfg(feature = "failpoints")]
static HITS: std::sync::Mutex<Vec<(String, u64)>> = std::sync::Mutex::new(Vec::new());

/// Count a hit of failpoint `name`; abort when it is the one asked for.
#[cfg(feature = "failpoints")]
pub fn hit(name: &str) {
    let Ok(want) = std::env::var("WEIR_FAILPOINT") else {
        return;
    };
    let (point, nth) = match want.split_once(':') {
        Some((p, n)) => (p.to_string(), n.parse().unwrap_or(1)),
        None => (want.clone(), 1),
    };
    if point != name {
        return;
    }
    let count = match HITS.lock() {
        Ok(mut hits) => match hits.iter_mut().find(|(n, _)| n == name) {
            Some((_, c)) => {
                *c += 1;
                *c
            }
            None => {
                hits.push((name.to_string(), 1));
                1
            }
        },
        Err(_) => return,
    };
    if count == nth {
        eprintln!("weir: failpoint {name} hit: aborting");
        std::process::abort();
    }
}
