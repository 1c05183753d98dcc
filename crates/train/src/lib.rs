//! tokenwave-train: trains tokenwave models on directories of real recordings.
//!
//! [`train`] runs (or resumes) a run: the [`data`] corpus decoded once into a cache and
//! served as random crops; the reconstruction [`loss`]es; EMA codebooks; AdamW with warmup
//! and cosine decay; a step split over one-thread workers whose gradients add up; fixed
//! validation crops; JSONL metrics; checkpoints that survive `kill -9`; optionally, small
//! discriminators to train against.

#![deny(missing_docs)]

mod adversarial;
mod checkpoint;
pub mod data;
pub mod loss;
mod options;
mod run;
mod schedule;
mod setup;
mod step;
mod validation;
mod vq;

pub use loss::DEFAULT_FLOOR;
pub use options::{AdversarialLog, Event, StepLog, TrainOptions, ValidationLog};
pub use run::train;
pub use vq::StageStats;
