//! The DynamoDB store (the Lambda default): ONE table, single-table design.
//!
//! The table has a string partition key `pk` and a string sort key `sk`, billing
//! mode PAY_PER_REQUEST, and TTL enabled on the numeric attribute `ttl`. Every item
//! carries `body` (S): the record as JSON (`records.rs`, camelCase); the other
//! attributes are keys or are needed by conditions and filters.
//!
//! | record          | `pk`       | `sk`                                  | other attributes                         |
//! |-----------------|------------|---------------------------------------|------------------------------------------|
//! | settings        | `SETTINGS` | `SETTINGS`                            | `body`                                   |
//! | mapping         | `MAPPING`  | tenantId                              | `body`                                   |
//! | catalog item    | `CATALOG`  | identifier                            | `body`                                   |
//! | addition        | `ADDITION` | `{tenantId}#{identifier}`             | `body`                                   |
//! | customer status | `CUSTOMER` | tenantId                              | `body`                                   |
//! | run             | `RUN`      | runId                                 | `body`, `ttl` (N, epoch s, if `expiresAt`)|
//! | run customer    | `RUNCUST#{runId}` | tenantId                       | `body`, `ttl` (N, epoch s, if `expiresAt`)|
//! | audit entry     | `AUDIT`    | `{at}#{runId}#{seq:06}` (1)           | `body`, `runId`, `tenantId`, `action`, `actor` (2) |
//! | lease           | `LEASE`    | `LEASE`                               | `body`, `runId`, `expiresAt` (N, epoch ms)|
//! | claim           | `CLAIM`    | the de-duplication key                | `body`, `runId`, `expiresAt` (N, epoch ms), `ttl` (N, epoch s) |
//! | held change     | `HELD`     | id (`{month}-{hash}`)                 | `body`, `open` (N 0/1), `version` (N), `ttl` (N, epoch s, if `expiresAt`) |
//! | counter         | `COUNTER`  | the counter's key                     | `count` (N), `windowEnds` (N, epoch ms), `ttl` (N, epoch s); no `body` |
//!
//! (1) `at` is RFC 3339 in UTC with milliseconds (`2024-05-01T06:00:00.123Z`), fixed
//! width, so the sort key orders entries by time. The console's own entries have no
//! run: their key is `{at}##{seq:06}`.
//!
//! (2) Copies of the body's fields for filters, each written only when not empty (an
//! entry without a run, about no customer). Entries written before `tenantId` and
//! `action` were (they have `runId` only) are still found by the tenant and action
//! filters: for an item without `action` the filter tests the JSON body instead
//! (`contains(body, :json)` with `:json` = `"tenantId":"t-1"`, exact because the body
//! is compact JSON, in which a field's quotes cannot come from inside a string), and
//! every decoded entry is checked against the filter again before it is returned.
//! `actor` came later still: for an item without `actor` the actor filter tests the
//! body the same way (`"actor":"cli:bob"`).
//!
//! Access patterns: every list is a `Query` on one partition, following
//! `LastEvaluatedKey` until done; the lists that grow with the partner (customer
//! statuses, a run's customers) are read a page at a time from an exclusive
//! tenant-id cursor, and written with `BatchWriteItem` (25 items a call, unprocessed
//! items retried). A run's summary item stays small whatever the partner's size. Run ids sort by start time, so runs are listed with
//! `ScanIndexForward=false` (latest first) and paged with `sk < :before`.
//!
//! The audit trail is one partition read the same way, latest first from the cursor
//! `sk < :before`, with a `FilterExpression` for the run, customer and action
//! filters. DynamoDB applies a filter after `Limit` and after reading, so a filtered
//! page is collected over several query pages (`ExclusiveStartKey`); one
//! `list_audit_page` call reads at most [`AUDIT_QUERY_PAGES`] query pages of at most
//! [`AUDIT_FILTERED_QUERY_LIMIT`] entries (5,000 entries: about 2 MB and 500 read
//! units at 400 bytes an entry), then returns what it found, possibly nothing, with
//! the key of the last entry read as `next`.
//!
//! The lease is one item written with a conditional `PutItem`
//! (`attribute_not_exists(pk) OR expiresAt < :now OR runId = :run`): only one cycle
//! can hold it. Renew and release are conditional on `runId = :run`. `claim_once` is
//! a conditional put of a `CLAIM` item (`attribute_not_exists(pk) OR expiresAt < :now`).
//! `count_event` is a conditional `UpdateItem` that adds one while the counter's
//! window is open (`windowEnds > :now`), else a conditional put that starts a new
//! window at 1 (`attribute_not_exists(pk) OR windowEnds <= :now`); when both lose a
//! race, it tries again.
//!
//! Held changes are one partition, listed latest month first (ids begin with their
//! month) with `ScanIndexForward=false`, the open ones with a filter on `open`
//! (at most [`HELD_QUERY_PAGES`] query pages a call, like the audit trail). A put is
//! conditional on the `version` read (`attribute_not_exists(pk)` for a new one), so
//! an operator's decision and a run never overwrite each other unseen; a run reads
//! one customer's changes with one `BatchGetItem` (consistent, unprocessed keys
//! asked again).
//!
//! IAM: the function needs `dynamodb:GetItem`, `PutItem`, `UpdateItem`, `DeleteItem`,
//! `BatchWriteItem`, `BatchGetItem` and `Query` on the table (plus `CreateTable`, `DescribeTable`,
//! `UpdateTimeToLive` and `DescribeTimeToLive` only for [`DynamoStore::create_table_if_missing`]
//! and [`DynamoStore::enable_ttl`]).

use super::{
    AdditionRecord, AuditEntry, AuditFilter, CatalogRecord, CustomerStatus, HeldChange, Lease,
    LeaseOutcome, Mapping, Page, RunCustomer, RunRecord, Store, StoreError, StoreResult,
    page_limit,
};
use crate::config::Settings;
use async_trait::async_trait;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::operation::put_item::PutItemError;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, KeySchemaElement, KeyType, PutRequest,
    ReturnValuesOnConditionCheckFailure, ScalarAttributeType, TableStatus, TimeToLiveSpecification,
    TimeToLiveStatus, WriteRequest,
};
use chrono::{DateTime, TimeZone, Utc};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::collections::HashMap;
use std::time::Duration;

type Item = HashMap<String, AttributeValue>;

const PK: &str = "pk";
const SK: &str = "sk";
const BODY: &str = "body";
const TTL: &str = "ttl";
const RUN_ID: &str = "runId";
const TENANT_ID: &str = "tenantId";
const ACTION: &str = "action";
const ACTOR: &str = "actor";
const COUNT: &str = "count";
const WINDOW_ENDS: &str = "windowEnds";
const EXPIRES_AT: &str = "expiresAt";

const SETTINGS: &str = "SETTINGS";
const MAPPING: &str = "MAPPING";
const CATALOG: &str = "CATALOG";
const ADDITION: &str = "ADDITION";
const CUSTOMER: &str = "CUSTOMER";
const RUN: &str = "RUN";
/// Prefix of a run's customer partition, `RUNCUST#{runId}`.
const RUN_CUSTOMER: &str = "RUNCUST#";
const AUDIT: &str = "AUDIT";
const LEASE: &str = "LEASE";
const CLAIM: &str = "CLAIM";
const COUNTER: &str = "COUNTER";

type QueryBuilder = aws_sdk_dynamodb::operation::query::builders::QueryFluentBuilder;

/// Which partition [`DynamoStore::latest_page`] reads, and how much of it.
struct LatestPage<'a> {
    what: &'static str,
    pk: &'static str,
    limit: usize,
    before: Option<&'a str>,
    pages: usize,
}
const HELD: &str = "HELD";
const OPEN: &str = "open";
const VERSION: &str = "version";
/// The most query pages one filtered `list_held_changes` call reads.
const HELD_QUERY_PAGES: usize = 10;
/// How many times unprocessed BatchGetItem keys are asked for again.
const BATCH_GET_ROUNDS: u32 = 8;

/// How many times a conditional write is retried when the item that made it fail
/// disappeared before it could be read (released or expired in between).
const CONDITIONAL_ATTEMPTS: usize = 5;

/// `BatchWriteItem` takes at most 25 puts a call.
const BATCH_WRITE_MAX: usize = 25;
/// Rounds of re-sending `UnprocessedItems` (with backoff) before giving up.
const BATCH_WRITE_ROUNDS: u32 = 8;

/// One `list_audit_page` call reads at most this many query pages...
pub const AUDIT_QUERY_PAGES: usize = 10;
/// ... and, with a filter, at most this many entries a query page (`Limit`, which
/// DynamoDB counts before the filter): at most 5,000 entries evaluated a call.
pub const AUDIT_FILTERED_QUERY_LIMIT: i32 = 500;

/// The DynamoDB adapter of [`Store`]. Cheap to clone.
#[derive(Debug, Clone)]
pub struct DynamoStore {
    client: Client,
    table: String,
    reads: std::sync::Arc<super::ReadCounters>,
}

impl DynamoStore {
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        Self {
            client,
            table: table.into(),
            reads: Default::default(),
        }
    }

    /// What this store has read so far (tests of bounded reads).
    pub fn reads(&self) -> &super::ReadCounters {
        &self.reads
    }

    /// The table this store uses.
    pub fn table_name(&self) -> &str {
        &self.table
    }

    /// Creates the table (PAY_PER_REQUEST, `pk` S hash + `sk` S range) unless it
    /// exists, then waits (bounded) until it is ACTIVE. For tests and local setup;
    /// production tables come from the deployment template.
    pub async fn create_table_if_missing(&self) -> StoreResult<()> {
        let attr = |name: &str| {
            AttributeDefinition::builder()
                .attribute_name(name)
                .attribute_type(ScalarAttributeType::S)
                .build()
        };
        let key = |name: &str, kind: KeyType| {
            KeySchemaElement::builder()
                .attribute_name(name)
                .key_type(kind)
                .build()
        };
        let build = |e: aws_sdk_dynamodb::error::BuildError| {
            StoreError::Config(format!("cannot describe table {}: {e}", self.table))
        };
        let created = self
            .client
            .create_table()
            .table_name(&self.table)
            .billing_mode(BillingMode::PayPerRequest)
            .attribute_definitions(attr(PK).map_err(build)?)
            .attribute_definitions(attr(SK).map_err(build)?)
            .key_schema(key(PK, KeyType::Hash).map_err(build)?)
            .key_schema(key(SK, KeyType::Range).map_err(build)?)
            .send()
            .await;
        if let Err(e) = created {
            let in_use = e
                .as_service_error()
                .is_some_and(|s| s.is_resource_in_use_exception());
            if !in_use {
                return Err(self.sdk_err("CreateTable", e));
            }
        }

        // Typically ACTIVE within seconds; give up after about a minute.
        for _ in 0..240 {
            let out = self
                .client
                .describe_table()
                .table_name(&self.table)
                .send()
                .await;
            match out {
                Ok(out) => {
                    if out
                        .table()
                        .and_then(|t| t.table_status())
                        .is_some_and(|s| *s == TableStatus::Active)
                    {
                        return Ok(());
                    }
                }
                // Right after CreateTable the table may not be visible yet.
                Err(e)
                    if e.as_service_error()
                        .is_some_and(|s| s.is_resource_not_found_exception()) => {}
                Err(e) => return Err(self.sdk_err("DescribeTable", e)),
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        Err(StoreError::Unavailable(format!(
            "DynamoDB table {} did not become ACTIVE within a minute; check it in the console",
            self.table
        )))
    }

    /// Enables TTL on the attribute `ttl` (tolerates it being enabled already).
    pub async fn enable_ttl(&self) -> StoreResult<()> {
        let current = self
            .client
            .describe_time_to_live()
            .table_name(&self.table)
            .send()
            .await
            .map_err(|e| self.sdk_err("DescribeTimeToLive", e))?;
        if let Some(desc) = current.time_to_live_description() {
            let on = matches!(
                desc.time_to_live_status(),
                Some(TimeToLiveStatus::Enabled | TimeToLiveStatus::Enabling)
            );
            match desc.attribute_name() {
                Some(TTL) if on => return Ok(()),
                Some(other) if on => {
                    return Err(StoreError::Config(format!(
                        "DynamoDB table {} has TTL enabled on attribute {other:?}; this \
                         store needs it on {TTL:?}: disable it and enable it on {TTL:?}",
                        self.table
                    )));
                }
                _ => {}
            }
        }
        let spec = TimeToLiveSpecification::builder()
            .enabled(true)
            .attribute_name(TTL)
            .build()
            .map_err(|e| StoreError::Config(format!("cannot describe TTL: {e}")))?;
        match self
            .client
            .update_time_to_live()
            .table_name(&self.table)
            .time_to_live_specification(spec)
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(e)
                if e.code() == Some("ValidationException")
                    && e.message()
                        .is_some_and(|m| m.to_ascii_lowercase().contains("already enabled")) =>
            {
                Ok(())
            }
            Err(e) => Err(self.sdk_err("UpdateTimeToLive", e)),
        }
    }

    // ----- helpers -----

    /// Maps an SDK error to a store error naming the table and the operation.
    /// A conditional write's outcome: `Some(output)` when it was made, None when its
    /// condition failed (someone else wrote first), an error otherwise.
    fn conditional<O, E, R>(
        &self,
        op: &str,
        res: Result<O, SdkError<E, R>>,
    ) -> StoreResult<Option<O>>
    where
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
        R: std::fmt::Debug + Send + Sync + 'static,
    {
        match res {
            Ok(out) => Ok(Some(out)),
            Err(e) if e.code() == Some("ConditionalCheckFailedException") => Ok(None),
            Err(e) => Err(self.sdk_err(op, e)),
        }
    }

    fn sdk_err<E, R>(&self, op: &str, e: SdkError<E, R>) -> StoreError
    where
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
        R: std::fmt::Debug + Send + Sync + 'static,
    {
        let table = &self.table;
        // The SDK's full message (code, message, request id, cause) in every error.
        let detail = DisplayErrorContext(&e);
        match e.code() {
            Some("ResourceNotFoundException") => StoreError::Config(format!(
                "DynamoDB table {table} does not exist; create it (see README) or set \
                 SYNC_STORE ({detail})"
            )),
            Some(
                code @ ("AccessDeniedException"
                | "UnrecognizedClientException"
                | "InvalidSignatureException"
                | "MissingAuthenticationTokenException"),
            ) => StoreError::Config(format!(
                "DynamoDB refused {op} on table {table} ({code}); check the AWS \
                 credentials and that the IAM policy allows {op} on the table ({detail})"
            )),
            Some(
                code @ ("ProvisionedThroughputExceededException"
                | "ThrottlingException"
                | "RequestLimitExceeded"),
            ) => StoreError::Unavailable(format!(
                "DynamoDB throttled {op} on table {table} ({code}) after the SDK's retries; \
                 retry later, or raise the table's capacity or the account's request \
                 limit ({detail})"
            )),
            Some("ValidationException") => {
                validation_error(op, table, e.message().unwrap_or_default(), &detail)
            }
            _ => {
                StoreError::Unavailable(format!("DynamoDB {op} on table {table} failed: {detail}"))
            }
        }
    }

    /// An audit entry's item: its JSON, plus the fields the trail's filters test
    /// copied out (left out when empty).
    fn audit_item(entry: &AuditEntry) -> StoreResult<Item> {
        let mut item = Self::item(AUDIT, super::sqlite::audit_sort_key(entry), entry)?;

        let copies = [
            (RUN_ID, Some(entry.run_id.as_str())),
            (TENANT_ID, entry.tenant_id.as_deref()),
            (ACTION, Some(entry.action.as_str())),
            (ACTOR, Some(entry.actor.as_str())),
        ];
        for (name, value) in copies {
            if let Some(v) = value.filter(|v| !v.is_empty()) {
                item.insert(name.to_owned(), s(v));
            }
        }
        Ok(item)
    }

    fn key(pk: &str, sk: impl Into<String>) -> Item {
        HashMap::from([
            (PK.to_owned(), s(pk)),
            (SK.to_owned(), AttributeValue::S(sk.into())),
        ])
    }

    fn item<T: Serialize>(pk: &str, sk: impl Into<String>, record: &T) -> StoreResult<Item> {
        let mut item = Self::key(pk, sk);
        item.insert(BODY.to_owned(), AttributeValue::S(to_json(record)?));
        Ok(item)
    }

    fn decode<T: DeserializeOwned>(&self, what: &str, item: &Item) -> StoreResult<T> {
        let sk = item.get(SK).and_then(|v| v.as_s().ok()).map_or("?", |s| s);
        let body = item.get(BODY).and_then(|v| v.as_s().ok()).ok_or_else(|| {
            StoreError::Corrupt(format!(
                "{what} {sk:?} in DynamoDB table {} has no string attribute `body`",
                self.table
            ))
        })?;
        serde_json::from_str(body).map_err(|e| {
            StoreError::Corrupt(format!(
                "{what} {sk:?} in DynamoDB table {} is not valid JSON for its type ({e})",
                self.table
            ))
        })
    }

    async fn put(&self, item: Item) -> StoreResult<()> {
        self.client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .send()
            .await
            .map_err(|e| self.sdk_err("PutItem", e))?;
        Ok(())
    }

    async fn get_item(&self, pk: &str, sk: &str) -> StoreResult<Option<Item>> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(Self::key(pk, sk)))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| self.sdk_err("GetItem", e))?;
        Ok(out.item)
    }

    async fn get<T: DeserializeOwned>(
        &self,
        what: &str,
        pk: &str,
        sk: &str,
    ) -> StoreResult<Option<T>> {
        self.get_item(pk, sk)
            .await?
            .map(|item| self.decode(what, &item))
            .transpose()
    }

    /// Deletes one item; returns whether it existed.
    async fn delete(&self, pk: &str, sk: &str) -> StoreResult<bool> {
        let out = self
            .client
            .delete_item()
            .table_name(&self.table)
            .set_key(Some(Self::key(pk, sk)))
            .return_values(aws_sdk_dynamodb::types::ReturnValue::AllOld)
            .send()
            .await
            .map_err(|e| self.sdk_err("DeleteItem", e))?;
        Ok(out.attributes.is_some_and(|a| !a.is_empty()))
    }

    /// A consistent query of every record of partition `pk`, in sort-key order.
    fn partition(
        &self,
        pk: &str,
    ) -> aws_sdk_dynamodb::operation::query::builders::QueryFluentBuilder {
        self.client
            .query()
            .table_name(&self.table)
            .key_condition_expression("#pk = :pk")
            .expression_attribute_names("#pk", PK)
            .expression_attribute_values(":pk", s(pk))
            .consistent_read(true)
    }

    /// Every record of one partition, in sort-key order, following every page.
    async fn query_all<T: DeserializeOwned>(&self, what: &str, pk: &str) -> StoreResult<Vec<T>> {
        self.query_pages(what, self.partition(pk)).await
    }

    /// Every record `query` finds, following every page.
    async fn query_pages<T: DeserializeOwned>(
        &self,
        what: &str,
        query: QueryBuilder,
    ) -> StoreResult<Vec<T>> {
        let mut out = Vec::new();
        let mut start: Option<Item> = None;
        loop {
            let page = query
                .clone()
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(|e| self.sdk_err("Query", e))?;
            for item in page.items() {
                out.push(self.decode(what, item)?);
            }
            match page.last_evaluated_key {
                Some(k) if !k.is_empty() => start = Some(k),
                _ => return Ok(out),
            }
        }
    }

    /// Latest-first records of one partition, up to `limit`, optionally with
    /// `sk < before`; follows pages until done.
    /// A consistent query of partition `pk`, latest first, strictly before the sort
    /// key `before`, from `start` (the previous page's last key).
    fn latest_first(
        &self,
        pk: &str,
        before: Option<&str>,
        start: Option<Item>,
    ) -> aws_sdk_dynamodb::operation::query::builders::QueryFluentBuilder {
        let q = self
            .client
            .query()
            .table_name(&self.table)
            .expression_attribute_names("#pk", PK)
            .expression_attribute_values(":pk", s(pk))
            .scan_index_forward(false)
            .consistent_read(true)
            .set_exclusive_start_key(start);
        match before {
            Some(b) => q
                .key_condition_expression("#pk = :pk AND #sk < :before")
                .expression_attribute_names("#sk", SK)
                .expression_attribute_values(":before", s(b)),
            None => q.key_condition_expression("#pk = :pk"),
        }
    }

    async fn query_latest<T: DeserializeOwned>(
        &self,
        what: &str,
        pk: &str,
        limit: usize,
        before: Option<&str>,
    ) -> StoreResult<Vec<T>> {
        let mut out = Vec::new();
        if limit == 0 {
            return Ok(out);
        }
        let mut start: Option<Item> = None;
        loop {
            let q = self.latest_first(pk, before, start.take());
            let page = q
                .limit(i32::try_from(limit - out.len()).unwrap_or(i32::MAX))
                .send()
                .await
                .map_err(|e| self.sdk_err("Query", e))?;
            for item in page.items() {
                out.push(self.decode(what, item)?);
                if out.len() == limit {
                    return Ok(out);
                }
            }
            match page.last_evaluated_key {
                Some(k) if !k.is_empty() => start = Some(k),
                _ => return Ok(out),
            }
        }
    }

    /// One page of partition `pk`, latest first, strictly before `before`: at most
    /// `limit` records that pass `keep`. `narrow` sets each query's filter and
    /// `Limit` (given how many records the page still needs). DynamoDB filters after
    /// reading, so a filtered page is gathered over several query pages, at most
    /// `pages` of them; past that bound the page ends, possibly short or empty, with
    /// the key of the last record read as `next`.
    async fn latest_page<T: DeserializeOwned>(
        &self,
        bound: LatestPage<'_>,
        narrow: impl Fn(QueryBuilder, usize) -> QueryBuilder,
        keep: impl Fn(&T) -> bool,
    ) -> StoreResult<Page<T>> {
        let limit = page_limit(bound.limit);
        let before = bound.before.filter(|b| !b.is_empty());
        let mut items: Vec<T> = Vec::with_capacity(limit);
        let mut last_sk: Option<String> = None;
        let mut start: Option<Item> = None;
        for _ in 0..bound.pages {
            let q = narrow(
                self.latest_first(bound.pk, before, start.take()),
                limit - items.len(),
            );
            let page = q.send().await.map_err(|e| self.sdk_err("Query", e))?;
            for item in page.items() {
                let record: T = self.decode(bound.what, item)?;
                if !keep(&record) {
                    continue;
                }
                if items.len() == limit {
                    return Ok(Page {
                        items,
                        next: last_sk,
                    });
                }
                items.push(record);
                last_sk = item.get(SK).and_then(|v| v.as_s().ok()).cloned();
            }
            match page.last_evaluated_key.filter(|k| !k.is_empty()) {
                None => return Ok(Page { items, next: None }),
                Some(_) if items.len() == limit => {
                    return Ok(Page {
                        items,
                        next: last_sk,
                    });
                }
                Some(k) => start = Some(k),
            }
        }
        // The bound: carry on after the last record read, matched or not.
        let next = start
            .as_ref()
            .and_then(|k| k.get(SK))
            .and_then(|v| v.as_s().ok())
            .cloned()
            .ok_or_else(|| {
                StoreError::Unavailable(format!(
                    "DynamoDB table {}: a Query of the {} partition returned a \
                     LastEvaluatedKey without a string `sk`; retry, and check the \
                     table's key schema (pk S hash + sk S range)",
                    self.table, bound.pk
                ))
            })?;
        Ok(Page {
            items,
            next: Some(next),
        })
    }

    /// A conditional put; `Ok(None)` when written, `Ok(Some(existing))` when the
    /// condition failed and the item that made it fail still exists, and a retry
    /// (bounded) when it vanished in between.
    async fn put_unless_held(
        &self,
        item: Item,
        condition: &str,
        values: &[(&str, AttributeValue)],
    ) -> StoreResult<Option<Item>> {
        let pk = item
            .get(PK)
            .and_then(|v| v.as_s().ok())
            .cloned()
            .unwrap_or_default();
        let sk = item
            .get(SK)
            .and_then(|v| v.as_s().ok())
            .cloned()
            .unwrap_or_default();
        for _ in 0..CONDITIONAL_ATTEMPTS {
            let mut put = self
                .client
                .put_item()
                .table_name(&self.table)
                .set_item(Some(item.clone()))
                .condition_expression(condition)
                .expression_attribute_names("#pk", PK)
                .return_values_on_condition_check_failure(
                    ReturnValuesOnConditionCheckFailure::AllOld,
                );
            if condition.contains("#exp") {
                put = put.expression_attribute_names("#exp", EXPIRES_AT);
            }
            if condition.contains("#run") {
                put = put.expression_attribute_names("#run", RUN_ID);
            }
            for (name, value) in values {
                put = put.expression_attribute_values(*name, value.clone());
            }
            match put.send().await {
                Ok(_) => return Ok(None),
                Err(e) => {
                    let old = match e.as_service_error() {
                        Some(PutItemError::ConditionalCheckFailedException(c)) => c.item().cloned(),
                        _ => return Err(self.sdk_err("PutItem", e)),
                    };
                    let old = match old.filter(|i| !i.is_empty()) {
                        Some(i) => Some(i),
                        // Not every endpoint returns the old item: read it.
                        None => self.get_item(&pk, &sk).await?,
                    };
                    if let Some(old) = old {
                        return Ok(Some(old));
                    }
                }
            }
        }
        Err(StoreError::Unavailable(format!(
            "DynamoDB table {}: the {pk} item {sk:?} kept changing while being written; retry",
            self.table
        )))
    }

    /// Puts `items` with `BatchWriteItem`, 25 a call, re-sending what DynamoDB left
    /// unprocessed (throttling) with exponential backoff, a bounded number of times.
    async fn batch_put(&self, items: Vec<Item>) -> StoreResult<()> {
        let mut items = items.into_iter().peekable();
        while items.peek().is_some() {
            let mut requests = Vec::with_capacity(BATCH_WRITE_MAX);
            for item in items.by_ref().take(BATCH_WRITE_MAX) {
                let put = PutRequest::builder()
                    .set_item(Some(item))
                    .build()
                    .map_err(|e| StoreError::Config(format!("cannot describe a put: {e}")))?;
                requests.push(WriteRequest::builder().put_request(put).build());
            }
            self.batch_write_all(requests).await?;
        }
        Ok(())
    }

    async fn batch_write_all(&self, mut requests: Vec<WriteRequest>) -> StoreResult<()> {
        for round in 0..BATCH_WRITE_ROUNDS {
            let out = self
                .client
                .batch_write_item()
                .request_items(&self.table, requests)
                .send()
                .await
                .map_err(|e| self.sdk_err("BatchWriteItem", e))?;
            requests = out
                .unprocessed_items
                .and_then(|mut u| u.remove(&self.table))
                .unwrap_or_default();
            if requests.is_empty() {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(50u64 << round.min(5))).await;
        }
        Err(StoreError::Unavailable(format!(
            "DynamoDB left {} items of a BatchWriteItem on table {} unprocessed after {} \
             attempts (throttled); retry later or raise the table's capacity",
            requests.len(),
            self.table,
            BATCH_WRITE_ROUNDS
        )))
    }

    /// One page of a partition in sort-key order: at most `limit` records with
    /// `sk > after`, following DynamoDB's 1 MB pages until the page is full.
    async fn query_page<T: DeserializeOwned>(
        &self,
        what: &str,
        pk: &str,
        limit: usize,
        after: Option<&str>,
    ) -> StoreResult<Page<T>> {
        let limit = page_limit(limit);
        let mut items = Vec::new();
        let mut last: Option<String> = None;
        let mut start = after.map(|a| Self::key(pk, a));
        loop {
            let page = self
                .partition(pk)
                .limit(i32::try_from(limit - items.len()).unwrap_or(i32::MAX))
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(|e| self.sdk_err("Query", e))?;
            for item in page.items() {
                items.push(self.decode(what, item)?);
                last = item.get(SK).and_then(|v| v.as_s().ok()).cloned();
            }
            let more = page.last_evaluated_key.filter(|k| !k.is_empty());
            match more {
                Some(k) if items.len() < limit => start = Some(k),
                _ => break,
            }
        }
        let next = last.filter(|_| items.len() == limit);
        Ok(Page { items, next })
    }

    fn lease_from(&self, item: &Item) -> StoreResult<Lease> {
        let run_id = item.get(RUN_ID).and_then(|v| v.as_s().ok()).cloned();
        let expires = item
            .get(EXPIRES_AT)
            .and_then(|v| v.as_n().ok())
            .and_then(|n| n.parse::<i64>().ok());
        match (run_id, expires) {
            (Some(run_id), Some(ms)) => Ok(Lease {
                run_id,
                expires_at: from_millis(ms),
            }),
            _ => Err(StoreError::Corrupt(format!(
                "the lease item in DynamoDB table {} lacks `runId` (S) or `expiresAt` (N)",
                self.table
            ))),
        }
    }
}

fn s(v: &str) -> AttributeValue {
    AttributeValue::S(v.to_owned())
}

fn n(v: i64) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

fn to_json<T: Serialize>(record: &T) -> StoreResult<String> {
    serde_json::to_string(record)
        .map_err(|e| StoreError::Corrupt(format!("cannot encode a record as JSON: {e}")))
}

fn expiry(now: DateTime<Utc>, ttl: Duration) -> DateTime<Utc> {
    chrono::Duration::from_std(ttl)
        .ok()
        .and_then(|d| now.checked_add_signed(d))
        .unwrap_or(DateTime::<Utc>::MAX_UTC)
}

fn from_millis(ms: i64) -> DateTime<Utc> {
    Utc.timestamp_millis_opt(ms)
        .single()
        .unwrap_or(DateTime::<Utc>::MAX_UTC)
}

/// A `ValidationException` says what DynamoDB refused: an item over 400 KB, a key
/// that does not fit the table's key schema, or something else; each is told apart
/// (a too-large item is not a key-schema problem).
fn validation_error(
    op: &str,
    table: &str,
    message: &str,
    detail: &dyn std::fmt::Display,
) -> StoreError {
    let m = message.to_ascii_lowercase();
    if m.contains("item size") || m.contains("maximum allowed size") {
        StoreError::Rejected(format!(
            "DynamoDB refused {op} on table {table}: the item is larger than DynamoDB's \
             400 KB item limit ({detail}); this is a bug in what is stored, please report it"
        ))
    } else if m.contains("key element does not match the schema")
        || m.contains("missing the key")
        || m.contains("key schema")
    {
        StoreError::Config(format!(
            "DynamoDB rejected {op} on table {table} because the key does not match the \
             table's key schema; the table must have the key schema pk (S, hash) + sk (S, \
             range) ({detail})"
        ))
    } else {
        StoreError::Rejected(format!("DynamoDB rejected {op} on table {table}: {detail}"))
    }
}

/// The `FilterExpression` of an [`AuditFilter`] with the names and values it uses
/// (DynamoDB refuses unused ones). A superset of the filter: exact for entries that
/// carry `tenantId`/`action`, a JSON-body test for older ones, and an empty filter
/// value becomes "attribute absent"; the caller checks each decoded entry again.
struct AuditFilterExpression {
    expression: String,
    names: Vec<(&'static str, &'static str)>,
    values: Vec<(&'static str, AttributeValue)>,
}

impl AuditFilterExpression {
    fn of(filter: &AuditFilter) -> Option<Self> {
        let mut e = Self {
            expression: String::new(),
            names: Vec::new(),
            values: Vec::new(),
        };
        let mut terms = Vec::new();
        if let Some(run) = filter.run_id.as_deref() {
            e.name("#run", RUN_ID);
            if run.is_empty() {
                terms.push("attribute_not_exists(#run)".to_owned());
            } else {
                e.values.push((":run", s(run)));
                terms.push("#run = :run".to_owned());
            }
        }
        // (value, name, attribute, placeholders, and the attribute whose absence
        // marks an entry written before this copy was kept).
        let copies = [
            (
                filter.tenant_id.as_deref(),
                ("#tenant", TENANT_ID),
                (":tenant", ":tenantJson"),
                ("#action", ACTION),
            ),
            (
                filter.action.as_deref(),
                ("#action", ACTION),
                (":action", ":actionJson"),
                ("#action", ACTION),
            ),
            (
                filter.actor.as_deref(),
                ("#actor", ACTOR),
                (":actor", ":actorJson"),
                ("#actor", ACTOR),
            ),
        ];
        for (value, (name, attribute), (placeholder, json_placeholder), older) in copies {
            let Some(value) = value else { continue };
            e.name(name, attribute);
            if value.is_empty() {
                terms.push(format!("attribute_not_exists({name})"));
                continue;
            }
            // Entries older than the copy: the field in the JSON body.
            let (older_name, older_attribute) = older;
            e.name(older_name, older_attribute);
            e.name("#body", BODY);
            let json = format!(
                "{}:{}",
                serde_json::Value::from(attribute),
                serde_json::Value::from(value)
            );
            e.values.push((placeholder, s(value)));
            e.values.push((json_placeholder, AttributeValue::S(json)));
            terms.push(format!(
                "({name} = {placeholder} OR (attribute_not_exists({older_name}) AND \
                 contains(#body, {json_placeholder})))"
            ));
        }
        if terms.is_empty() {
            return None;
        }
        e.expression = terms.join(" AND ");
        Some(e)
    }

    fn name(&mut self, placeholder: &'static str, attribute: &'static str) {
        if !self.names.iter().any(|(p, _)| *p == placeholder) {
            self.names.push((placeholder, attribute));
        }
    }

    fn apply(
        &self,
        mut q: aws_sdk_dynamodb::operation::query::builders::QueryFluentBuilder,
    ) -> aws_sdk_dynamodb::operation::query::builders::QueryFluentBuilder {
        q = q.filter_expression(&self.expression);
        for (placeholder, attribute) in &self.names {
            q = q.expression_attribute_names(*placeholder, *attribute);
        }
        for (placeholder, value) in &self.values {
            q = q.expression_attribute_values(*placeholder, value.clone());
        }
        q
    }
}

fn run_customer_pk(run_id: &str) -> String {
    format!("{RUN_CUSTOMER}{run_id}")
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ClaimBody<'a> {
    key: &'a str,
    run_id: &'a str,
    expires_at: DateTime<Utc>,
}

#[async_trait]
impl Store for DynamoStore {
    async fn get_settings(&self) -> StoreResult<Option<Settings>> {
        self.get("settings", SETTINGS, SETTINGS).await
    }

    async fn put_settings(&self, settings: &Settings) -> StoreResult<()> {
        self.put(Self::item(SETTINGS, SETTINGS, settings)?).await
    }

    async fn get_mapping(&self, tenant_id: &str) -> StoreResult<Option<Mapping>> {
        self.get("mapping", MAPPING, tenant_id).await
    }

    async fn list_mappings(&self) -> StoreResult<Vec<Mapping>> {
        self.query_all("mapping", MAPPING).await
    }

    async fn put_mapping(&self, mapping: &Mapping) -> StoreResult<()> {
        self.put(Self::item(MAPPING, &mapping.tenant_id, mapping)?)
            .await
    }

    async fn delete_mapping(&self, tenant_id: &str) -> StoreResult<bool> {
        self.delete(MAPPING, tenant_id).await
    }

    async fn list_catalog_items(&self) -> StoreResult<Vec<CatalogRecord>> {
        self.query_all("catalog item", CATALOG).await
    }

    async fn put_catalog_item(&self, record: &CatalogRecord) -> StoreResult<()> {
        self.put(Self::item(CATALOG, &record.identifier, record)?)
            .await
    }

    async fn list_additions(&self) -> StoreResult<Vec<AdditionRecord>> {
        self.query_all("addition", ADDITION).await
    }

    async fn list_additions_of(&self, tenant_id: &str) -> StoreResult<Vec<AdditionRecord>> {
        let query = self
            .partition(ADDITION)
            .key_condition_expression("#pk = :pk AND begins_with(#sk, :tenant)")
            .expression_attribute_names("#sk", SK)
            .expression_attribute_values(":tenant", s(&format!("{tenant_id}#")));
        let mut records: Vec<AdditionRecord> = self.query_pages("addition", query).await?;
        // The prefix also matches a tenant id that starts with this one and `#`.
        records.retain(|r| r.tenant_id == tenant_id);
        Ok(records)
    }

    async fn put_addition(&self, record: &AdditionRecord) -> StoreResult<()> {
        let sk = format!("{}#{}", record.tenant_id, record.identifier);
        self.put(Self::item(ADDITION, sk, record)?).await
    }

    async fn delete_addition(&self, tenant_id: &str, identifier: &str) -> StoreResult<()> {
        self.delete(ADDITION, &format!("{tenant_id}#{identifier}"))
            .await
            .map(|_| ())
    }

    async fn put_customer_status(&self, status: &CustomerStatus) -> StoreResult<()> {
        self.put(Self::item(CUSTOMER, &status.tenant_id, status)?)
            .await
    }

    async fn put_customer_statuses(&self, statuses: &[CustomerStatus]) -> StoreResult<()> {
        let items = statuses
            .iter()
            .map(|st| Self::item(CUSTOMER, &st.tenant_id, st))
            .collect::<StoreResult<Vec<_>>>()?;
        self.batch_put(items).await
    }

    async fn get_customer_status(&self, tenant_id: &str) -> StoreResult<Option<CustomerStatus>> {
        self.get("customer status", CUSTOMER, tenant_id).await
    }

    async fn list_customer_statuses(
        &self,
        limit: usize,
        after: Option<&str>,
    ) -> StoreResult<Page<CustomerStatus>> {
        self.query_page("customer status", CUSTOMER, limit, after)
            .await
    }

    async fn put_run_customers(&self, customers: &[RunCustomer]) -> StoreResult<()> {
        let items = customers
            .iter()
            .map(|rc| {
                let mut item = Self::item(&run_customer_pk(&rc.run_id), &rc.tenant_id, rc)?;
                if let Some(expires) = rc.expires_at {
                    item.insert(TTL.to_owned(), n(expires.timestamp()));
                }
                Ok(item)
            })
            .collect::<StoreResult<Vec<_>>>()?;
        self.batch_put(items).await
    }

    async fn list_run_customers(
        &self,
        run_id: &str,
        limit: usize,
        after: Option<&str>,
    ) -> StoreResult<Page<RunCustomer>> {
        let page: Page<RunCustomer> = self
            .query_page("run customer", &run_customer_pk(run_id), limit, after)
            .await?;
        self.reads.read_run_customers(page.items.len());
        Ok(page)
    }

    async fn list_run_customer_ids(
        &self,
        run_id: &str,
        limit: usize,
        after: Option<&str>,
    ) -> StoreResult<Page<String>> {
        let pk = run_customer_pk(run_id);
        let limit = page_limit(limit);
        let mut ids = Vec::new();
        let mut start = after.map(|a| Self::key(&pk, a));
        loop {
            // Only the sort key comes back: the results' bodies stay in the table.
            let page = self
                .partition(&pk)
                .projection_expression("#sk")
                .expression_attribute_names("#sk", SK)
                .limit(i32::try_from(limit - ids.len()).unwrap_or(i32::MAX))
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(|e| self.sdk_err("Query", e))?;
            for item in page.items() {
                let id = item.get(SK).and_then(|v| v.as_s().ok()).ok_or_else(|| {
                    StoreError::Corrupt(format!(
                        "a run customer item of run {run_id} in DynamoDB table {} lacks `{SK}` (S)",
                        self.table
                    ))
                })?;
                ids.push(id.clone());
            }
            match page.last_evaluated_key.filter(|k| !k.is_empty()) {
                Some(k) if ids.len() < limit => start = Some(k),
                _ => break,
            }
        }
        let next = ids.last().filter(|_| ids.len() == limit).cloned();
        Ok(Page { items: ids, next })
    }

    async fn put_run(&self, run: &RunRecord) -> StoreResult<()> {
        let mut item = Self::item(RUN, &run.run_id, run)?;
        if let Some(expires) = run.expires_at {
            item.insert(TTL.to_owned(), n(expires.timestamp()));
        }
        self.put(item).await
    }

    async fn get_run(&self, run_id: &str) -> StoreResult<Option<RunRecord>> {
        self.get("run", RUN, run_id).await
    }

    async fn list_runs(&self, limit: usize, before: Option<&str>) -> StoreResult<Vec<RunRecord>> {
        self.query_latest("run", RUN, limit, before).await
    }

    // `audit_addition` keeps the trait's two requests, the entry first. One
    // `TransactWriteItems` would do, but moto (the tests' DynamoDB) copies the whole
    // table for each transaction, unlocked: slow at scale, and a 500 when another
    // request writes meanwhile.
    async fn append_audit(&self, entry: &AuditEntry) -> StoreResult<()> {
        self.put(Self::audit_item(entry)?).await
    }

    async fn list_audit_page(
        &self,
        filter: &AuditFilter,
        limit: usize,
        before: Option<&str>,
    ) -> StoreResult<Page<AuditEntry>> {
        let expression = AuditFilterExpression::of(filter);
        let narrow = |q: QueryBuilder, left: usize| match &expression {
            Some(e) => e.apply(q).limit(AUDIT_FILTERED_QUERY_LIMIT),
            // One entry more than the page tells whether another page follows.
            None => q.limit(i32::try_from(left + 1).unwrap_or(i32::MAX)),
        };
        let bound = LatestPage {
            what: "audit entry",
            pk: AUDIT,
            limit,
            before,
            pages: AUDIT_QUERY_PAGES,
        };
        self.latest_page(bound, narrow, |e: &AuditEntry| filter.matches(e))
            .await
    }

    async fn put_held_change(
        &self,
        change: &HeldChange,
        expected: Option<u64>,
    ) -> StoreResult<bool> {
        let mut item = Self::item(HELD, change.id.clone(), change)?;
        item.insert(OPEN.to_owned(), n(i64::from(change.status.is_open())));
        item.insert(
            VERSION.to_owned(),
            AttributeValue::N(change.version.to_string()),
        );
        if let Some(expires) = change.expires_at {
            item.insert(TTL.to_owned(), n(expires.timestamp()));
        }
        let put = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item));
        let put = match expected {
            None => put
                .condition_expression("attribute_not_exists(#pk)")
                .expression_attribute_names("#pk", PK),
            Some(v) => put
                .condition_expression("#ver = :ver")
                .expression_attribute_names("#ver", VERSION)
                .expression_attribute_values(":ver", AttributeValue::N(v.to_string())),
        };
        Ok(self.conditional("PutItem", put.send().await)?.is_some())
    }

    async fn get_held_change(&self, id: &str) -> StoreResult<Option<HeldChange>> {
        self.get("held change", HELD, id).await
    }

    async fn get_held_changes(&self, ids: &[String]) -> StoreResult<Vec<HeldChange>> {
        let mut out = Vec::new();
        for chunk in ids.chunks(super::MAX_HELD_IDS) {
            let keys: Vec<Item> = chunk
                .iter()
                .map(|id| Self::key(HELD, id.as_str()))
                .collect();
            let mut wanted = aws_sdk_dynamodb::types::KeysAndAttributes::builder()
                .set_keys(Some(keys))
                .consistent_read(true)
                .build()
                .map_err(|e| StoreError::Config(format!("cannot describe a batch get: {e}")))?;
            let mut round = 0;
            loop {
                let got = self
                    .client
                    .batch_get_item()
                    .request_items(&self.table, wanted)
                    .send()
                    .await
                    .map_err(|e| self.sdk_err("BatchGetItem", e))?;
                for item in got
                    .responses
                    .and_then(|mut r| r.remove(&self.table))
                    .unwrap_or_default()
                {
                    out.push(self.decode("held change", &item)?);
                }
                match got.unprocessed_keys.and_then(|mut u| u.remove(&self.table)) {
                    Some(rest) if !rest.keys().is_empty() => wanted = rest,
                    _ => break,
                }
                round += 1;
                if round == BATCH_GET_ROUNDS {
                    return Err(StoreError::Unavailable(format!(
                        "DynamoDB left keys of a BatchGetItem on table {} unprocessed after \
                         {BATCH_GET_ROUNDS} attempts (throttled); retry later",
                        self.table
                    )));
                }
                tokio::time::sleep(Duration::from_millis(50u64 << round.min(5))).await;
            }
        }
        Ok(out)
    }

    /// A `Select=COUNT` query of the held partition: DynamoDB counts the open
    /// items and returns no item, a page of up to 1 MB of held changes per call.
    async fn count_open_held_changes(&self) -> StoreResult<u64> {
        let mut count = 0u64;
        let mut start: Option<Item> = None;
        loop {
            let page = self
                .partition(HELD)
                .select(aws_sdk_dynamodb::types::Select::Count)
                .filter_expression("#open = :one")
                .expression_attribute_names("#open", OPEN)
                .expression_attribute_values(":one", n(1))
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(|e| self.sdk_err("Query", e))?;
            count += u64::try_from(page.count).unwrap_or(0);
            match page.last_evaluated_key.filter(|k| !k.is_empty()) {
                Some(k) => start = Some(k),
                None => return Ok(count),
            }
        }
    }

    async fn list_held_changes(
        &self,
        open_only: bool,
        limit: usize,
        after: Option<&str>,
    ) -> StoreResult<Page<HeldChange>> {
        let narrow = |q: QueryBuilder, left: usize| {
            if open_only {
                q.filter_expression("#open = :one")
                    .expression_attribute_names("#open", OPEN)
                    .expression_attribute_values(":one", n(1))
                    .limit(i32::try_from(super::MAX_PAGE).unwrap_or(i32::MAX))
            } else {
                q.limit(i32::try_from(left + 1).unwrap_or(i32::MAX))
            }
        };
        let bound = LatestPage {
            what: "held change",
            pk: HELD,
            limit,
            before: after,
            pages: HELD_QUERY_PAGES,
        };
        self.latest_page(bound, narrow, |_: &HeldChange| true).await
    }

    async fn acquire_lease(
        &self,
        run_id: &str,
        now: DateTime<Utc>,
        ttl: Duration,
    ) -> StoreResult<LeaseOutcome> {
        let lease = Lease {
            run_id: run_id.to_owned(),
            expires_at: expiry(now, ttl),
        };
        let mut item = Self::item(LEASE, LEASE, &lease)?;
        item.insert(RUN_ID.to_owned(), s(run_id));
        item.insert(
            EXPIRES_AT.to_owned(),
            n(lease.expires_at.timestamp_millis()),
        );
        let held = self
            .put_unless_held(
                item,
                "attribute_not_exists(#pk) OR #exp < :now OR #run = :run",
                &[(":now", n(now.timestamp_millis())), (":run", s(run_id))],
            )
            .await?;
        match held {
            None => Ok(LeaseOutcome::Acquired),
            Some(old) => Ok(LeaseOutcome::HeldBy(self.lease_from(&old)?)),
        }
    }

    async fn renew_lease(
        &self,
        run_id: &str,
        now: DateTime<Utc>,
        ttl: Duration,
    ) -> StoreResult<bool> {
        let lease = Lease {
            run_id: run_id.to_owned(),
            expires_at: expiry(now, ttl),
        };
        let res = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(Self::key(LEASE, LEASE)))
            .update_expression("SET #exp = :exp, #body = :body")
            .condition_expression("#run = :run")
            .expression_attribute_names("#exp", EXPIRES_AT)
            .expression_attribute_names("#body", BODY)
            .expression_attribute_names("#run", RUN_ID)
            .expression_attribute_values(":exp", n(lease.expires_at.timestamp_millis()))
            .expression_attribute_values(":body", AttributeValue::S(to_json(&lease)?))
            .expression_attribute_values(":run", s(run_id))
            .send()
            .await;
        Ok(self.conditional("UpdateItem", res)?.is_some())
    }

    async fn release_lease(&self, run_id: &str) -> StoreResult<()> {
        let res = self
            .client
            .delete_item()
            .table_name(&self.table)
            .set_key(Some(Self::key(LEASE, LEASE)))
            .condition_expression("#run = :run")
            .expression_attribute_names("#run", RUN_ID)
            .expression_attribute_values(":run", s(run_id))
            .send()
            .await;
        // Not holding it (any more) is fine: nothing to release.
        self.conditional("DeleteItem", res)?;
        Ok(())
    }

    async fn claimed(&self, key: &str, now: DateTime<Utc>) -> StoreResult<Option<String>> {
        let Some(item) = self.get_item(CLAIM, key).await? else {
            return Ok(None);
        };
        let expires = item
            .get(EXPIRES_AT)
            .and_then(|v| v.as_n().ok())
            .and_then(|v| v.parse::<i64>().ok());
        let holder = item.get(RUN_ID).and_then(|v| v.as_s().ok());
        match (expires, holder) {
            // DynamoDB's TTL deletes expired items late: the expiry decides.
            (Some(e), Some(h)) => Ok((e >= now.timestamp_millis()).then(|| h.clone())),
            _ => Err(StoreError::Corrupt(format!(
                "the claim {key:?} in DynamoDB table {} lacks `runId` (S) or `expiresAt` (N)",
                self.table
            ))),
        }
    }

    async fn claim_once(
        &self,
        key: &str,
        run_id: &str,
        now: DateTime<Utc>,
        ttl: Duration,
    ) -> StoreResult<Option<String>> {
        let expires_at = expiry(now, ttl);
        let body = ClaimBody {
            key,
            run_id,
            expires_at,
        };
        let mut item = Self::item(CLAIM, key, &body)?;
        item.insert(RUN_ID.to_owned(), s(run_id));
        item.insert(EXPIRES_AT.to_owned(), n(expires_at.timestamp_millis()));
        item.insert(TTL.to_owned(), n(expires_at.timestamp()));
        let held = self
            .put_unless_held(
                item,
                "attribute_not_exists(#pk) OR #exp < :now",
                &[(":now", n(now.timestamp_millis()))],
            )
            .await?;
        match held {
            None => Ok(None),
            Some(old) => match old.get(RUN_ID).and_then(|v| v.as_s().ok()) {
                Some(holder) => Ok(Some(holder.clone())),
                None => Err(StoreError::Corrupt(format!(
                    "the claim {key:?} in DynamoDB table {} lacks `runId` (S)",
                    self.table
                ))),
            },
        }
    }

    async fn count_event(
        &self,
        key: &str,
        now: DateTime<Utc>,
        window: Duration,
    ) -> StoreResult<u32> {
        for _ in 0..CONDITIONAL_ATTEMPTS {
            if let Some(count) = self.count_in_open_window(key, now).await? {
                return Ok(count);
            }
            if self.start_count_window(key, now, window).await? {
                return Ok(1);
            }
        }
        Err(StoreError::Unavailable(format!(
            "the counter {key:?} in DynamoDB table {} kept changing under \
             {CONDITIONAL_ATTEMPTS} attempts to count one event; retry",
            self.table
        )))
    }
}

/// The two conditional writes of [`Store::count_event`].
impl DynamoStore {
    /// Adds one to the counter if its window is still open at `now`; None when
    /// there is no counter or its window has ended.
    async fn count_in_open_window(
        &self,
        key: &str,
        now: DateTime<Utc>,
    ) -> StoreResult<Option<u32>> {
        let res = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(Self::key(COUNTER, key)))
            .update_expression("ADD #count :one")
            .condition_expression("attribute_exists(#pk) AND #ends > :now")
            .expression_attribute_names("#pk", PK)
            .expression_attribute_names("#count", COUNT)
            .expression_attribute_names("#ends", WINDOW_ENDS)
            .expression_attribute_values(":one", n(1))
            .expression_attribute_values(":now", n(now.timestamp_millis()))
            .return_values(aws_sdk_dynamodb::types::ReturnValue::UpdatedNew)
            .send()
            .await;
        let Some(out) = self.conditional("UpdateItem", res)? else {
            return Ok(None);
        };
        let count = out
            .attributes
            .as_ref()
            .and_then(|a| a.get(COUNT))
            .and_then(|v| v.as_n().ok())
            .and_then(|v| v.parse::<u32>().ok());
        match count {
            Some(c) => Ok(Some(c)),
            None => Err(StoreError::Corrupt(format!(
                "the counter {key:?} in DynamoDB table {} lacks a numeric `count`",
                self.table
            ))),
        }
    }

    /// Writes the counter at 1 with a window from `now`, unless another writer
    /// started a window that is still open (false: count again).
    async fn start_count_window(
        &self,
        key: &str,
        now: DateTime<Utc>,
        window: Duration,
    ) -> StoreResult<bool> {
        let ends = expiry(now, window);
        let mut item = Self::key(COUNTER, key);
        item.insert(COUNT.to_owned(), n(1));
        item.insert(WINDOW_ENDS.to_owned(), n(ends.timestamp_millis()));
        item.insert(TTL.to_owned(), n(ends.timestamp()));
        let res = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .condition_expression("attribute_not_exists(#pk) OR #ends <= :now")
            .expression_attribute_names("#pk", PK)
            .expression_attribute_names("#ends", WINDOW_ENDS)
            .expression_attribute_values(":now", n(now.timestamp_millis()))
            .send()
            .await;
        Ok(self.conditional("PutItem", res)?.is_some())
    }
}
