//! Topic administration and bounded reads of a topic outside any consumer group: creating the
//! topics a service writes to, listing partitions, and reading a range (DLQ browsing, replays).
//! A reader never commits; it stops at a record limit, a time bound or an idle gap — the end of
//! a partition is not taken from the high watermark, which some brokers (Tansu) report wrongly.

use std::collections::BTreeMap;
use std::time::Duration;

use loom_config::KafkaSection;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::util::Timeout;
use rdkafka::{Offset, TopicPartitionList};

use crate::{CLIENT_TIMEOUT, Record, client_config};

/// Creates the topics that do not exist yet (existing ones are left as they are).
pub async fn ensure_topics(kafka: &KafkaSection, topics: &[&str], partitions: i32) -> Result<(), KafkaError> {
    let admin: AdminClient<DefaultClientContext> = client_config(kafka, "loom-admin").create()?;
    let new: Vec<NewTopic<'_>> =
        topics.iter().map(|t| NewTopic::new(t, partitions, TopicReplication::Fixed(1))).collect();
    let results = admin.create_topics(&new, &AdminOptions::new().request_timeout(Some(CLIENT_TIMEOUT))).await?;
    for r in results {
        match r {
            Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((topic, code)) => {
                return Err(KafkaError::AdminOp(code))
                    .inspect_err(|_| tracing::warn!(%topic, ?code, "topic creation failed"));
            }
        }
    }
    Ok(())
}

/// How many partitions a topic has (0 if it does not exist).
pub async fn partition_count(kafka: &KafkaSection, topic: &str) -> Result<i32, KafkaError> {
    let (kafka, topic) = (kafka.clone(), topic.to_owned());
    tokio::task::spawn_blocking(move || {
        let admin: AdminClient<DefaultClientContext> = client_config(&kafka, "loom-admin").create()?;
        let md = admin.inner().fetch_metadata(Some(&topic), Timeout::After(CLIENT_TIMEOUT))?;
        Ok(md
            .topics()
            .iter()
            .filter(|t| t.name() == topic && t.error().is_none())
            .map(|t| t.partitions().len() as i32)
            .sum())
    })
    .await
    .unwrap_or(Err(KafkaError::Canceled))
}

/// Where a reader starts in each partition.
#[derive(Debug, Clone, PartialEq)]
pub enum Start {
    Beginning,
    /// Per partition; partitions not listed start at the beginning.
    Offsets(BTreeMap<i32, i64>),
    /// The first record at or after this time (ms since the epoch).
    Time(i64),
}

/// Reads a topic from a start position, without a consumer group.
pub struct TopicReader {
    consumer: StreamConsumer,
    pub partitions: Vec<i32>,
}

impl TopicReader {
    /// Opens a reader. Blocking metadata calls: run it in `spawn_blocking`.
    pub fn open(kafka: &KafkaSection, topic: &str, start: &Start) -> Result<TopicReader, KafkaError> {
        let consumer: StreamConsumer = client_config(kafka, "loom-reader")
            .set("group.id", "loom-reader-unused")
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", "earliest")
            .create()?;
        let metadata = consumer.fetch_metadata(Some(topic), Timeout::After(CLIENT_TIMEOUT))?;
        let partitions: Vec<i32> = metadata
            .topics()
            .iter()
            .filter(|t| t.name() == topic && t.error().is_none())
            .flat_map(|t| t.partitions().iter().map(|p| p.id()))
            .collect();
        if partitions.is_empty() {
            return Err(KafkaError::MetadataFetch(RDKafkaErrorCode::UnknownTopicOrPartition));
        }
        let mut tpl = TopicPartitionList::new();
        for p in &partitions {
            let offset = match start {
                Start::Beginning => Offset::Beginning,
                Start::Offsets(map) => map.get(p).map_or(Offset::Beginning, |o| Offset::Offset(*o)),
                Start::Time(ms) => Offset::Offset(*ms),
            };
            tpl.add_partition_offset(topic, *p, offset)?;
        }
        if matches!(start, Start::Time(_)) {
            tpl = consumer.offsets_for_times(tpl, Timeout::After(CLIENT_TIMEOUT))?;
            // A partition with no record at or after the time answers "end": read nothing there.
        }
        consumer.assign(&tpl)?;
        Ok(TopicReader { consumer, partitions })
    }

    /// The next record, or `None` after `idle` without one.
    pub async fn next(&self, idle: Duration) -> Option<Result<Record, KafkaError>> {
        match tokio::time::timeout(idle, self.consumer.recv()).await {
            Err(_) => None,
            Ok(Ok(m)) => Some(Ok(Record::from_message(&m))),
            Ok(Err(e)) => Some(Err(e)),
        }
    }
}

/// Reads one partition, `read_committed`, from `from` to the end it had when the scan began,
/// calling `seen` for every record; stops with an error after `limit`. The end is the high
/// watermark at the start; because Tansu reports it as the last batch's *base* offset + 1, the
/// scan then drains what the last fetch already brought (whole batches) until `idle` passes
/// without a record — so a writer fenced before the scan has every record it wrote seen.
pub async fn scan_partition(
    kafka: &KafkaSection,
    topic: &str,
    partition: i32,
    from: i64,
    limit: Duration,
    mut seen: impl FnMut(&Record),
) -> Result<u64, KafkaError> {
    let (kafka, topic2) = (kafka.clone(), topic.to_owned());
    let opened = tokio::task::spawn_blocking(move || -> Result<(StreamConsumer, i64), KafkaError> {
        let consumer: StreamConsumer = client_config(&kafka, "loom-scan")
            .set("group.id", "loom-scan-unused")
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("isolation.level", "read_committed")
            .set("auto.offset.reset", "earliest")
            .create()?;
        let (low, high) = consumer.fetch_watermarks(&topic2, partition, Timeout::After(CLIENT_TIMEOUT))?;
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(&topic2, partition, Offset::Offset(from.max(low)))?;
        consumer.assign(&tpl)?;
        Ok((consumer, high))
    })
    .await
    .unwrap_or(Err(KafkaError::Canceled))?;
    let (consumer, high) = opened;
    let deadline = tokio::time::Instant::now() + limit;
    let mut n = 0;
    let mut reached = from >= high;
    let mut idle_rounds = 0;
    loop {
        let wait = if reached { Duration::from_millis(150) } else { Duration::from_millis(500) };
        if tokio::time::Instant::now() > deadline {
            return Err(KafkaError::Canceled);
        }
        match tokio::time::timeout(wait, consumer.recv()).await {
            Ok(Ok(m)) => {
                let r = Record::from_message(&m);
                n += 1;
                idle_rounds = 0;
                reached |= r.offset + 1 >= high;
                seen(&r);
            }
            Ok(Err(e)) => return Err(e),
            Err(_) if reached => return Ok(n),
            Err(_) => {
                // No record for a while: past control records (transaction markers) the position
                // moves without a message.
                let position = consumer
                    .position()
                    .ok()
                    .and_then(|tpl| tpl.find_partition(topic, partition).and_then(|e| e.offset().to_raw()));
                idle_rounds += 1;
                // 2 s without a record and without the position moving there: nothing is left
                // that a read_committed reader could see.
                reached |= position.is_some_and(|p| p >= high) || idle_rounds >= 4;
            }
        }
    }
}
