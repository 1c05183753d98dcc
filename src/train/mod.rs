//! Training the codec on a directory of audio (`tokenwave train`).

mod checkpoint;
mod critic;
mod data;
mod factorized;
mod loss;
mod pitch;
mod trainer;
mod transposed;
mod vq;

pub use data::is_validation;
pub use loss::{DEFAULT_FLOOR, Losses, SpectralLoss};
pub use trainer::{Event, StepLog, TrainOptions, ValidationLog, train};
pub use vq::StageStats;
