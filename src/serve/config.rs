//! `serve.toml`: the server section, default limits, and tenants with their key hashes,
//! token buckets and table permissions. Unknown keys are errors (a misspelt limit must not
//! silently mean "unlimited").

use std::num::NonZeroU32;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use governor::middleware::StateInformationMiddleware;
use governor::{Quota, RateLimiter};
use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::{Error, Result};

/// A token bucket that reports what is left.
pub(crate) type Bucket = RateLimiter<
    governor::state::NotKeyed,
    governor::state::InMemoryState,
    governor::clock::DefaultClock,
    StateInformationMiddleware,
>;

#[derive(Deserialize, Default, Debug)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(default)]
    server: ServerSection,
    #[serde(default)]
    defaults: Limits,
    #[serde(default)]
    tenant: Vec<TenantSection>,
}

#[derive(Deserialize, Default, Debug, Clone)]
#[serde(deny_unknown_fields)]
struct ServerSection {
    max_body: Option<String>,
    checkpoint_dir: Option<String>,
    journal_dir: Option<PathBuf>,
    #[serde(default)]
    admin_keys_sha256: Vec<String>,
    #[serde(default)]
    data_dirs: Vec<PathBuf>,
    tls_cert: Option<PathBuf>,
    tls_key: Option<PathBuf>,
    #[serde(default)]
    cors_origins: Vec<String>,
}

#[derive(Deserialize, Default, Debug, Clone, Copy)]
#[serde(deny_unknown_fields)]
struct Limits {
    rate: Option<u32>,
    burst: Option<u32>,
    records_rate: Option<u32>,
    records_burst: Option<u32>,
}

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
struct TenantSection {
    id: String,
    #[serde(default)]
    keys_sha256: Vec<String>,
    #[serde(default)]
    tables: Vec<String>,
    #[serde(default)]
    read: Vec<String>,
    rate: Option<u32>,
    burst: Option<u32>,
    records_rate: Option<u32>,
    records_burst: Option<u32>,
}

/// A token bucket's settings and the bucket.
pub(crate) struct Limit {
    pub rate: u32,
    pub burst: u32,
    pub bucket: Bucket,
}

fn limit(rate: Option<u32>, burst: Option<u32>, what: &str) -> Result<Option<Limit>> {
    let Some(rate) = rate else {
        if burst.is_some() {
            return Err(Error::Plan(format!(
                "serve.toml: {what} burst without a rate"
            )));
        }
        return Ok(None);
    };
    let burst = burst.unwrap_or(rate);
    let (Some(r), Some(b)) = (NonZeroU32::new(rate), NonZeroU32::new(burst)) else {
        return Err(Error::Plan(format!(
            "serve.toml: {what} rate and burst must be at least 1"
        )));
    };
    Ok(Some(Limit {
        rate,
        burst,
        bucket: RateLimiter::direct(Quota::per_second(r).allow_burst(b))
            .with_middleware::<StateInformationMiddleware>(),
    }))
}

/// Per-tenant counters, kept across reloads.
#[derive(Default)]
pub(crate) struct TenantStats {
    pub requests: AtomicU64,
    pub records: AtomicU64,
    pub rejected_4xx: AtomicU64,
    pub throttled: AtomicU64,
}

/// A tenant (or the anonymous one when none are configured).
pub(crate) struct Tenant {
    pub id: String,
    keys: Vec<[u8; 32]>,
    pub tables: Vec<String>,
    pub read: Vec<String>,
    pub requests: Option<Limit>,
    pub records: Option<Limit>,
    pub stats: Arc<TenantStats>,
}

impl Tenant {
    /// Whether the tenant may write `table`.
    pub fn may_write(&self, table: &str) -> bool {
        self.tables.iter().any(|t| t.eq_ignore_ascii_case(table))
    }

    /// Whether the tenant may read `table`.
    pub fn may_read(&self, table: &str) -> bool {
        self.read.iter().any(|t| t.eq_ignore_ascii_case(table))
    }
}

/// The server's settings.
pub(crate) struct Settings {
    pub max_body: usize,
    pub checkpoint_dir: Option<String>,
    pub journal_dir: PathBuf,
    pub admin_keys: Vec<[u8; 32]>,
    pub data_dirs: Vec<PathBuf>,
    pub cors_origins: Vec<String>,
    /// PEM certificate chain and private key: serve HTTPS.
    pub tls: Option<(PathBuf, PathBuf)>,
    pub tenants: Vec<Arc<Tenant>>,
    /// Used when no tenants are configured.
    pub anonymous: Arc<Tenant>,
}

/// Who a request is.
pub(crate) enum Caller {
    /// An admin key.
    Admin,
    /// A tenant's key, or anyone when no tenants are configured.
    Tenant(Arc<Tenant>),
}

fn parse_hash(hex_text: &str, whose: &str) -> Result<[u8; 32]> {
    let bytes = hex::decode(hex_text.trim()).map_err(|_| {
        Error::Plan(format!(
            "serve.toml: {whose}: '{hex_text}' is not a hex SHA-256 hash"
        ))
    })?;
    bytes.try_into().map_err(|_| {
        Error::Plan(format!(
            "serve.toml: {whose}: '{hex_text}' is not 64 hex digits (a SHA-256 hash)"
        ))
    })
}

/// Compare two hashes in constant time.
fn same(a: &[u8; 32], b: &[u8; 32]) -> bool {
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

impl Settings {
    /// Read `path` (None: no file, every default). `stats` carries tenants' counters over.
    pub fn load(
        path: Option<&Path>,
        stats: &std::sync::Mutex<std::collections::HashMap<String, Arc<TenantStats>>>,
    ) -> Result<Self> {
        let file: File = match path {
            None => File::default(),
            Some(p) => {
                let text = std::fs::read_to_string(p).map_err(|source| Error::Io {
                    context: format!("reading {}", p.display()),
                    source,
                })?;
                toml::from_str(&text).map_err(|e| Error::Plan(format!("{}: {e}", p.display())))?
            }
        };
        let tls = match (file.server.tls_cert, file.server.tls_key) {
            (Some(cert), Some(key)) => Some((cert, key)),
            (None, None) => None,
            _ => {
                return Err(Error::Plan(
                    "serve.toml: tls_cert and tls_key go together".into(),
                ));
            }
        };
        let max_body = match &file.server.max_body {
            None => 5 << 20,
            Some(v) => crate::sql::interval::parse_size_option(v).ok_or_else(|| {
                Error::Plan(format!(
                    "serve.toml: max_body = '{v}' is not a size such as '5MB'"
                ))
            })? as usize,
        };
        let mut stats = stats.lock().map_err(|_| Error::Execution {
            operator: "serve".into(),
            message: "lock poisoned".into(),
        })?;
        let mut stats_of = |id: &str| stats.entry(id.to_string()).or_default().clone();
        let d = file.defaults;
        let mut tenants = vec![];
        for t in file.tenant {
            if t.keys_sha256.is_empty() {
                return Err(Error::Plan(format!(
                    "serve.toml: tenant {} has no keys_sha256",
                    t.id
                )));
            }
            let keys = t
                .keys_sha256
                .iter()
                .map(|k| parse_hash(k, &format!("tenant {}", t.id)))
                .collect::<Result<_>>()?;
            tenants.push(Arc::new(Tenant {
                requests: limit(
                    t.rate.or(d.rate),
                    t.burst.or(d.burst),
                    &format!("tenant {}", t.id),
                )?,
                records: limit(
                    t.records_rate.or(d.records_rate),
                    t.records_burst.or(d.records_burst),
                    &format!("tenant {} records", t.id),
                )?,
                stats: stats_of(&t.id),
                id: t.id,
                keys,
                tables: t.tables,
                read: t.read,
            }));
        }
        let anonymous = Arc::new(Tenant {
            id: String::new(),
            keys: vec![],
            tables: vec![],
            read: vec![],
            requests: limit(d.rate, d.burst, "defaults")?,
            records: limit(d.records_rate, d.records_burst, "defaults records")?,
            stats: stats_of(""),
        });
        let admin_keys = file
            .server
            .admin_keys_sha256
            .iter()
            .map(|k| parse_hash(k, "admin_keys_sha256"))
            .collect::<Result<_>>()?;
        Ok(Self {
            max_body,
            checkpoint_dir: file.server.checkpoint_dir,
            journal_dir: file
                .server
                .journal_dir
                .unwrap_or_else(|| PathBuf::from("weir-data/journal")),
            admin_keys,
            data_dirs: file.server.data_dirs,
            cors_origins: file.server.cors_origins,
            tls,
            tenants,
            anonymous,
        })
    }

    /// Whether keys are required (tenants are configured).
    pub fn secured(&self) -> bool {
        !self.tenants.is_empty()
    }

    /// Who presents `key` (None: unknown key). Without tenants everyone is the anonymous
    /// tenant and an admin.
    pub fn caller(&self, key: Option<&str>) -> Option<Caller> {
        let Some(key) = key else {
            return (!self.secured()).then(|| Caller::Tenant(self.anonymous.clone()));
        };
        if !self.secured() {
            return Some(Caller::Tenant(self.anonymous.clone()));
        }
        let hash: [u8; 32] = Sha256::digest(key.as_bytes()).into();
        // Look at every key, so that timing does not tell which matched.
        let mut found = None;
        let mut admin = false;
        for k in &self.admin_keys {
            admin |= same(k, &hash);
        }
        for t in &self.tenants {
            for k in &t.keys {
                if same(k, &hash) && found.is_none() {
                    found = Some(t.clone());
                }
            }
        }
        if admin {
            return Some(Caller::Admin);
        }
        found.map(Caller::Tenant)
    }
}
