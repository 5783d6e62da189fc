//! Building consented clinical reports.
