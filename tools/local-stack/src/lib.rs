//! The local AWS stack, from one definition: `template.yaml`.
//!
//! [`Moto`] runs the moto server on a loopback port for as long as its owner lives (it stops on
//! drop, and on the owner's death through a closed pipe). [`Template`] reads the SAM template and
//! [`Template::create`] makes its DynamoDB tables (keys, indexes, TTL), SQS queues (attributes,
//! DLQ redrive) and S3 buckets in the emulator under a name prefix, then tells each function's
//! environment the way CloudFormation would resolve its `!Ref`s.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use aws_config::SdkConfig;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, GlobalSecondaryIndex, KeySchemaElement, KeyType, Projection,
    ProjectionType, ScalarAttributeType, TimeToLiveSpecification,
};
use aws_sdk_sqs::types::QueueAttributeName;
use serde_yaml::Value;

pub mod api;
pub mod checks;
pub mod dev;
pub mod poller;
pub mod procstat;
pub mod provider_stub;
pub mod queue;
pub mod runtime_api;
pub mod sandbox;
pub mod seed;
pub mod soak;
pub mod watch;

#[derive(Debug, thiserror::Error)]
pub enum StackError {
    #[error("moto: {0}")]
    Moto(String),
    #[error("template: {0}")]
    Template(String),
    #[error("creating {resource}: {message}")]
    Create { resource: String, message: String },
}

fn create_error<E: std::error::Error>(resource: &str, e: E) -> StackError {
    StackError::Create {
        resource: resource.to_string(),
        message: aws_sdk_sqs::error::DisplayErrorContext(e).to_string(),
    }
}

/// The repository root (where `template.yaml` and `.venv` live).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .expect("tools/local-stack sits two levels below the root")
        .to_path_buf()
}

/// A moto server on 127.0.0.1, owned by this process.
pub struct Moto {
    child: Child,
    pub port: u16,
    pub endpoint: String,
}

impl Moto {
    /// Starts `scripts/moto_guard.py` with the project venv's Python on `port` (0: a free one)
    /// and waits until it serves.
    pub fn start(port: u16) -> Result<Moto, StackError> {
        let root = repo_root();
        let python = root.join(".venv/bin/python");
        if !python.exists() {
            return Err(StackError::Moto(format!(
                "{} is missing: run scripts/bootstrap.sh (make test does)",
                python.display()
            )));
        }
        let mut child = Command::new(python)
            .arg(root.join("scripts/moto_guard.py"))
            .arg(port.to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| StackError::Moto(format!("spawn: {e}")))?;
        let stdout = child.stdout.take().expect("piped");
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .map_err(|e| StackError::Moto(format!("read: {e}")))?;
        let port: u16 = line
            .strip_prefix("READY ")
            .and_then(|p| p.trim().parse().ok())
            .ok_or_else(|| {
                let _ = child.kill();
                StackError::Moto(format!("did not start (said {line:?})"))
            })?;
        Ok(Moto {
            child,
            port,
            endpoint: format!("http://127.0.0.1:{port}"),
        })
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        drop(self.child.stdin.take());
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Moto with the template's tables, queues and buckets made in it under one name prefix, and the
/// SDK configuration that reaches it: what the local stack and the measuring tools start from.
pub struct LocalAws {
    pub sdk: SdkConfig,
    pub template: Template,
    pub res: Resources,
    pub moto: Moto,
}

impl LocalAws {
    /// Starts moto on a free port and creates the template's resources as `<prefix>-<LogicalId>`.
    pub async fn start(prefix: &str) -> Result<LocalAws, StackError> {
        let moto = Moto::start(0)?;
        let sdk = relay_shared::aws::for_endpoint(&moto.endpoint).await;
        let template = Template::load_default()?;
        let res = template.create(&sdk, prefix).await?;
        Ok(LocalAws {
            sdk,
            template,
            res,
            moto,
        })
    }
}

/// The SAM template's resources.
pub struct Template {
    resources: serde_yaml::Mapping,
}

/// What [`Template::create`] made, by logical id.
#[derive(Debug, Clone, Default)]
pub struct Resources {
    pub tables: BTreeMap<String, String>,
    /// Logical id → (queue URL, queue ARN).
    pub queues: BTreeMap<String, (String, String)>,
    pub buckets: BTreeMap<String, String>,
}

impl Resources {
    pub fn table(&self, logical_id: &str) -> &str {
        &self.tables[logical_id]
    }
    pub fn queue_url(&self, logical_id: &str) -> &str {
        &self.queues[logical_id].0
    }
    pub fn bucket(&self, logical_id: &str) -> &str {
        &self.buckets[logical_id]
    }

    /// What `!Ref <logical_id>` gives for a resource: a table or bucket name, a queue URL.
    pub fn reference(&self, logical_id: &str) -> Option<String> {
        self.tables
            .get(logical_id)
            .or(self.buckets.get(logical_id))
            .cloned()
            .or_else(|| self.queues.get(logical_id).map(|q| q.0.clone()))
    }
}

fn tagged<'a>(v: &'a Value, tag: &str) -> Option<&'a Value> {
    match v {
        Value::Tagged(t) if t.tag == tag => Some(&t.value),
        _ => None,
    }
}

fn str_at<'a>(v: &'a Value, key: &str) -> Option<&'a str> {
    v.get(key).and_then(Value::as_str)
}

impl Template {
    pub fn load(path: &Path) -> Result<Template, StackError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| StackError::Template(format!("{}: {e}", path.display())))?;
        Template::parse(&text)
    }

    pub fn load_default() -> Result<Template, StackError> {
        Template::load(&repo_root().join("template.yaml"))
    }

    pub fn parse(text: &str) -> Result<Template, StackError> {
        let doc: Value =
            serde_yaml::from_str(text).map_err(|e| StackError::Template(e.to_string()))?;
        let resources = doc
            .get("Resources")
            .and_then(Value::as_mapping)
            .cloned()
            .ok_or_else(|| StackError::Template("no Resources".into()))?;
        Ok(Template { resources })
    }

    /// (logical id, properties) of every resource of `kind`, in template order.
    pub fn of_type<'a>(&'a self, kind: &'a str) -> impl Iterator<Item = (&'a str, &'a Value)> + 'a {
        self.resources
            .iter()
            .filter(move |(_, r)| str_at(r, "Type") == Some(kind))
            .map(|(id, r)| {
                (
                    id.as_str().unwrap_or_default(),
                    r.get("Properties").unwrap_or(&Value::Null),
                )
            })
    }

    /// A resource's properties by logical id.
    pub fn properties(&self, logical_id: &str) -> Option<&Value> {
        self.resources.get(logical_id)?.get("Properties")
    }

    /// A function's environment, `!Ref`s resolved against `resources`, parameters (and anything
    /// else that is not a local resource) left to `parameters`.
    /// Whether a function's template entry sets `var` (whatever its value).
    pub fn function_names_var(&self, function: &str, var: &str) -> bool {
        self.properties(function)
            .and_then(|p| p.get("Environment"))
            .and_then(|e| e.get("Variables"))
            .and_then(|v| v.get(var))
            .is_some()
    }

    /// The secrets a function reads: `X` for each `X_SSM` variable of its template entry.
    pub fn function_secrets(&self, function: &str) -> Vec<String> {
        self.properties(function)
            .and_then(|p| p.get("Environment"))
            .and_then(|e| e.get("Variables"))
            .and_then(Value::as_mapping)
            .into_iter()
            .flatten()
            .filter_map(|(k, _)| k.as_str()?.strip_suffix("_SSM").map(str::to_string))
            .collect()
    }

    pub fn function_env(
        &self,
        function: &str,
        resources: &Resources,
        parameters: &BTreeMap<String, String>,
    ) -> BTreeMap<String, String> {
        let mut env = BTreeMap::new();
        let vars = self
            .properties(function)
            .and_then(|p| p.get("Environment"))
            .and_then(|e| e.get("Variables"))
            .and_then(Value::as_mapping);
        for (k, v) in vars.into_iter().flatten() {
            let Some(name) = k.as_str() else { continue };
            let value = match (v, tagged(v, "!Ref").and_then(Value::as_str)) {
                (_, Some(target)) => resources
                    .reference(target)
                    .or_else(|| parameters.get(target).cloned()),
                (Value::String(s), None) => Some(s.clone()),
                (Value::Number(n), None) => Some(n.to_string()),
                _ => None,
            };
            if let Some(value) = value {
                env.insert(name.to_string(), value);
            }
        }
        env
    }

    /// Creates every table, queue and bucket of the template in the emulator, named
    /// `<prefix>-<LogicalId>` (buckets lowercased). Creating what already exists is not an error,
    /// so a second `make dev` finds its leftovers usable.
    pub async fn create(&self, sdk: &SdkConfig, prefix: &str) -> Result<Resources, StackError> {
        let mut out = Resources::default();
        self.create_tables(sdk, prefix, &mut out).await?;
        self.create_queues(sdk, prefix, &mut out).await?;
        self.create_buckets(sdk, prefix, &mut out).await?;
        Ok(out)
    }

    async fn create_tables(
        &self,
        sdk: &SdkConfig,
        prefix: &str,
        out: &mut Resources,
    ) -> Result<(), StackError> {
        let ddb = relay_shared::aws::dynamodb(sdk);
        for (id, props) in self.of_type("AWS::DynamoDB::Table") {
            let name = format!("{prefix}-{id}");
            let mut req = ddb
                .create_table()
                .table_name(&name)
                .billing_mode(BillingMode::PayPerRequest);
            for a in props
                .get("AttributeDefinitions")
                .and_then(Value::as_sequence)
                .into_iter()
                .flatten()
            {
                req = req.attribute_definitions(
                    AttributeDefinition::builder()
                        .attribute_name(str_at(a, "AttributeName").unwrap_or_default())
                        .attribute_type(ScalarAttributeType::from(
                            str_at(a, "AttributeType").unwrap_or("S"),
                        ))
                        .build()
                        .map_err(|e| create_error(&name, e))?,
                );
            }
            for k in key_schema(props.get("KeySchema"), &name)? {
                req = req.key_schema(k);
            }
            for g in props
                .get("GlobalSecondaryIndexes")
                .and_then(Value::as_sequence)
                .into_iter()
                .flatten()
            {
                let projection = g
                    .get("Projection")
                    .and_then(|p| str_at(p, "ProjectionType"))
                    .unwrap_or("ALL");
                req = req.global_secondary_indexes(
                    GlobalSecondaryIndex::builder()
                        .index_name(str_at(g, "IndexName").unwrap_or_default())
                        .set_key_schema(Some(key_schema(g.get("KeySchema"), &name)?))
                        .projection(
                            Projection::builder()
                                .projection_type(ProjectionType::from(projection))
                                .build(),
                        )
                        .build()
                        .map_err(|e| create_error(&name, e))?,
                );
            }
            match req.send().await {
                Ok(_) => {}
                Err(e)
                    if e.as_service_error()
                        .is_some_and(|s| s.is_resource_in_use_exception()) => {}
                Err(e) => return Err(create_error(&name, e)),
            }
            if let Some(ttl) = props.get("TimeToLiveSpecification") {
                ddb.update_time_to_live()
                    .table_name(&name)
                    .time_to_live_specification(
                        TimeToLiveSpecification::builder()
                            .attribute_name(str_at(ttl, "AttributeName").unwrap_or("expires_at"))
                            .enabled(true)
                            .build()
                            .map_err(|e| create_error(&name, e))?,
                    )
                    .send()
                    .await
                    .map_err(|e| create_error(&name, e))?;
            }
            out.tables.insert(id.to_string(), name);
        }
        Ok(())
    }

    async fn create_queues(
        &self,
        sdk: &SdkConfig,
        prefix: &str,
        out: &mut Resources,
    ) -> Result<(), StackError> {
        let sqs = relay_shared::aws::sqs(sdk);
        // Dead-letter queues first: the others name them in their redrive policy.
        let mut queues: Vec<_> = self.of_type("AWS::SQS::Queue").collect();
        queues.sort_by_key(|(_, p)| p.get("RedrivePolicy").is_some());
        for (id, props) in queues {
            let name = format!("{prefix}-{id}");
            let mut req = sqs.create_queue().queue_name(&name);
            for (prop, attr) in [
                ("VisibilityTimeout", QueueAttributeName::VisibilityTimeout),
                (
                    "MessageRetentionPeriod",
                    QueueAttributeName::MessageRetentionPeriod,
                ),
                ("DelaySeconds", QueueAttributeName::DelaySeconds),
                (
                    "ReceiveMessageWaitTimeSeconds",
                    QueueAttributeName::ReceiveMessageWaitTimeSeconds,
                ),
            ] {
                if let Some(v) = props.get(prop).and_then(scalar) {
                    req = req.attributes(attr, v);
                }
            }
            if let Some(redrive) = props.get("RedrivePolicy") {
                let target = redrive
                    .get("deadLetterTargetArn")
                    .and_then(|v| tagged(v, "!GetAtt"))
                    .and_then(Value::as_str)
                    .and_then(|s| s.strip_suffix(".Arn"))
                    .and_then(|dlq| out.queues.get(dlq))
                    .map(|(_, arn)| arn.clone())
                    .ok_or_else(|| {
                        StackError::Template(format!("{id}: unresolved deadLetterTargetArn"))
                    })?;
                let max = redrive
                    .get("maxReceiveCount")
                    .and_then(scalar)
                    .unwrap_or_else(|| "5".into());
                let policy =
                    format!(r#"{{"deadLetterTargetArn":"{target}","maxReceiveCount":{max}}}"#);
                req = req.attributes(QueueAttributeName::RedrivePolicy, policy);
            }
            let url = req
                .send()
                .await
                .map_err(|e| create_error(&name, e))?
                .queue_url
                .unwrap_or_default();
            let arn = sqs
                .get_queue_attributes()
                .queue_url(&url)
                .attribute_names(QueueAttributeName::QueueArn)
                .send()
                .await
                .map_err(|e| create_error(&name, e))?
                .attributes
                .and_then(|mut a| a.remove(&QueueAttributeName::QueueArn))
                .unwrap_or_default();
            out.queues.insert(id.to_string(), (url, arn));
        }
        Ok(())
    }

    async fn create_buckets(
        &self,
        sdk: &SdkConfig,
        prefix: &str,
        out: &mut Resources,
    ) -> Result<(), StackError> {
        let s3 = relay_shared::aws::s3(sdk);
        for (id, _) in self.of_type("AWS::S3::Bucket") {
            let name = format!("{prefix}-{id}").to_ascii_lowercase();
            match s3.create_bucket().bucket(&name).send().await {
                Ok(_) => {}
                Err(e)
                    if e.as_service_error().is_some_and(|s| {
                        s.is_bucket_already_owned_by_you() || s.is_bucket_already_exists()
                    }) => {}
                Err(e) => return Err(create_error(&name, e)),
            }
            out.buckets.insert(id.to_string(), name);
        }
        Ok(())
    }
}

fn scalar(v: &Value) -> Option<String> {
    match v {
        Value::Number(n) => Some(n.to_string()),
        Value::String(s) => Some(s.clone()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

fn key_schema(v: Option<&Value>, resource: &str) -> Result<Vec<KeySchemaElement>, StackError> {
    v.and_then(Value::as_sequence)
        .into_iter()
        .flatten()
        .map(|k| {
            KeySchemaElement::builder()
                .attribute_name(str_at(k, "AttributeName").unwrap_or_default())
                .key_type(KeyType::from(str_at(k, "KeyType").unwrap_or("HASH")))
                .build()
                .map_err(|e| create_error(resource, e))
        })
        .collect()
}
