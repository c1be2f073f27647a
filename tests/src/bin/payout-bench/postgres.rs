//! `--database-url`: the PostgreSQL schemas of one run, one for the vault and one for the proxy,
//! created before the services start and dropped after they stop.

use anyhow::{Context, anyhow, bail};

/// The PostgreSQL schemas of one run.
#[derive(Debug)]
pub(crate) struct Schemas {
    url: String,
    pub(crate) vault: String,
    pub(crate) proxy: String,
}

impl Schemas {
    pub(crate) async fn create(url: &str) -> anyhow::Result<Self> {
        if !shared::postgres::is_postgres_url(url) {
            bail!("--database-url must start with postgres:// or postgresql://");
        }
        let suffix = crate::random_suffix()?;
        let schemas = Self {
            url: url.to_owned(),
            vault: format!("pb_vault_{suffix}"),
            proxy: format!("pb_proxy_{suffix}"),
        };
        for schema in [&schemas.vault, &schemas.proxy] {
            // Creates the schema; the services migrate into it.
            shared::postgres::connect(url, 1, Some(schema))
                .await
                .with_context(|| format!("creating schema {schema}"))?;
        }
        Ok(schemas)
    }

    /// `url` with `search_path` set to `schema` (as tests/tests/replicas.rs does).
    pub(crate) fn url_for(&self, schema: &str) -> String {
        let sep = if self.url.contains('?') { '&' } else { '?' };
        format!("{}{sep}options=-c%20search_path%3D{schema}", self.url)
    }

    pub(crate) async fn drop_all(&self) -> anyhow::Result<()> {
        let pool = shared::postgres::connect(&self.url, 1, None).await?;
        let client = pool.get().await.map_err(|e| anyhow!("{e}"))?;
        client
            .batch_execute(&format!(
                "DROP SCHEMA IF EXISTS {} CASCADE; DROP SCHEMA IF EXISTS {} CASCADE",
                self.vault, self.proxy
            ))
            .await?;
        Ok(())
    }
}
