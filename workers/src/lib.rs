//! drover workers (being built).
