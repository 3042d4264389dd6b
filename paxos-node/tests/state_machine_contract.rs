//! The state machine's contract as a user meets it: a command that `apply` gives no output
//! fails its caller at once with an error that names it (not a `Timeout` after the request
//! timeout), and the snapshot methods need not be written until compaction calls them.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use paxos_core::{Committed, Config, NodeId, ProposalId, StateMachine, StateMachineError};
use paxos_net_tcp::{TcpConfig, TcpTransport};
use paxos_node::{NodeBuilder, NodeOptions, ProposeError, Runtime, TokioRuntime};
use paxos_storage::MemoryStorage;

/// Counts commands; forgets the output of any command that starts with `silent` (the bug
/// under test). Implements neither `snapshot` nor `restore`.
#[derive(Default)]
struct Forgetful {
    applied: u64,
}

#[async_trait]
impl StateMachine for Forgetful {
    async fn apply(
        &mut self,
        batch: &[Committed],
        outputs: &mut Vec<(ProposalId, Bytes)>,
    ) -> Result<(), StateMachineError> {
        for command in batch.iter().flat_map(|c| c.value.commands()) {
            self.applied += 1;
            if !command.payload.starts_with(b"silent") {
                outputs.push((command.id, Bytes::from(self.applied.to_string())));
            }
        }
        Ok(())
    }

    async fn query(&mut self, _query: &[u8]) -> Result<Bytes, StateMachineError> {
        Ok(Bytes::from(self.applied.to_string()))
    }
}

#[test]
fn a_missing_output_is_an_error_naming_the_command() {
    let tokio = tokio::runtime::Runtime::new().unwrap();
    tokio.block_on(async {
        let runtime: Arc<dyn Runtime> = Arc::new(TokioRuntime::current().unwrap());
        let id = NodeId(1);
        let tcp = TcpConfig::new(1, id, "127.0.0.1:0".parse().unwrap(), BTreeMap::new());
        let transport = TcpTransport::start(tcp, runtime.clone()).unwrap();
        // A request timeout far longer than a commit here: a `Timeout` would mean the bug.
        let mut options = NodeOptions::default();
        options.request_timeout = Duration::from_secs(20);
        let node = NodeBuilder::new(Config::new(id, vec![id]))
            .options(options)
            .runtime(runtime)
            .transport(Box::new(transport))
            .storage(Box::new(MemoryStorage::new()))
            .state_machine(Box::new(Forgetful::default()))
            .start()
            .await
            .unwrap();
        assert!(
            node.wait_for(Duration::from_secs(10), |s| s.leader.is_some())
                .await
                .is_some(),
            "no leader"
        );
        assert_eq!(node.propose(Bytes::from_static(b"one")).await.unwrap(), "1");
        let err = node
            .propose(Bytes::from_static(b"silent two"))
            .await
            .unwrap_err();
        let ProposeError::NoOutput { id } = err else {
            panic!("expected NoOutput, got {err:?}");
        };
        assert_eq!(id.origin, NodeId(1), "{id:?}");
        assert!(err.to_string().contains("was applied"), "{err}");
        assert!(!err.is_retryable() && !err.outcome_unknown(), "{err:?}");
        // It was applied, and the node goes on.
        assert_eq!(
            node.propose(Bytes::from_static(b"three")).await.unwrap(),
            "3"
        );
        assert_eq!(node.read(Bytes::new()).await.unwrap(), "3");
        node.shutdown().await;
    });
}

#[test]
fn snapshot_methods_have_defaults_that_refuse() {
    futures::executor::block_on(async {
        let mut machine = Forgetful::default();
        let mut out = Vec::new();
        let err = machine.snapshot(&mut out).await.unwrap_err();
        assert!(err.message().contains("does not take snapshots"), "{err}");
        assert!(out.is_empty());
        let err = machine.restore(&mut &b"anything"[..]).await.unwrap_err();
        assert!(
            err.message().contains("does not restore snapshots"),
            "{err}"
        );
    });
}
