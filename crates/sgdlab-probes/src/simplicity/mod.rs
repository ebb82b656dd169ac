//! Simplicity and representation probes (PROTOCOLS 1-6, 9.2, 10.1).
