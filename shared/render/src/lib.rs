//! drover-render (being built).
