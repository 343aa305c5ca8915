//! Reading model checkpoints.

pub mod pytorch;
