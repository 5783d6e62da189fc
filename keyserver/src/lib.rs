//! The medseal key server.
