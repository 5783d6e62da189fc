//! Delivering sealed reports.
