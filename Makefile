# Enrich Relay. `make test` and `make bench` work on a fresh machine: they install what is missing first.
SHELL := /bin/bash
VENV := .venv
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)
FUNCTIONS := webhook-ingest bulk-fetch job-submit job-submit-worker sweeper
# arm64 deploy builds get their own target dir, so they never force host test rebuilds.
ARM64_TARGET_DIR := target/arm64

.PHONY: bootstrap test lint bench build dev watch demo functions soak big-job deploy-check deploy

bootstrap:
	@scripts/bootstrap.sh

lint: bootstrap
	$(VENV)/bin/cfn-lint template.yaml

# The function binaries (debug) that the local stack and the end-to-end tests run, `relay`, and
# every test, in one cargo invocation: one feature set for the workspace, so the AWS SDK crates
# compile once (binaries built alone unify features without the dev-dependencies, and
# `cargo test` then compiled the SDK a second time).
functions:
	cargo build --workspace --bins --tests

# The integration tests mostly wait (on moto, on timers, on the local stack's queues): two test
# threads on two cores kept the CPU a third busy. Six threads take the same tests in two thirds of
# the time here (154 s -> 103 s).
test: bootstrap functions
	cargo test --workspace -- --test-threads=6
	$(VENV)/bin/cfn-lint template.yaml

bench: bootstrap functions
	cargo bench -p webhook-ingest --bench ingest
	cargo build --release -p webhook-ingest -p bulk-fetch -p relay-local-stack --bin webhook-ingest --bin bulk-fetch --bin ingest-rss --bin fetch-cpu
	target/release/ingest-rss target/release/webhook-ingest 1000
	target/release/fetch-cpu target/release/bulk-fetch 1000
	cargo bench -p relay-benches --bench fetch
	cargo bench -p relay-benches --bench sweep
	cargo bench -p relay-benches --bench hot_job
	target/debug/submit-faults 200

# `sam validate --lint`, `sam build` (arm64, into target/arm64), an arm64 bootstrap per function.
deploy-check: bootstrap
	rustup target add aarch64-unknown-linux-gnu
	scripts/deploy-check.sh

# Deploys the stack samconfig.toml names (the first time: make deploy GUIDED=1, which asks for the
# parameters and saves them in samconfig.toml).
deploy: deploy-check
	SAM_CLI_TELEMETRY=0 sam deploy $(if $(GUIDED),--guided)

build: bootstrap
	rustup target add aarch64-unknown-linux-gnu
	CARGO_TARGET_DIR=$(ARM64_TARGET_DIR) cargo lambda build --release --arm64 $(addprefix --bin ,$(FUNCTIONS))
	@for f in $(FUNCTIONS); do file $(ARM64_TARGET_DIR)/lambda/$$f/bootstrap; ls -l $(ARM64_TARGET_DIR)/lambda/$$f/bootstrap; done

# The whole stack in the foreground on http://127.0.0.1:9000 (Ctrl-C stops it): every function
# under `cargo lambda watch` (on 127.0.0.1:9001; an edit to a function reloads it), the SQS
# pollers and the sweeper's schedule invoking through it. Logs: .local/dev/watch.log.
dev: bootstrap functions
	target/debug/relay-dev

# moto, the provider sandbox and `cargo lambda watch` on 127.0.0.1:9000 with the env file
# (.local/dev/watch.env), nothing else: `cargo lambda invoke <function> --data-file
# fixtures/events/…`, curl http://127.0.0.1:9000/lambda-url/job-submit/jobs, edit and see it reload.
watch: bootstrap functions
	target/debug/relay-dev --watch-only

# A demo job end to end on the local stack; exits non-zero if something did not arrive.
demo: bootstrap functions
	target/debug/relay-demo

# 10,000 deliveries across 50 jobs under faults on the local stack; prints the soak report.
soak: bootstrap functions
	target/debug/relay-soak

# A 50,000-row CSV with three custom columns through `relay submit --wait` (a staged job, in
# pages) on the local stack; prints how long it took.
big-job: bootstrap functions
	cargo test --workspace --test it staged::fifty -- --ignored --nocapture
