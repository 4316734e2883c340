//! Fresh databases for tests (feature `testing`): a temporary SQLite file, or a
//! PostgreSQL database of its own created on the server at `LIM_TEST_POSTGRES_URL`
//! (default: the local trust-auth server). When PostgreSQL cannot be reached the test
//! fails with a message saying so; it never skips.

use std::str::FromStr;

use sqlx::postgres::PgConnectOptions;
use sqlx::{AssertSqlSafe, Connection, PgConnection};

pub const DEFAULT_POSTGRES_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";

/// A database that lives as long as the test; `drop_database` removes it.
pub enum TestDatabase {
    Sqlite(tempfile::TempDir),
    Postgres { admin_url: String, name: String },
}

impl TestDatabase {
    pub fn sqlite() -> Self {
        TestDatabase::Sqlite(tempfile::tempdir().expect("create a temporary directory"))
    }

    pub async fn postgres() -> Self {
        let admin_url = std::env::var("LIM_TEST_POSTGRES_URL").unwrap_or_else(|_| DEFAULT_POSTGRES_URL.to_owned());
        let name = format!("lim_test_{}", uuid::Uuid::now_v7().simple());
        let mut admin = admin_connection(&admin_url).await;
        sqlx::raw_sql(AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut admin)
            .await
            .expect("create the test database");
        TestDatabase::Postgres { admin_url, name }
    }

    pub fn url(&self) -> String {
        match self {
            TestDatabase::Sqlite(directory) => format!("sqlite://{}/test.db", directory.path().display()),
            TestDatabase::Postgres { admin_url, name } => with_database(admin_url, name),
        }
    }

    pub async fn drop_database(self) {
        match self {
            TestDatabase::Sqlite(directory) => directory.close().expect("remove the test directory"),
            TestDatabase::Postgres { admin_url, name } => {
                let mut admin = admin_connection(&admin_url).await;
                sqlx::raw_sql(AssertSqlSafe(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")))
                    .execute(&mut admin)
                    .await
                    .expect("drop the test database");
            }
        }
    }
}

async fn admin_connection(admin_url: &str) -> PgConnection {
    let endpoint = PgConnectOptions::from_str(admin_url)
        .map(|options| format!("{}:{}", options.get_host(), options.get_port()))
        .unwrap_or_else(|error| panic!("LIM_TEST_POSTGRES_URL is not a PostgreSQL URL: {error}"));
    PgConnection::connect(admin_url).await.unwrap_or_else(|error| {
        panic!(
            "PostgreSQL is not reachable at {endpoint} ({error}). These tests need it: start it, \
             or point LIM_TEST_POSTGRES_URL at a server where the user may CREATE DATABASE."
        )
    })
}

/// `url` with its database name replaced, keeping credentials and query parameters.
fn with_database(url: &str, database: &str) -> String {
    let (base, query) = url
        .split_once('?')
        .map_or((url, None), |(base, query)| (base, Some(query)));
    let authority_start = base.find("://").map_or(0, |index| index + 3);
    let authority_end = base[authority_start..]
        .find('/')
        .map_or(base.len(), |index| authority_start + index);
    match query {
        Some(query) => format!("{}/{database}?{query}", &base[..authority_end]),
        None => format!("{}/{database}", &base[..authority_end]),
    }
}
