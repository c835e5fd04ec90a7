//! The reference data every lookup reads, loaded once per node at first use (off the runtime,
//! in a blocking task) and shared read-only: the GeoNames places, the time-zone polygons and
//! the holiday table. Loading lazily keeps nodes that never enrich small and fast to start;
//! `/stats` says what is loaded.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio::sync::OnceCell;

use crate::error::EnrichError;
use crate::holidays::Holidays;
use crate::place::Places;
use crate::time::Zones;

pub struct Data {
    places: OnceCell<Arc<Places>>,
    zones: OnceCell<Arc<Zones>>,
    holidays: OnceCell<Result<Arc<Holidays>, String>>,
    holidays_path: Option<PathBuf>,
}

/// The holiday table in force: `enrichment.holidays`, else `<data_dir>/context/holidays.json`,
/// else `$HOME/.cache/loom/context/holidays.json`, if the file exists.
pub fn holidays_path(config: &loom_config::NodeConfig) -> Option<PathBuf> {
    if let Some(p) = &config.enrichment.holidays {
        return Some(p.clone());
    }
    let local = config.node.data_dir.join("context").join("holidays.json");
    let cached = std::env::var_os("HOME").map(|h| Path::new(&h).join(".cache/loom/context/holidays.json"));
    [Some(local), cached].into_iter().flatten().find(|p| p.is_file())
}

async fn blocking<T: Send + 'static>(what: &str, f: impl FnOnce() -> T + Send + 'static) -> Result<T, EnrichError> {
    tokio::task::spawn_blocking(f).await.map_err(|e| {
        tracing::error!(error = %e, data = what, "loading reference data failed");
        EnrichError::Unavailable(format!("the {what} data could not be loaded"))
    })
}

impl Data {
    pub fn new(holidays_path: Option<PathBuf>) -> Data {
        Data { places: OnceCell::new(), zones: OnceCell::new(), holidays: OnceCell::new(), holidays_path }
    }

    pub async fn places(&self) -> Result<Arc<Places>, EnrichError> {
        self.places.get_or_try_init(|| async { blocking("place", || Arc::new(Places::load())).await }).await.cloned()
    }

    pub async fn zones(&self) -> Result<Arc<Zones>, EnrichError> {
        self.zones.get_or_try_init(|| async { blocking("time zone", || Arc::new(Zones::load())).await }).await.cloned()
    }

    /// The holiday table, or why there is none.
    pub async fn holidays(&self) -> Result<Arc<Holidays>, String> {
        let path = self.holidays_path.clone();
        self.holidays
            .get_or_init(|| async move {
                let Some(path) = path else {
                    return Err("no holiday table: run scripts/infra.sh up (it generates one) or set \
                                enrichment.holidays"
                        .to_owned());
                };
                let loaded = blocking("holiday", move || Holidays::load(&path)).await.map_err(|e| e.to_string())?;
                loaded.map(Arc::new).inspect_err(|e| tracing::warn!(error = %e, "holiday table unusable"))
            })
            .await
            .clone()
    }

    /// What is loaded now: (places, zones, holidays version).
    pub fn loaded(&self) -> (bool, bool, Option<String>) {
        let h = self.holidays.get().and_then(|h| h.as_ref().ok()).map(|h| h.version().to_owned());
        (self.places.initialized(), self.zones.initialized(), h)
    }
}
