//! A small client of the jobs API, for the demo and the soak (bearer token, JSON in and out).

use serde_json::Value;

use crate::dev::DevStack;

pub struct JobsApi {
    pub http: reqwest::Client,
    pub base: String,
    token: String,
}

impl JobsApi {
    pub fn of(stack: &DevStack) -> JobsApi {
        JobsApi {
            http: reqwest::Client::new(),
            base: stack.api_url.clone(),
            token: stack.api_token.clone(),
        }
    }

    /// One call; `Err` names the path and the status (no body fields beyond the API's error).
    pub async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
        idempotency_key: Option<&str>,
    ) -> Result<Value, String> {
        let mut req = self
            .http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(&self.token);
        if let Some(b) = body {
            req = req.json(b);
        }
        if let Some(k) = idempotency_key {
            req = req.header("Idempotency-Key", k);
        }
        let resp = req.send().await.map_err(|e| format!("{path}: {e}"))?;
        let status = resp.status();
        let v: Value = resp.json().await.unwrap_or(Value::Null);
        if !status.is_success() {
            return Err(format!("{path}: HTTP {status}: {v}"));
        }
        Ok(v)
    }

    pub async fn get(&self, path: &str) -> Result<Value, String> {
        self.call(reqwest::Method::GET, path, None, None).await
    }

    /// Every result row of a job, page by page (`limit` rows a page).
    pub async fn results(&self, job: &str, limit: usize) -> Result<Vec<Value>, String> {
        let mut out = Vec::new();
        let mut cursor = String::new();
        loop {
            let page = self
                .get(&format!("/jobs/{job}/results?limit={limit}{cursor}"))
                .await?;
            out.extend(page["results"].as_array().cloned().unwrap_or_default());
            match page["next_cursor"].as_str() {
                Some(c) => cursor = format!("&cursor={c}"),
                None => return Ok(out),
            }
        }
    }
}
