//! Records the AIOps arena stores with its run.
