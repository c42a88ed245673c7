//! DynamoDB plumbing shared by the stores: attribute values, SDK error mapping.

use std::collections::HashMap;

use crate::store::StoreError;
use aws_sdk_dynamodb::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::operation::put_item::PutItemError;
use aws_sdk_dynamodb::types::{AttributeValue, PutRequest, WriteRequest};

/// A short description of an SDK error: the service's code and message, or the transport
/// failure (never the request, so never contact data).
pub(super) fn unavailable<E, R>(e: SdkError<E, R>) -> StoreError
where
    E: std::error::Error + ProvideErrorMetadata + Send + Sync + 'static,
    R: std::fmt::Debug + Send + Sync + 'static,
{
    let message = match e.as_service_error() {
        Some(se) => format!(
            "{}: {}",
            se.code().unwrap_or("service error"),
            se.message().unwrap_or_default()
        ),
        None => DisplayErrorContext(&e).to_string(),
    };
    StoreError::Unavailable {
        message,
        source: Some(Box::new(e)),
    }
}

/// `Some(output)`, or `None` when the write's condition failed (a lost race, not a failure).
pub(super) fn unless_condition_failed<T, E, R>(
    result: Result<T, SdkError<E, R>>,
) -> Result<Option<T>, StoreError>
where
    E: std::error::Error + ProvideErrorMetadata + Send + Sync + 'static,
    R: std::fmt::Debug + Send + Sync + 'static,
{
    match result {
        Ok(out) => Ok(Some(out)),
        Err(e)
            if e.as_service_error().and_then(|se| se.code())
                == Some("ConditionalCheckFailedException") =>
        {
            Ok(None)
        }
        Err(e) => Err(unavailable(e)),
    }
}

/// A conditional PutItem's outcome (sent with `ReturnValuesOnConditionCheckFailure::AllOld`):
/// `Ok(None)` written; `Ok(Some(stopped))` refused by its condition, with the item that stopped
/// it when the store returned it (`None` inside: an emulator that does not, so read it);
/// `Err` any other failure.
pub(super) fn put_refused<T, R>(
    result: Result<T, SdkError<PutItemError, R>>,
) -> Result<Option<Option<Item>>, StoreError>
where
    R: std::fmt::Debug + Send + Sync + 'static,
{
    match result {
        Ok(_) => Ok(None),
        Err(e) => match e.as_service_error() {
            Some(PutItemError::ConditionalCheckFailedException(c)) => Ok(Some(c.item().cloned())),
            _ => Err(unavailable(e)),
        },
    }
}

pub(super) fn s(v: impl Into<String>) -> AttributeValue {
    AttributeValue::S(v.into())
}

pub(super) fn n(v: impl ToString) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

pub(super) type Item = HashMap<String, AttributeValue>;

pub(super) fn get_s<'a>(item: &'a Item, k: &str) -> Option<&'a str> {
    item.get(k).and_then(|v| v.as_s().ok()).map(String::as_str)
}

pub(super) fn get_n<T: std::str::FromStr>(item: &Item, k: &str) -> Option<T> {
    item.get(k)
        .and_then(|v| v.as_n().ok())
        .and_then(|v| v.parse().ok())
}

pub(super) fn data_error(what: &str) -> StoreError {
    StoreError::Data(format!("unreadable {what}"))
}

/// The per-item reasons of a canceled transaction, or `None` for any other failure.
pub(super) fn cancellation_codes<R>(
    e: &SdkError<aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError, R>,
) -> Option<Vec<String>> {
    use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError as E;
    match e.as_service_error()? {
        E::TransactionCanceledException(t) => Some(
            t.cancellation_reasons()
                .iter()
                .map(|r| r.code().unwrap_or("None").to_string())
                .collect(),
        ),
        _ => None,
    }
}

/// The per-item reasons of a canceled transaction, each with the item that stopped it when one
/// was asked for (`ReturnValuesOnConditionCheckFailure`) and returned; `None` for any other
/// failure.
pub(super) fn cancellation_reasons<R>(
    e: &SdkError<aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError, R>,
) -> Option<Vec<(String, Option<Item>)>> {
    use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError as E;
    match e.as_service_error()? {
        E::TransactionCanceledException(t) => Some(
            t.cancellation_reasons()
                .iter()
                .map(|r| (r.code().unwrap_or("None").to_string(), r.item().cloned()))
                .collect(),
        ),
        _ => None,
    }
}

pub(super) fn put_request(item: Item) -> WriteRequest {
    WriteRequest::builder()
        .put_request(
            PutRequest::builder()
                .set_item(Some(item))
                .build()
                .expect("item set"),
        )
        .build()
}
