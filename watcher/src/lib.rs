//! drover's watcher: turns CAPI and k0smotron object changes into jobs.
//!
//! Not written yet: the pipeline issue builds it. The crate exists so the
//! workspace has its final shape; it exports nothing.
