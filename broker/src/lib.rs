//! The Loglab broker.
