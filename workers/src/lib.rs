//! drover's workers: claim jobs and run one handler per job kind.
//!
//! Not written yet: the pipeline and provider issues build it. The crate
//! exists so the workspace has its final shape; it exports nothing.
