//! Supervision tests with real ractor actors: a child that panics is restarted, a spent budget
//! escalates to the parent which restarts the whole subtree, shutdown runs bottom-up in reverse.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::FutureExt;
use loom_protocol::ServiceId;
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use ractor_cluster_derive::RactorMessage;

use crate::{ChildSpec, ChildState, RestartPolicy, StatusBoard, Supervisor, SupervisorArgs};

#[derive(RactorMessage)]
enum WorkerMsg {
    Panic,
    Ping(RpcReplyPort<&'static str>),
}

/// Records its name in `stopped` when it stops cleanly.
struct Worker {
    name: &'static str,
    stopped: Arc<Mutex<Vec<&'static str>>>,
}

#[ractor::async_trait]
impl Actor for Worker {
    type Msg = WorkerMsg;
    type State = ();
    type Arguments = ();

    async fn pre_start(&self, _: ActorRef<WorkerMsg>, _: ()) -> Result<(), ActorProcessingErr> {
        Ok(())
    }

    async fn handle(&self, _: ActorRef<WorkerMsg>, msg: WorkerMsg, _: &mut ()) -> Result<(), ActorProcessingErr> {
        match msg {
            WorkerMsg::Panic => panic!("injected panic in {}", self.name),
            WorkerMsg::Ping(reply) => {
                let _ = reply.send("pong");
            }
        }
        Ok(())
    }

    async fn post_stop(&self, _: ActorRef<WorkerMsg>, _: &mut ()) -> Result<(), ActorProcessingErr> {
        self.stopped.lock().unwrap().push(self.name);
        Ok(())
    }
}

type Slot = Arc<Mutex<Option<ActorRef<WorkerMsg>>>>;

fn policy(max_restarts: u32) -> RestartPolicy {
    RestartPolicy {
        max_restarts,
        window: Duration::from_secs(30),
        backoff_initial: Duration::from_millis(10),
        backoff_max: Duration::from_millis(50),
    }
}

fn worker_spec(
    service: ServiceId,
    name: &'static str,
    max: u32,
    slot: Slot,
    stopped: Arc<Mutex<Vec<&'static str>>>,
) -> ChildSpec {
    ChildSpec {
        service,
        actor: name.to_owned(),
        policy: policy(max),
        start: Arc::new(move |sup| {
            let (slot, stopped) = (slot.clone(), stopped.clone());
            async move {
                let (r, _) = Actor::spawn_linked(None, Worker { name, stopped }, (), sup).await?;
                *slot.lock().unwrap() = Some(r.clone());
                Ok(r.get_cell())
            }
            .boxed()
        }),
    }
}

fn supervisor_spec(service: ServiceId, max: u32, children: Vec<ChildSpec>, board: StatusBoard) -> ChildSpec {
    ChildSpec {
        service,
        actor: "supervisor".into(),
        policy: policy(max),
        start: Arc::new(move |sup| {
            let args = SupervisorArgs {
                label: service.name().into(),
                children: children.clone(),
                board: board.clone(),
                stop_timeout: Duration::from_secs(1),
            };
            async move {
                let (r, _) = Actor::spawn_linked(None, Supervisor, args, sup).await?;
                Ok(r.get_cell())
            }
            .boxed()
        }),
    }
}

async fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    for _ in 0..300 {
        if cond() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("timed out waiting for: {what}");
}

fn status(board: &StatusBoard, service: ServiceId, actor: &str) -> Option<(ChildState, u64)> {
    board.service(service).into_iter().find(|(a, _)| a == actor).map(|(_, s)| (s.state, s.restarts))
}

async fn ping(slot: &Slot) -> &'static str {
    let r = slot.lock().unwrap().clone().expect("worker started");
    ractor::call_t!(r, WorkerMsg::Ping, 1000).expect("ping answered")
}

#[tokio::test]
async fn a_panicking_child_is_restarted_and_answers_again() {
    let board = StatusBoard::new();
    let slot: Slot = Default::default();
    let stopped = Arc::new(Mutex::new(Vec::new()));
    let svc = ServiceId::Dedup;
    let args = SupervisorArgs {
        label: "test".into(),
        children: vec![worker_spec(svc, "core", 3, slot.clone(), stopped.clone())],
        board: board.clone(),
        stop_timeout: Duration::from_secs(1),
    };
    let (sup, handle) = Actor::spawn(None, Supervisor, args).await.unwrap();
    assert_eq!(status(&board, svc, "core"), Some((ChildState::Running, 0)));
    let first = slot.lock().unwrap().clone().unwrap();

    first.cast(WorkerMsg::Panic).unwrap();
    eventually("core restarted once", || status(&board, svc, "core") == Some((ChildState::Running, 1))).await;
    let second = slot.lock().unwrap().clone().unwrap();
    assert_ne!(first.get_id(), second.get_id(), "a fresh actor replaced the panicked one");
    assert_eq!(ping(&slot).await, "pong");
    let failure = board.service(svc)[0].1.last_failure.clone().unwrap();
    assert!(failure.contains("injected panic in core"), "{failure}");

    sup.stop_and_wait(None, Some(Duration::from_secs(2))).await.unwrap();
    handle.await.unwrap();
    assert_eq!(status(&board, svc, "core").map(|s| s.0), Some(ChildState::Stopped));
}

#[tokio::test]
async fn a_spent_budget_escalates_and_the_parent_restarts_the_subtree() {
    let board = StatusBoard::new();
    let slot: Slot = Default::default();
    let stopped = Arc::new(Mutex::new(Vec::new()));
    let svc = ServiceId::EventRouter;
    // the worker may restart once; its service supervisor may be restarted twice
    let service_sup =
        supervisor_spec(svc, 2, vec![worker_spec(svc, "core", 1, slot.clone(), stopped.clone())], board.clone());
    let args = SupervisorArgs {
        label: "node".into(),
        children: vec![service_sup],
        board: board.clone(),
        stop_timeout: Duration::from_secs(1),
    };
    let (root, handle) = Actor::spawn(None, Supervisor, args).await.unwrap();

    let w = slot.lock().unwrap().clone().unwrap();
    w.cast(WorkerMsg::Panic).unwrap();
    eventually("worker restarted", || status(&board, svc, "core") == Some((ChildState::Running, 1))).await;
    let w = slot.lock().unwrap().clone().unwrap();
    w.cast(WorkerMsg::Panic).unwrap();
    // second failure within the window: the service supervisor escalates, root restarts it
    eventually("service supervisor restarted by root", || {
        status(&board, svc, "supervisor") == Some((ChildState::Running, 1))
    })
    .await;
    eventually("fresh worker running", || status(&board, svc, "core").map(|s| s.0) == Some(ChildState::Running)).await;
    assert_ne!(slot.lock().unwrap().clone().unwrap().get_id(), w.get_id());
    assert_eq!(ping(&slot).await, "pong");

    root.stop_and_wait(None, Some(Duration::from_secs(2))).await.unwrap();
    handle.await.unwrap();
}

#[tokio::test]
async fn root_escalation_ends_the_root() {
    let board = StatusBoard::new();
    let slot: Slot = Default::default();
    let stopped = Arc::new(Mutex::new(Vec::new()));
    let args = SupervisorArgs {
        label: "node".into(),
        children: vec![worker_spec(ServiceId::Dedup, "core", 0, slot.clone(), stopped)],
        board: board.clone(),
        stop_timeout: Duration::from_secs(1),
    };
    let (root, handle) = Actor::spawn(None, Supervisor, args).await.unwrap();
    slot.lock().unwrap().clone().unwrap().cast(WorkerMsg::Panic).unwrap();
    tokio::time::timeout(Duration::from_secs(5), handle).await.expect("root ended").unwrap();
    assert_eq!(root.get_status(), ractor::ActorStatus::Stopped);
    assert_eq!(status(&board, ServiceId::Dedup, "core").map(|s| s.0), Some(ChildState::Failed));
}

#[tokio::test]
async fn shutdown_stops_subtrees_bottom_up_in_reverse_start_order() {
    let board = StatusBoard::new();
    let stopped = Arc::new(Mutex::new(Vec::new()));
    let (a, b) = (ServiceId::SchemaRegistry, ServiceId::PrivacyFilter);
    let a_sup = supervisor_spec(
        a,
        1,
        vec![
            worker_spec(a, "a1", 1, Default::default(), stopped.clone()),
            worker_spec(a, "a2", 1, Default::default(), stopped.clone()),
        ],
        board.clone(),
    );
    let b_sup =
        supervisor_spec(b, 1, vec![worker_spec(b, "b1", 1, Default::default(), stopped.clone())], board.clone());
    let args = SupervisorArgs {
        label: "node".into(),
        children: vec![a_sup, b_sup],
        board: board.clone(),
        stop_timeout: Duration::from_secs(1),
    };
    let (root, handle) = Actor::spawn(None, Supervisor, args).await.unwrap();
    root.stop_and_wait(None, Some(Duration::from_secs(3))).await.unwrap();
    handle.await.unwrap();
    assert_eq!(*stopped.lock().unwrap(), ["b1", "a2", "a1"]);
    for (svc, actor) in [(a, "a1"), (a, "a2"), (b, "b1"), (a, "supervisor"), (b, "supervisor")] {
        assert_eq!(status(&board, svc, actor).map(|s| s.0), Some(ChildState::Stopped), "{svc} {actor}");
    }
}

#[tokio::test]
async fn a_requested_service_restart_replaces_only_that_service_tree() {
    let board = StatusBoard::new();
    let (dedup, router): (Slot, Slot) = Default::default();
    let stopped = Arc::new(Mutex::new(Vec::new()));
    let children = vec![
        supervisor_spec(
            ServiceId::Dedup,
            2,
            vec![worker_spec(ServiceId::Dedup, "core", 1, dedup.clone(), stopped.clone())],
            board.clone(),
        ),
        supervisor_spec(
            ServiceId::EventRouter,
            2,
            vec![worker_spec(ServiceId::EventRouter, "core", 1, router.clone(), stopped.clone())],
            board.clone(),
        ),
    ];
    let args =
        SupervisorArgs { label: "node".into(), children, board: board.clone(), stop_timeout: Duration::from_secs(1) };
    let (root, handle) = Actor::spawn(None, Supervisor, args).await.unwrap();
    let (old_dedup, old_router) = (dedup.lock().unwrap().clone().unwrap(), router.lock().unwrap().clone().unwrap());

    // (service asked for, expected reply)
    for (service, want) in [(ServiceId::Dedup, true), (ServiceId::SchemaRegistry, false)] {
        let got = ractor::call_t!(root, crate::SupervisorMsg::RestartService, 1000, service).unwrap();
        assert_eq!(got, want, "{service}");
    }
    eventually("dedup tree restarted", || {
        status(&board, ServiceId::Dedup, "supervisor") == Some((ChildState::Running, 1))
    })
    .await;
    eventually("fresh dedup core", || {
        dedup.lock().unwrap().as_ref().is_some_and(|w| w.get_id() != old_dedup.get_id())
            && status(&board, ServiceId::Dedup, "core").map(|s| s.0) == Some(ChildState::Running)
    })
    .await;
    assert_eq!(ping(&dedup).await, "pong");
    assert_eq!(status(&board, ServiceId::EventRouter, "supervisor"), Some((ChildState::Running, 0)));
    assert_eq!(router.lock().unwrap().clone().unwrap().get_id(), old_router.get_id(), "other trees untouched");

    root.stop_and_wait(None, Some(Duration::from_secs(2))).await.unwrap();
    handle.await.unwrap();
}
