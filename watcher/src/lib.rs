//! drover watcher (being built).
