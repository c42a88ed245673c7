//! The jobs API client of the demo and the soak: the CLI's own ([`relay_cli::api::Client`]), with
//! its errors as text.

use std::time::{Duration, Instant};

use relay_cli::api::Client;
use serde_json::Value;

use crate::dev::DevStack;

/// Whether a job's state (`GET /jobs/{id}`) has a status it ends in.
pub fn finished(state: &Value) -> bool {
    matches!(
        state["status"].as_str(),
        Some("completed" | "partially_failed" | "failed" | "canceled")
    )
}

pub struct JobsApi {
    client: Client,
    pub http: reqwest::Client,
}

impl JobsApi {
    pub fn of(stack: &DevStack) -> JobsApi {
        let client = Client::new(&stack.api_url, &stack.api_token).expect("a loopback API URL");
        JobsApi {
            http: client.http.clone(),
            client,
        }
    }

    /// One call; `Err` names the API's error (code, field, rule), never a contact's data.
    pub async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
        idempotency_key: Option<&str>,
    ) -> Result<Value, String> {
        self.client
            .call(method, path, body, idempotency_key)
            .await
            .map_err(|e| format!("{path}: {e}"))
    }

    pub async fn get(&self, path: &str) -> Result<Value, String> {
        self.call(reqwest::Method::GET, path, None, None).await
    }

    /// A job's state (`GET /jobs/{id}`).
    pub async fn job(&self, id: &str) -> Result<Value, String> {
        self.get(&format!("/jobs/{id}")).await
    }

    /// A job's state once it has [`finished`], asked for every `every`; past `deadline`, the
    /// state as it is.
    pub async fn wait_finished(
        &self,
        id: &str,
        deadline: Instant,
        every: Duration,
    ) -> Result<Value, String> {
        loop {
            let state = self.job(id).await?;
            if finished(&state) || Instant::now() > deadline {
                return Ok(state);
            }
            tokio::time::sleep(every).await;
        }
    }

    /// Every result row of a job, page by page (`limit` rows a page).
    pub async fn results(&self, job: &str, limit: usize) -> Result<Vec<Value>, String> {
        self.client
            .results(job, limit)
            .await
            .map_err(|e| format!("/jobs/{job}/results: {e}"))
    }
}
