//! The deployed wiring: the jobs API and the chunk submitter on DynamoDB, SQS and the providers'
//! APIs, built once at cold start from their configuration.

use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use relay_shared::Provider;

use relay_shared::ExposeSecret;
use relay_shared::auth::BearerToken;
use relay_shared::aws::{self, SdkConfig};
use relay_shared::bodies::S3Bodies;
use relay_shared::config::{ApiConfig, ProviderSettings, WorkerConfig};
use relay_shared::providers::client::ProviderHttp;
use relay_shared::queue::SqsQueue;
use relay_shared::store::DynamoJobStore;
use relay_shared::validate::CallbackPolicy;

use crate::{Api, Balances, ChunkSubmitter, CreditCheck};

/// How long a worker holds a chunk it is starting (a start takes seconds; the function's
/// timeout, 90 s in template.yaml, is under it).
const START_LEASE: Duration = Duration::from_secs(120);

impl Api<DynamoJobStore, SqsQueue> {
    pub fn deployed(sdk: &SdkConfig, config: ApiConfig) -> Self {
        Api {
            jobs: DynamoJobStore::new(aws::dynamodb(sdk), &config.jobs_table)
                .with_retention(config.retention),
            submit_queue: SqsQueue::new(aws::sqs(sdk), &config.submit_queue_url),
            token: BearerToken::new(config.api_token.expose_secret()),
            callback_policy: CallbackPolicy {
                allow_loopback: config.callback_allow_loopback,
            },
            credit_check: HttpBalances::of(&config.providers).map(|b| {
                let balances: Arc<dyn Balances> = Arc::new(b);
                CreditCheck::new(balances, config.fullenrich_interval)
            }),
        }
    }
}

/// The providers' balance endpoints (FullEnrich `GET /account/credits`, Enrow
/// `GET /account/info`), for the providers this deployment has a key for.
pub struct HttpBalances {
    http: ProviderHttp,
    fullenrich: bool,
    enrow: bool,
}

impl HttpBalances {
    /// The reader of these providers' balances; `None` when no key is set.
    pub fn of(providers: &ProviderSettings) -> Option<HttpBalances> {
        let fullenrich = !providers.fullenrich_key.expose_secret().is_empty();
        let enrow = !providers.enrow_key.expose_secret().is_empty();
        (fullenrich || enrow).then(|| HttpBalances {
            http: providers.client(),
            fullenrich,
            enrow,
        })
    }
}

impl Balances for HttpBalances {
    fn balance(&self, provider: Provider) -> BoxFuture<'_, Result<Option<f64>, String>> {
        Box::pin(async move {
            let keyed = match provider {
                Provider::Fullenrich => self.fullenrich,
                Provider::Enrow => self.enrow,
            };
            if !keyed {
                return Ok(None);
            }
            // The error's text is the status and the provider's code: never the key.
            self.http
                .account_balance(provider)
                .await
                .map(Some)
                .map_err(|e| e.to_string())
        })
    }
}

impl ChunkSubmitter<DynamoJobStore, ProviderHttp, SqsQueue, S3Bodies> {
    pub fn deployed(sdk: &SdkConfig, config: WorkerConfig) -> Self {
        ChunkSubmitter {
            bodies: S3Bodies::new(aws::s3(sdk), &config.payload_bucket),
            jobs: DynamoJobStore::new(aws::dynamodb(sdk), &config.jobs_table)
                .with_poll_after(config.poll_after)
                .with_retention(config.retention),
            starter: config.providers.client(),
            queue: SqsQueue::new(aws::sqs(sdk), &config.submit_queue_url),
            callback_queue: SqsQueue::new(aws::sqs(sdk), &config.webhook_queue_url),
            secret: config.webhook_secret,
            public_base_url: config.public_base_url,
            fullenrich_interval: config.fullenrich_interval,
            enrow_interval: config.enrow_interval,
            lease: START_LEASE,
            confirm_timeout: config.start_confirm_timeout,
            deadline: config.deadline,
        }
    }
}
