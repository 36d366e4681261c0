//! The Loglab broker. Data flows request → handler → partition → log → storage; this crate never
//! knows which world it runs in: storage, transport, time and randomness come from outside.

pub mod log;
