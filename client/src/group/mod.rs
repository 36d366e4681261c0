//! Consumer groups, member side (Kafka's classic group protocol): the embedded consumer protocol
//! ([`protocol`]), the assignors the leader runs ([`assignor`]), the member state machine
//! ([`membership`]) and the async glue that talks to the coordinator ([`coordinator`]).

pub mod assignor;
pub mod coordinator;
pub mod membership;
pub mod protocol;

pub use assignor::{assign, GroupAssignment, MemberSubscription, Strategy};
pub use coordinator::{GroupCoordinator, GroupHandle, GroupSettings, JoinDone, LeaderSnapshot};
pub use membership::{GroupError, MemberState, Membership};
pub use protocol::{Assignment, ProtocolError, Subscription};
