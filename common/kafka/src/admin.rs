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
